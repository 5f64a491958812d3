"""``KTRTrainer``: TRL's ``GRPOTrainer`` with the video in every forward and key-token policy shaping.

What is overridden, and why (TRL >=1.16,<1.17; each override is covered by tests/training). The pieces live in:

- ``training/rollout.py`` (``RolloutVideoMixin``): ``_tokenize_prompts`` and ``_generate_and_score_completions``,
  the video inputs of the rollout carried with every row;
- ``training/bonuses.py`` (``RewardBonusMixin``): ``_calculate_rewards`` adds the length bonus and the T-GRPO
  temporal bonus to the accuracy reward before TRL turns rewards into group advantages;
- ``training/selection.py`` (``SelectionMixin``): attribution passes, key-token masks, TW-GRPO weights;
- ``models/forwards.py`` (``QwenVLForwards``): the model-specific forwards the trainer calls;
- here: ``_get_per_token_logps_and_entropies`` (TRL's version forwards image kwargs only, so for video its
  old/ref/loss log-probs silently come from a video-less forward; ours adds the video) and ``_compute_loss`` (one
  vision pass shared by the G copies of a video, the policy forward, the selection, ``core.policy_loss``).
"""

from __future__ import annotations

from typing import Any

import torch
from trl import GRPOTrainer

from videoktr import core
from videoktr.models.forwards import QwenVLForwards
from videoktr.training.bonuses import RewardBonusMixin
from videoktr.training.checkpoint import ResumeMixin
from videoktr.training.config import KTRConfig
from videoktr.training.rollout import RolloutVideoMixin, prompt_text, prompt_video_path
from videoktr.training.selection import SelectionMixin
from videoktr.training.vllm_rollout import VLLMVideoMixin, video_engine, vllm_generation_kwargs

__all__ = ["IMAGE_KEYS", "KTRTrainer", "prompt_text", "prompt_video_path"]

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
# core.policy_loss metric -> TRL's name for the same quantity (TRL's name is logged).
TRL_METRIC_NAMES = {
    "loss/kl": "kl",
    "clip/ratio_low": "clip_ratio/low_mean",
    "clip/ratio_high": "clip_ratio/high_mean",
    "clip/region": "clip_ratio/region_mean",
}


class KTRTrainer(
    ResumeMixin, RolloutVideoMixin, VLLMVideoMixin, RewardBonusMixin, SelectionMixin, GRPOTrainer
):
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
        if args.use_vllm:  # vLLM video rollouts: training/vllm_rollout.py
            args.generation_kwargs = vllm_generation_kwargs(args.generation_kwargs, suppress)
        else:
            args.generation_kwargs["suppress_tokens"] = sorted(
                set(args.generation_kwargs.get("suppress_tokens") or []) | set(suppress)
            )
        with video_engine(args.use_vllm):
            super().__init__(
                model=model, reward_funcs=funcs, args=args, processing_class=processing_class, **kwargs
            )
        self._wrap_vllm_engine()
        self._vllm_videos = None  # T-GRPO's shuffled clips for the next vLLM call (training/bonuses.py)
        self.forwards = QwenVLForwards(self.model.config, processing_class)
        self._check_reward_names()
        self._check_dataset_modality()
        self.sampling = args.video_sampling()
        self._rollout_video: dict[str, Any] | None = None
        self._record_generation, self._generation_scores = False, None  # see rollout._generate_single_turn
        self._ktr_generator = torch.Generator().manual_seed(args.seed + 7919 * self.accelerator.process_index)
        self.skipped_videos: list[dict] = []
        if self.accelerator.is_main_process:  # the loss settings in force, the method's defaults marked
            print(f"videoktr loss settings: {args.effective_loss_settings()}")

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
        """Refuse, before training, signals / methods the train dataset's modality cannot give, and datasets that
        mix image and video prompts (a batch would mix them)."""
        from videoktr.errors import UserError

        dataset = self.train_dataset
        if dataset is None or not hasattr(dataset, "__len__") or len(dataset) == 0:
            return
        prompts = (
            dataset["prompt"] if hasattr(dataset, "column_names") else [r.get("prompt") for r in dataset]
        )
        videos = sum(isinstance(p, list) and prompt_video_path(p) is not None for p in prompts)
        columns = set(getattr(dataset, "column_names", None) or dataset[0].keys())
        images = 0
        for name in ("image", "images") if videos else ():
            if name in columns:
                images += sum(v is not None and v != [] for v in dataset[name])
        if videos and images:
            raise UserError(
                f"the train dataset mixes {videos} video and {images} image prompts; a batch would mix them, which "
                "KTRTrainer cannot train in one forward yet: train the image and the video records in separate runs "
                "(or as separate datasets one after the other)"
            )
        if videos:
            return
        if self.args.use_vllm:
            raise UserError(
                "use_vllm: true sends video prompts to vLLM, but the train dataset has none; set use_vllm: false"
            )
        has_images = bool({"image", "images"} & columns)
        needs = sorted(
            ({"temporal"} if has_images else {"visual", "temporal"}) & set(self.args.selection_signals)
        )
        if needs:
            what = "image" if has_images else "text"
            keep = "[visual, entropy]" if has_images else "[entropy]"
            raise UserError(
                f"ktr_signals {needs} need video prompts, but the train dataset has none ({what} prompts); "
                f"set ktr_signals: {keep} or method: grpo"
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
        return self.forwards.merge_size

    def _video_token_id(self) -> int:
        return self.forwards.video_token_id

    def _mm_token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.forwards.mm_token_type_ids(input_ids)

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
        logps, entropy = self.forwards.token_logps(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            video,
            features=video_features,
            batch_size=batch_size,
            compute_entropy=compute_entropy,
            autocast=self.accelerator.autocast,
        )
        return logps, entropy, None

    def _full_logits(self, model, input_ids, attention_mask, logits_to_keep, video, features, **image_kwargs):
        """(N, T, V) temperature-scaled logits of the completion positions (no grad; TW-GRPO / distances)."""
        return self.forwards.full_logits(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            video,
            features,
            image_kwargs=image_kwargs,
            temperature=self.temperature,
            autocast=self.accelerator.autocast,
        )

    def _video_features(
        self, model, pixel_rows: list[torch.Tensor], grid: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Per-row vision features from ONE vision pass over the distinct videos of the batch (keeps autograd)."""
        with self.accelerator.autocast():
            return self.forwards.video_features(self._inner_model(model), pixel_rows, grid)

    # ------------------------------------------------------------------------------------------------- loss
    def _compute_loss(self, model, inputs):
        """Policy loss of one micro-batch. The key-token mask / weights were computed on whole groups at the end
        of the rollout (``training/selection.py``) and travel with each row; no attribution pass runs here."""
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
        token_weights = inputs.get("ktr_token_weights")
        if self.args.method == "tw_grpo" and self.args.tw_weight_grad:
            logp, entropy, token_weights = self._tw_policy_pass(
                model, input_ids, attention_mask, completion_ids, valid, video, features, image_kwargs, inputs
            )
        else:
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
        old_logp = inputs.get("old_per_token_logps")
        old_logp = logp.detach() if old_logp is None else old_logp
        global_mean = self.args.aggregation == "token-mean-global"
        loss, loss_metrics = core.policy_loss(
            logp,
            old_logp,
            inputs["advantages"],
            valid,
            token_mask=inputs.get("ktr_token_mask"),
            ref_logp=inputs.get("ref_per_token_logps") if self.beta != 0.0 else None,
            beta=self.beta,
            eps_low=self.epsilon_low,
            eps_high=self.epsilon_high,
            aggregation="token-mean" if global_mean else self.args.aggregation,
            denominator=self.args.ktr_denominator,
            mask_kl=self.args.ktr_mask_kl,
            token_weights=token_weights,
            max_completion_length=self.max_completion_length,
            is_ratio=inputs.get("importance_sampling_ratio"),  # TRL sets it with use_vllm (correction on)
        )
        mode = "train" if self.model.training else "eval"
        if global_mean:  # TRL's dapo: token sum / the valid tokens of the accumulated batch of every process
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                normalizer = (
                    normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
                )
            loss = loss * valid.sum().clamp(min=1) / normalizer
        elif mode == "train":
            loss = loss / self.current_gradient_accumulation_steps
        self._log_loss_metrics(mode, loss_metrics, entropy, valid)
        return loss

    def _tw_policy_pass(
        self, model, input_ids, attention_mask, completion_ids, valid, video, features, image_kwargs, inputs
    ):
        """``tw_weight_grad``: log-probs, entropies and TW-GRPO weights from ONE full-logits policy forward, with
        gradient through the weights as in the authors' code. The micro-batch holds whole groups
        (steps_per_generation=1, checked by KTRConfig); rows may be in any order (``group_ids``)."""
        logits = self.forwards.full_logits(
            model,
            input_ids,
            attention_mask,
            completion_ids.size(1),
            video,
            features,
            image_kwargs=image_kwargs,
            temperature=self.temperature,
            autocast=self.accelerator.autocast,
            grad=True,
        )  # (N, T, V), already divided by the temperature
        logp = core.selective_log_softmax(logits, completion_ids)
        with torch.no_grad():
            entropy = core.entropy_from_logits(logits)
        weights = core.tw_token_weights_by_group(
            logits, valid, inputs["group_ids"], self.num_generations, alpha=self.args.tw_alpha
        )
        mode = "train" if self.model.training else "eval"
        kept = weights.detach()[valid]
        if kept.numel():
            self._metrics[mode]["tw/weight_mean"].append(self._gathered_mean(kept.mean()))
        return logp, entropy, weights

    def _batch_video(self, inputs) -> dict | None:
        if "pixel_values_videos" not in inputs:
            return None
        return {k: inputs[k] for k in (*VIDEO_ROW_KEYS, "pixel_values_videos_shuffled") if k in inputs}

    def _log_loss_metrics(self, mode: str, metrics: dict, entropy: torch.Tensor, valid: torch.Tensor) -> None:
        reduced = {}
        for name, value in metrics.items():
            name = TRL_METRIC_NAMES.get(name, name)
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
