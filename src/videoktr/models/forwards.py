"""The model-specific forwards ``KTRTrainer`` calls, behind one small interface, for every family of
:mod:`videoktr.models.families` (Qwen2.5-VL, Qwen2-VL, Qwen3-VL, Qwen3.5).

``KTRTrainer`` asks a model adapter for five things: the M-RoPE token types of a batch, the per-row vision features
of a batch's videos (one vision pass), the per-token log-probs / entropies of the completion tokens with the video
(or precomputed features), the full next-token logits at the completion positions (TW-GRPO, distance scores), and
the id of the video placeholder token. What differs by family: ``second_per_grid_ts`` goes to the model only for the
families whose temporal positions use it; for Qwen3-VL a row's "features" are the main vision features and its
DeepStack maps concatenated on the last dimension, ``(tokens, D * (1 + n_deepstack))``, so that every perturbation
(zeroing, shuffling temporal-patch blocks) applies to all of them alike, and the forward splits them again.

Shapes: N rows, P + T = L prompt + completion length, T completion positions, V vocabulary. ``video`` is a dict
with per-row ``pixel_values_videos`` (list of N tensors), ``video_grid_thw`` (N, 3) and ``second_per_grid_ts`` (N,).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

__all__ = ["QwenVLForwards"]


class QwenVLForwards:
    """Qwen2.5-VL forwards for the trainer.

    Args:
        config: the model's config (``video_token_id``, optional ``image_token_id``).
        processor: the model's processor (its video processor's ``merge_size``).
    """

    def __init__(self, config, processor):
        from videoktr.models.families import check_video_processor, family_of

        self.family = family_of(config)
        check_video_processor(processor)
        self.video_token_id = int(config.video_token_id)
        self.image_token_id = getattr(config, "image_token_id", None)
        self.merge_size = int(processor.video_processor.merge_size)
        self.hidden_size = int(getattr(config, "text_config", config).hidden_size)

    def mm_token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(N, L) 0 text, 1 image placeholder, 2 video placeholder: the M-RoPE layout of Qwen2.5-VL."""
        mm = torch.zeros_like(input_ids)
        if self.image_token_id is not None:
            mm[input_ids == self.image_token_id] = 1
        mm[input_ids == self.video_token_id] = 2
        return mm

    def video_features(
        self, model: torch.nn.Module, pixel_rows: list[torch.Tensor], grid: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Per-row vision features from ONE vision pass over the distinct videos of the batch (keeps autograd).

        model: the unwrapped model (any PEFT wrapping is fine); pixel_rows: N tensors; grid: (N, 3).
        """
        from videoktr.models.qwen2_5_vl import encode_videos

        return tuple(encode_videos(model, torch.cat(pixel_rows, dim=0), grid, dedupe=True, deepstack=True))

    def positions(self, model, input_ids, video: dict, attention_mask: torch.Tensor) -> torch.Tensor:
        """(3, N, L) M-RoPE position ids of ``input_ids`` with ``attention_mask`` (kept by the ``drop`` pass)."""
        from videoktr.models.qwen2_5_vl import find_vl_model

        extra = {"second_per_grid_ts": video["second_per_grid_ts"]} if self.family.second_per_grid_ts else {}
        position_ids, _ = find_vl_model(model).get_rope_index(
            input_ids,
            mm_token_type_ids=self.mm_token_type_ids(input_ids),
            video_grid_thw=video["video_grid_thw"],
            attention_mask=attention_mask,
            **extra,
        )
        return position_ids

    def _video_inputs(self, input_ids, video, features) -> dict[str, Any]:
        from videoktr.models.qwen2_5_vl import encoder_outputs

        out = {
            "mm_token_type_ids": self.mm_token_type_ids(input_ids),
            "video_grid_thw": video["video_grid_thw"],
        }
        if self.family.second_per_grid_ts:
            out["second_per_grid_ts"] = video["second_per_grid_ts"]
        if features is not None:
            out["mm_encoder_outputs"] = {
                "video": encoder_outputs(features, self.hidden_size, self.family.deepstack)
            }
        else:
            out["pixel_values_videos"] = torch.cat(list(video["pixel_values_videos"]), dim=0)
        return out

    def token_logps(
        self,
        model: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        video: dict,
        features: tuple[torch.Tensor, ...] | None = None,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        autocast: Callable[[], AbstractContextManager] | None = None,
        keep_positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probs (N, T) of the completion tokens (and entropies (N, T)) with the video in the forward.

        ``features``: per-row vision features to use instead of running the vision tower. ``autocast``: a function
        returning the context manager entered around each forward (``accelerator.autocast``). ``keep_positions``: (N, L) attention
        mask whose M-RoPE positions are used (``attention_mask`` then only masks attention, e.g. ``drop``).
        """
        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            rows = slice(start, end)
            part = {
                "pixel_values_videos": video["pixel_values_videos"][rows],
                "video_grid_thw": video["video_grid_thw"][rows],
                "second_per_grid_ts": video["second_per_grid_ts"][rows],
            }
            model_inputs = {
                "input_ids": input_ids[rows],
                "attention_mask": attention_mask[rows],
                **self._video_inputs(input_ids[rows], part, None if features is None else features[rows]),
            }
            if keep_positions is not None:
                model_inputs["position_ids"] = self.positions(
                    model, input_ids[rows], part, keep_positions[rows]
                )
            labels = model_inputs["input_ids"].masked_fill(model_inputs["attention_mask"] == 0, -100)
            labels[:, :-logits_to_keep] = -100
            with autocast() if autocast is not None else nullcontext():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
            logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                entropies.append(outputs.entropy[:, -logits_to_keep:])
        entropy = torch.cat(entropies, dim=0) if compute_entropy else None
        return torch.cat(logps, dim=0), entropy

    def full_logits(
        self,
        model: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        video: dict | None,
        features: tuple[torch.Tensor, ...] | None,
        image_kwargs: dict | None = None,
        temperature: float = 1.0,
        autocast: Callable[[], AbstractContextManager] | None = None,
        keep_positions: torch.Tensor | None = None,
        grad: bool = False,
    ) -> torch.Tensor:
        """(N, T, V) float32 temperature-scaled logits of the completion positions (no grad unless ``grad``);
        ``keep_positions`` as in :meth:`token_logps`."""
        model_inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "logits_to_keep": logits_to_keep + 1,
        }
        if video is not None:
            model_inputs.update(self._video_inputs(input_ids, video, features))
            if keep_positions is not None:
                model_inputs["position_ids"] = self.positions(model, input_ids, video, keep_positions)
        else:
            model_inputs.update(
                {k: v for k, v in (image_kwargs or {}).items() if v is not None and k != "num_images"}
            )
        with torch.set_grad_enabled(grad), autocast() if autocast is not None else nullcontext():
            logits = model(**model_inputs).logits[:, :-1]
        return logits.float() / temperature

    def image_features(self, model: torch.nn.Module, pixel_values: torch.Tensor, grid: torch.Tensor):
        """Per-image vision features ``(h*w/merge**2, D)`` from one vision pass. grid: (n_images, 3)."""
        from videoktr.models.qwen2_5_vl import encode_images

        return tuple(encode_images(model, pixel_values, grid))

    def image_token_logps(
        self,
        model: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        image: dict,
        features: tuple[torch.Tensor, ...],
        autocast: Callable[[], AbstractContextManager] | None = None,
        keep_positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(N, T) completion log-probs of image prompts with precomputed (e.g. masked) image ``features``.

        image: ``image_grid_thw`` (n_images, 3) and ``mm_token_type_ids`` (N, L) of the rows; ``keep_positions`` as
        in :meth:`token_logps`.
        """
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        from videoktr.models.qwen2_5_vl import find_vl_model

        model_inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": image["mm_token_type_ids"],
            "image_grid_thw": image["image_grid_thw"],
            "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=tuple(features))},
        }
        if keep_positions is not None:
            model_inputs["position_ids"], _ = find_vl_model(model).get_rope_index(
                input_ids,
                mm_token_type_ids=image["mm_token_type_ids"],
                image_grid_thw=image["image_grid_thw"],
                attention_mask=keep_positions,
            )
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        labels[:, :-logits_to_keep] = -100
        with autocast() if autocast is not None else nullcontext():
            outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
        return outputs.log_probs[:, -logits_to_keep:]
