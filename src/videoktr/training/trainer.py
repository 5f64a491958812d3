"""``KTRTrainer``: TRL's ``GRPOTrainer`` with the video in every forward and key-token policy shaping.

What is overridden, and why (TRL >=1.16,<1.17; each override is covered by tests/training):

- ``_tokenize_prompts``: video prompts are decoded by ``videoktr.data.video`` (our sampling config, real fps) and
  encoded by the real processor through ``videoktr.models.qwen2_5_vl.build_video_inputs``; the per-row video
  tensors are kept for the passes after generation (``self._rollout_video``). Image/text prompts go to TRL.
- ``_get_per_token_logps_and_entropies``: TRL's version forwards image kwargs only, so for video its old/ref/loss
  log-probs silently come from a video-less forward. Ours adds ``pixel_values_videos`` (or precomputed video
  features), ``video_grid_thw``, ``second_per_grid_ts`` and ``mm_token_type_ids``.
- ``_generate_and_score_completions``: adds the per-row video tensors and the group index of every row to the
  batch, so they survive TRL's shuffling and splitting (they are per-row lists / tensors).
- ``_calculate_rewards``: adds the length bonus and the T-GRPO temporal bonus to the accuracy reward before TRL
  turns rewards into group advantages.
- ``_compute_loss``: one vision pass (shared by the G copies of a video), the policy forward, the attribution
  passes on the same features (no grad, no extra vision pass), key-token selection and ``core.policy_loss``.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import GRPOTrainer

from videoktr import core
from videoktr.core.perturbations import TEMPORAL_PERTURBATIONS, VISUAL_PERTURBATIONS, apply_perturbation
from videoktr.training.config import KTRConfig

IMAGE_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)
VIDEO_ROW_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


def prompt_video_path(prompt: list[dict]) -> str | None:
    """The video path of a conversational prompt (content part ``{"type": "video", "video": path}``), if any."""
    for message in prompt:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "video":
                    return part.get("video")
    return None


def prompt_text(prompt: list[dict]) -> str:
    """The text of the last user message of a conversational prompt."""
    content = prompt[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content if part.get("type") == "text")


class KTRTrainer(GRPOTrainer):
    """GRPO with Video-KTR key-token selection and the GRPO / entropy / T-GRPO / TW-GRPO baselines.

    Args are those of ``trl.GRPOTrainer``; ``args`` must be a :class:`KTRConfig` and ``processing_class`` the
    model's processor (video prompts need it). ``reward_funcs`` may hold names from ``videoktr.rewards`` or
    dotted paths as well as callables.
    """

    _tag_names = ["trl", "grpo", "videoktr"]

    def __init__(self, model, reward_funcs, args: KTRConfig, processing_class=None, **kwargs):
        from videoktr.models.tiny import vision_token_ids
        from videoktr.rewards import get_reward

        if not isinstance(args, KTRConfig):
            raise TypeError(f"KTRTrainer needs a KTRConfig, got {type(args).__name__}")
        if processing_class is None:
            raise ValueError(
                "KTRTrainer needs processing_class=<the model's processor> to build video inputs"
            )
        funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
        funcs = [get_reward(f) if isinstance(f, str) else f for f in funcs]
        # A random or lightly trained model can sample vision placeholder tokens; they must never be generated.
        suppress = sorted(set(vision_token_ids(processing_class)))
        args.generation_kwargs = {**(args.generation_kwargs or {})}
        args.generation_kwargs["suppress_tokens"] = sorted(
            set(args.generation_kwargs.get("suppress_tokens") or []) | set(suppress)
        )
        super().__init__(
            model=model, reward_funcs=funcs, args=args, processing_class=processing_class, **kwargs
        )
        self._check_reward_names()
        self._check_dataset_modality()
        self.sampling = args.video_sampling()
        self._rollout_video: dict[str, Any] | None = None
        self._ktr_generator = torch.Generator().manual_seed(args.seed + 7919 * self.accelerator.process_index)
        self.selection_records: list[dict] = []  # rows with their selected tokens (log_selected_examples)
        self.skipped_videos: list[dict] = []

    # ------------------------------------------------------------------------------------------------ helpers
    def _check_reward_names(self) -> None:
        from videoktr.errors import UserError

        bonus = self.args.length_bonus or self.args.method == "t_grpo"
        if bonus and self.args.accuracy_reward not in self.reward_func_names:
            raise UserError(
                f"accuracy_reward={self.args.accuracy_reward!r} is not among the reward functions "
                f"{self.reward_func_names}; the length / T-GRPO bonus is added to it. Add it to the rewards or "
                "set length_bonus=False."
            )

    def _check_dataset_modality(self) -> None:
        """Refuse, before training, video-only signals / methods on a train dataset without video prompts."""
        from videoktr.errors import UserError

        dataset = self.train_dataset
        if dataset is None or not hasattr(dataset, "__len__") or len(dataset) == 0:
            return
        prompt = dataset[0].get("prompt")
        if isinstance(prompt, list) and prompt_video_path(prompt) is not None:
            return
        needs = sorted({"visual", "temporal"} & set(self.args.selection_signals))
        if needs:
            raise UserError(
                f"ktr_signals {needs} need video prompts, but the train dataset has none (first row has no "
                "{'type': 'video'} part); for image or text data set ktr_signals: [entropy] or method: grpo"
            )
        if self.args.method == "t_grpo":
            raise UserError(
                "method='t_grpo' shuffles video frames, but the train dataset has no video prompts; "
                "use method: grpo for image or text data"
            )

    def _inner_model(self, model=None):
        """The ``Qwen2_5_VLModel`` (backbone) under any DDP / PEFT wrapping."""
        from videoktr.models.qwen2_5_vl import find_vl_model

        return find_vl_model(self.accelerator.unwrap_model(model if model is not None else self.model))

    @property
    def _merge_size(self) -> int:
        return int(self.processing_class.video_processor.merge_size)

    def _video_token_id(self) -> int:
        return int(self.model.config.video_token_id)

    def _image_token_id(self) -> int | None:
        return getattr(self.model.config, "image_token_id", None)

    def _mm_token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(N, L) 0 text, 1 image placeholder, 2 video placeholder: the M-RoPE layout of Qwen2.5-VL."""
        mm = torch.zeros_like(input_ids)
        if self._image_token_id() is not None:
            mm[input_ids == self._image_token_id()] = 1
        mm[input_ids == self._video_token_id()] = 2
        return mm

    # ------------------------------------------------------------------------------------------- generation
    def _tokenize_prompts(self, prompts: list):
        paths = [prompt_video_path(p) for p in prompts] if isinstance(prompts[0], list) else [None]
        if all(p is None for p in paths):
            self._rollout_video = None
            return super()._tokenize_prompts(prompts)
        if any(p is None for p in paths):
            raise ValueError(
                "a batch mixes video and non-video prompts; videoktr trains them in separate datasets/runs"
            )
        from videoktr.data.video import decode_video
        from videoktr.models.qwen2_5_vl import build_video_inputs

        decoded = {path: decode_video(path, self.sampling) for path in dict.fromkeys(paths)}
        videos = [decoded[p] for p in paths]
        batch = build_video_inputs(
            self.processing_class, [prompt_text(p) for p in prompts], videos, sampling=self.sampling
        )
        keep = batch["attention_mask"].bool()
        prompt_ids = [ids[m].tolist() for ids, m in zip(batch["input_ids"], keep, strict=True)]
        mm_ids = [ids[m].tolist() for ids, m in zip(batch["mm_token_type_ids"], keep, strict=True)]
        grid = batch["video_grid_thw"]
        rows = list(torch.split(batch["pixel_values_videos"], grid.prod(-1).tolist()))
        self._rollout_video = {
            "pixel_values_videos": rows,
            "video_grid_thw": grid,
            "second_per_grid_ts": torch.as_tensor(batch["second_per_grid_ts"], dtype=torch.float32),
            "videos": videos,
        }
        fields = {
            "pixel_values_videos": batch["pixel_values_videos"],
            "video_grid_thw": grid,
            "second_per_grid_ts": self._rollout_video["second_per_grid_ts"],
            "mm_token_type_ids": mm_ids,
        }
        return prompt_ids, None, fields

    def _generate_and_score_completions(self, inputs):
        try:
            output = super()._generate_and_score_completions(inputs)
            video = self._rollout_video
        finally:
            self._rollout_video = None
        n_local = output["completion_ids"].size(0)
        start = self.accelerator.process_index * n_local
        num_generations = self.num_generations if self.model.training else self.num_generations_eval
        rows = torch.arange(start, start + n_local, device=output["completion_ids"].device)
        output["group_ids"] = rows // num_generations
        if video is not None:
            device = self.accelerator.device
            output["pixel_values_videos"] = [r.to(device) for r in video["pixel_values_videos"]]
            output["video_grid_thw"] = video["video_grid_thw"].to(device)
            output["second_per_grid_ts"] = video["second_per_grid_ts"].to(device)
            if self.args.method == "ktr" and self.args.ktr_temporal_level == "frame":
                output["pixel_values_videos_shuffled"] = self._frame_shuffled_pixels(video)
        return output

    def _frame_shuffled_pixels(self, video: dict) -> list[torch.Tensor]:
        """Authors'-code option: shuffle raw frames (one permutation per distinct video), re-run the processor."""
        from videoktr.models.qwen2_5_vl import reencode_with_frame_permutation

        out, cache = [], {}
        for decoded in video["videos"]:
            key = id(decoded)
            if key not in cache:
                t = decoded.frames.shape[0]
                perm = core.perturbations.random_derangement_like(t, self._ktr_generator)
                pixels = reencode_with_frame_permutation(
                    self.processing_class, [decoded], [perm], self.sampling
                )
                cache[key] = pixels["pixel_values_videos"]
            out.append(cache[key].to(self.accelerator.device))
        return out

    # ------------------------------------------------------------------------------------------------ forwards
    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        video: dict | None = None,
        video_features: tuple[torch.Tensor, ...] | None = None,
        **image_kwargs,
    ):
        """Per-token log-probs (and entropies) of the completion tokens: (N, T) each.

        ``video`` holds per-row ``pixel_values_videos`` (list of tensors), ``video_grid_thw`` (N, 3) and
        ``second_per_grid_ts`` (N,). Inside TRL's rollout (old/ref log-probs) the rollout's video is used.
        ``video_features``: per-row vision features to use instead of running the vision tower.
        """
        if video is None and self._rollout_video is not None:
            if input_ids.size(0) == len(self._rollout_video["pixel_values_videos"]):
                video = self._rollout_video
        if video is None:
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **image_kwargs,
            )
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        batch_size = batch_size or input_ids.size(0)
        mm_token_type_ids = self._mm_token_type_ids(input_ids)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            model_inputs = {
                "input_ids": input_ids[start:end],
                "attention_mask": attention_mask[start:end],
                "mm_token_type_ids": mm_token_type_ids[start:end],
                "video_grid_thw": video["video_grid_thw"][start:end],
                "second_per_grid_ts": video["second_per_grid_ts"][start:end],
            }
            if video_features is not None:
                pooled = tuple(video_features[start:end])
                model_inputs["mm_encoder_outputs"] = {
                    "video": BaseModelOutputWithPooling(pooler_output=pooled)
                }
            else:
                pv = video["pixel_values_videos"][start:end]
                model_inputs["pixel_values_videos"] = torch.cat(list(pv), dim=0)
            labels = model_inputs["input_ids"].masked_fill(model_inputs["attention_mask"] == 0, -100)
            labels[:, :-logits_to_keep] = -100
            with self.accelerator.autocast():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
            logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                entropies.append(outputs.entropy[:, -logits_to_keep:])
        entropy = torch.cat(entropies, dim=0) if compute_entropy else None
        return torch.cat(logps, dim=0), entropy, None

    def _full_logits(self, model, input_ids, attention_mask, logits_to_keep, video, features, **image_kwargs):
        """(N, T, V) temperature-scaled logits of the completion positions (no grad; TW-GRPO / distances)."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        model_inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "logits_to_keep": logits_to_keep + 1,
        }
        if video is not None:
            model_inputs.update(
                mm_token_type_ids=self._mm_token_type_ids(input_ids),
                video_grid_thw=video["video_grid_thw"],
                second_per_grid_ts=video["second_per_grid_ts"],
                mm_encoder_outputs={"video": BaseModelOutputWithPooling(pooler_output=tuple(features))},
            )
        else:
            model_inputs.update(
                {k: v for k, v in image_kwargs.items() if v is not None and k != "num_images"}
            )
        with torch.no_grad(), self.accelerator.autocast():
            logits = model(**model_inputs).logits[:, :-1]
        return logits.float() / self.temperature

    def _video_features(
        self, model, pixel_rows: list[torch.Tensor], grid: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Per-row vision features from ONE vision pass over the distinct videos of the batch (keeps autograd)."""
        from videoktr.models.qwen2_5_vl import encode_videos

        features = encode_videos(self._inner_model(model), torch.cat(pixel_rows, dim=0), grid, dedupe=True)
        return tuple(features)

    # ----------------------------------------------------------------------------------------------- rewards
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.args.accuracy_reward not in self.reward_func_names:
            return rewards_per_func
        col = self.reward_func_names.index(self.args.accuracy_reward)
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        if self.args.method == "t_grpo" and self._rollout_video is not None and mode == "train":
            bonus = self._temporal_bonus(inputs, prompts, rewards_per_func[:, col], num_generations)
            rewards_per_func[:, col] = rewards_per_func[:, col] + bonus
        if self.args.length_bonus:
            from videoktr.rewards.length import length_bonus

            lengths = torch.tensor([len(ids) for ids in completion_ids_list], device=rewards_per_func.device)
            lengths = self.accelerator.gather(lengths).tolist()
            acc = rewards_per_func[:, col].tolist()
            bonus = length_bonus(
                acc,
                lengths,
                group_size=num_generations,
                min_len=self.args.length_bonus_min,
                max_len=self.args.length_bonus_max,
                bonus=self.args.length_bonus_value,
                min_correct=self.args.length_bonus_min_correct,
            )
            bonus_t = torch.tensor(bonus, dtype=rewards_per_func.dtype, device=rewards_per_func.device)
            self._metrics[mode]["reward/length_bonus_frac"].append((bonus_t > 0).float().mean().item())
            rewards_per_func[:, col] = rewards_per_func[:, col] + bonus_t
        return rewards_per_func

    def _temporal_bonus(self, inputs, prompts, accuracy: torch.Tensor, num_generations: int) -> torch.Tensor:
        """T-GRPO (Video-R1): per prompt, sample completions with shuffled frames and compare accuracies.

        accuracy: (N_global,) accuracy reward of the ordered completions. Returns (N_global,) bonus = alpha for
        ordered completions with accuracy > 0.1 in groups where p_ordered >= mu * p_shuffled, else 0.
        """
        video = self._rollout_video
        n_local = len(prompts)
        start = self.accelerator.process_index * n_local
        local_acc = accuracy[start : start + n_local]
        n_shuffled = self.args.tgrpo_num_shuffled or max(1, num_generations // 2)
        local_bonus = torch.zeros(n_local, device=accuracy.device)
        reward_fn = self.reward_funcs[self.reward_func_names.index(self.args.accuracy_reward)]
        group_starts = sorted(
            {(start + i) // num_generations * num_generations - start for i in range(n_local)}
        )
        groups = [list(range(max(g0, 0), min(g0 + num_generations, n_local))) for g0 in group_starts]
        shuffled_acc = self._shuffled_accuracies(
            inputs, prompts, video, [g[0] for g in groups], n_shuffled, reward_fn
        )
        for rows, p_shuffled in zip(groups, shuffled_acc, strict=True):
            p_ordered = local_acc[rows].mean().item()
            if p_ordered >= self.args.tgrpo_mu * p_shuffled:
                for i in rows:
                    if local_acc[i].item() > 0.1:
                        local_bonus[i] = self.args.tgrpo_alpha
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["tgrpo/bonus_frac"].append(
            self.accelerator.gather(local_bonus).gt(0).float().mean().item()
        )
        return self.accelerator.gather(local_bonus)

    def _shuffled_accuracies(self, inputs, prompts, video, rows, n_shuffled, reward_fn) -> list[float]:
        """For each row in ``rows`` (one per prompt): mean accuracy of ``n_shuffled`` completions sampled with
        that row's temporal patches permuted (one permutation per prompt). One generation call for all prompts."""
        prompt_ids, _, fields = self._tokenize_prompts([prompts[r] for r in rows])
        self._rollout_video = video  # _tokenize_prompts replaced it; restore the batch's video
        ids, mm, pixels, grids, seconds = [], [], [], [], []
        for k, row in enumerate(rows):
            grid, rows_pixels = video["video_grid_thw"][row], video["pixel_values_videos"][row]
            t = int(grid[0])
            perm = core.perturbations.shuffle_permutation(t, self._ktr_generator)
            if perm is not None:  # pixel rows are ordered (t, h, w): permute the t blocks of h*w rows
                rows_pixels = rows_pixels.view(t, -1, rows_pixels.size(-1))[perm].reshape_as(rows_pixels)
            ids += [prompt_ids[k]] * n_shuffled
            mm += [fields["mm_token_type_ids"][k]] * n_shuffled
            pixels += [rows_pixels] * n_shuffled
            grids += [grid] * n_shuffled
            seconds += [video["second_per_grid_ts"][row]] * n_shuffled
        batch = {
            "pixel_values_videos": torch.cat(pixels),
            "video_grid_thw": torch.stack(grids),
            "second_per_grid_ts": torch.stack(seconds),
            "mm_token_type_ids": mm,
        }
        completion_ids, _ = self._generate_single_turn(ids, None, batch, n_shuffled)
        texts = self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
        accuracies = []
        for k, row in enumerate(rows):
            chunk = texts[k * n_shuffled : (k + 1) * n_shuffled]
            completions = [[{"role": "assistant", "content": text}] for text in chunk]
            columns = {key: [v] * n_shuffled for key, v in inputs[row].items() if key != "prompt"}
            values = reward_fn(prompts=[prompts[row]] * n_shuffled, completions=completions, **columns)
            values = [v for v in values if v is not None]
            accuracies.append(sum(values) / len(values) if values else 0.0)
        return accuracies

    # ------------------------------------------------------------------------------------------------- loss
    def _compute_loss(self, model, inputs):
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logits_to_keep = completion_ids.size(1)
        valid = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        valid = valid.bool()
        video = self._batch_video(inputs)
        image_kwargs = {k: inputs.get(k) for k in IMAGE_KEYS}
        features = None
        if video is not None:
            features = self._video_features(model, video["pixel_values_videos"], video["video_grid_thw"])
            image_kwargs = {}
        logp, entropy, _ = self._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            compute_entropy=True,
            video=video,
            video_features=features,
            **image_kwargs,
        )
        forward = dict(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep)
        token_mask, token_weights, metrics = self._token_selection(
            model, forward, inputs, video, features, image_kwargs, logp.detach(), entropy.detach(), valid
        )
        old_logp = inputs.get("old_per_token_logps")
        old_logp = logp.detach() if old_logp is None else old_logp
        loss, loss_metrics = core.policy_loss(
            logp,
            old_logp,
            inputs["advantages"],
            valid,
            token_mask=token_mask,
            ref_logp=inputs.get("ref_per_token_logps") if self.beta != 0.0 else None,
            beta=self.beta,
            eps_low=self.epsilon_low,
            eps_high=self.epsilon_high,
            aggregation=self.args.aggregation,
            denominator=self.args.ktr_denominator,
            mask_kl=self.args.ktr_mask_kl,
            token_weights=token_weights,
            max_completion_length=self.max_completion_length,
        )
        mode = "train" if self.model.training else "eval"
        if mode == "train":
            loss = loss / self.current_gradient_accumulation_steps
        self._log_loss_metrics(mode, {**loss_metrics, **metrics}, entropy, valid)
        return loss

    def _batch_video(self, inputs) -> dict | None:
        if "pixel_values_videos" not in inputs:
            return None
        return {k: inputs[k] for k in (*VIDEO_ROW_KEYS, "pixel_values_videos_shuffled") if k in inputs}

    def _log_loss_metrics(self, mode: str, metrics: dict, entropy: torch.Tensor, valid: torch.Tensor) -> None:
        reduced = {}
        for name, value in metrics.items():
            value = float(value) if not isinstance(value, torch.Tensor) else value.float().mean().item()
            reduced[name] = value
        names = sorted(reduced)
        values = torch.tensor([reduced[n] for n in names], device=self.accelerator.device)
        values = self.accelerator.gather(values).view(-1, len(names)).nanmean(dim=0) if names else values
        for name, value in zip(names, values.tolist(), strict=True):
            self._metrics[mode][name].append(value)
        totals = self.accelerator.reduce(
            torch.stack([(entropy * valid).sum(), valid.sum().float()]), reduction="sum"
        )
        self._metrics[mode]["entropy"].append((totals[0] / totals[1].clamp(min=1.0)).item())

    # ------------------------------------------------------------------------------------------- selection
    def _token_selection(self, model, forward, inputs, video, features, image_kwargs, logp, entropy, valid):
        """Returns (token_mask (N, T) bool | None, token_weights (N, T) | None, metrics dict)."""
        args = self.args
        metrics: dict[str, float] = {}
        if args.method == "tw_grpo":
            logits = self._full_logits(model, **forward, video=video, features=features, **image_kwargs)
            weights = self._per_group(
                inputs["group_ids"],
                lambda rows: core.tw_token_weights(
                    logits[rows], valid[rows], group_size=len(rows), alpha=args.tw_alpha
                ),
                valid,
                dtype=logits.dtype,
            )
            metrics["tw/weight_mean"] = (weights[valid].mean().item()) if valid.any() else float("nan")
            return None, weights, metrics
        signals = args.selection_signals
        if not signals:
            return None, None, metrics
        scores = {"entropy": entropy} if "entropy" in signals else {}
        signal_valid = {}
        for kind in ("visual", "temporal"):
            if kind not in signals:
                continue
            if video is None:
                if kind == "temporal":
                    raise ValueError(
                        "the temporal signal needs video inputs; drop 'temporal' from ktr_signals"
                    )
                raise ValueError("the visual signal is computed for video prompts; this batch has none")
            shifted, rows_ok = self._perturbed_score(model, forward, video, features, kind, logp)
            scores[kind] = shifted
            # A token the perturbation did not move at all (|shift| == 0, e.g. a video whose temporal patches are
            # identical) carries no signal: for a top fraction below 1 it is not a candidate, so a threshold that
            # lands on 0 does not "keep the ties" of every unmoved token. r = 1 keeps every valid token (METHOD 2).
            candidates = valid & rows_ok.unsqueeze(1)
            if not args.ktr_signed and args.selection_fractions[kind] < 1.0:
                candidates = candidates & (shifted != 0)
            signal_valid[kind] = candidates
        if args.ktr_weighting != "binary":
            combined = torch.stack([self._row_minmax(scores[s], valid) for s in signals]).amax(dim=0)
            weights = core.soft_token_weights(combined, valid, args.ktr_weighting)
            return None, weights, metrics
        fractions = {s: args.selection_fractions[s] for s in signals}
        mask, per_signal = self._select(scores, valid, signal_valid, fractions, inputs["group_ids"])
        metrics.update(core.selection_metrics(mask, per_signal, valid, scores))
        self._record_selection(inputs, mask, per_signal, scores, valid)
        return mask, None, metrics

    def _select(self, scores, valid, signal_valid, fractions, group_ids):
        per_signal = {}
        for name, fraction in fractions.items():
            v = signal_valid.get(name, valid)
            if self.args.selection_scope == "group":
                per_signal[name] = self._per_group(
                    group_ids,
                    lambda rows, s=scores[name], v=v, f=fraction: core.top_fraction_mask(
                        s[rows], v[rows], f, scope="group", group_size=len(rows)
                    ),
                    valid,
                    dtype=torch.bool,
                )
            else:
                per_signal[name] = core.top_fraction_mask(
                    scores[name], v, fraction, scope=self.args.selection_scope
                )
        stacked = torch.stack(list(per_signal.values()))
        mask = stacked.any(dim=0) if self.args.ktr_combine == "union" else stacked.all(dim=0)
        return mask & valid, per_signal

    @staticmethod
    def _per_group(group_ids: torch.Tensor, fn, like: torch.Tensor, dtype) -> torch.Tensor:
        """Apply ``fn(rows) -> (len(rows), T)`` to the rows of each group present in the micro-batch."""
        out = torch.zeros(like.shape, dtype=dtype, device=like.device)
        for gid in torch.unique(group_ids).tolist():
            rows = (group_ids == gid).nonzero(as_tuple=True)[0]
            out[rows] = fn(rows).to(dtype)
        return out

    @staticmethod
    def _row_minmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        big = torch.finfo(scores.dtype).max
        lo = scores.masked_fill(~valid, big).amin(dim=1, keepdim=True)
        hi = scores.masked_fill(~valid, -big).amax(dim=1, keepdim=True)
        return ((scores - lo) / (hi - lo).clamp(min=1e-12)).masked_fill(~valid, 0.0)

    def _perturbed_score(self, model, forward, video, features, kind, logp):
        """Score of every token for the visual or temporal counterfactual: ((N, T), rows_with_signal (N,) bool)."""
        args = self.args
        rows_ok = torch.ones(logp.size(0), dtype=torch.bool, device=logp.device)
        feats = tuple(f.detach() for f in features)
        attention_mask = forward["attention_mask"]
        if kind == "visual" and args.ktr_visual_perturbation == "drop":
            attention_mask = attention_mask.masked_fill(forward["input_ids"] == self._video_token_id(), 0)
            perturbed = feats
        elif kind == "temporal" and args.ktr_temporal_level == "frame":
            with torch.no_grad():
                perturbed = self._video_features(
                    model, video["pixel_values_videos_shuffled"], video["video_grid_thw"]
                )
        else:
            registry = VISUAL_PERTURBATIONS if kind == "visual" else TEMPORAL_PERTURBATIONS
            name = args.ktr_visual_perturbation if kind == "visual" else args.ktr_temporal_perturbation
            options = {"n_segments": args.ktr_segments} if name == "segment_shuffle" else {}
            out = apply_perturbation(
                registry,
                name,
                feats,
                video["video_grid_thw"],
                self._merge_size,
                self._ktr_generator,
                **options,
            )
            rows_ok = torch.tensor([o is not None for o in out], device=logp.device)
            perturbed = tuple(o if o is not None else f for o, f in zip(out, feats, strict=True))
        fwd = {**forward, "attention_mask": attention_mask}
        if args.ktr_distance == "logprob":
            with torch.no_grad():
                logp_p, _, _ = self._get_per_token_logps_and_entropies(
                    model,
                    fwd["input_ids"],
                    fwd["attention_mask"],
                    fwd["logits_to_keep"],
                    video=video,
                    video_features=perturbed,
                )
            return core.logprob_shift(logp, logp_p, signed=args.ktr_signed), rows_ok
        logits_full = self._full_logits(model, **forward, video=video, features=feats)
        logits_p = self._full_logits(model, **fwd, video=video, features=perturbed)
        return core.distribution_shift(logits_full, logits_p, args.ktr_distance), rows_ok

    def _record_selection(self, inputs, mask, per_signal, scores, valid) -> None:
        """Keep up to ``log_selected_examples`` rows per step with their selections (for analysis / reports)."""
        n = self.args.log_selected_examples
        if n <= 0:
            return
        for i in range(min(n, mask.size(0))):
            length = int(valid[i].sum())
            self.selection_records.append(
                {
                    "step": self.state.global_step,
                    "group_id": int(inputs["group_ids"][i]),
                    "completion_ids": inputs["completion_ids"][i, :length].tolist(),
                    "union": mask[i, :length].tolist(),
                    "masks": {k: m[i, :length].tolist() for k, m in per_signal.items()},
                    "scores": {k: [round(x, 5) for x in s[i, :length].tolist()] for k, s in scores.items()},
                    "advantage": float(inputs["advantages"][i]),
                }
            )
