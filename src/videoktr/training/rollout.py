"""Rollout video plumbing of ``KTRTrainer``: video prompts through our decoder and the real processor, and the
per-row video tensors carried with each row of the generation batch.

- ``_tokenize_prompts``: video prompts are decoded by ``videoktr.data.video`` (our sampling config, real fps; or the
  record's ``frame_indices`` when its video part carries them) and
  encoded by the real processor through ``videoktr.models.qwen2_5_vl.build_video_inputs``; the per-row video
  tensors are kept for the passes after generation (``self._rollout_video``). Image/text prompts go to TRL.
- ``_generate_and_score_completions``: adds the per-row video tensors and the group index of every row to the
  batch, so they survive TRL's shuffling and splitting (they are per-row lists / tensors).
"""

from __future__ import annotations

import torch

from videoktr.core.perturbations import random_derangement_like


def prompt_video_path(prompt: list[dict]) -> str | None:
    """The video path of a conversational prompt (content part ``{"type": "video", "video": path}``), if any."""
    for message in prompt:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "video":
                    return part.get("video")
    return None


def prompt_video_frames(prompt: list[dict]) -> list[int] | None:
    """The ``frame_indices`` of a prompt's video part (chosen by a frame selector), if the data file gave them."""
    for message in prompt:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "video" and part.get("frame_indices") is not None:
                    return [int(i) for i in part["frame_indices"]]
    return None


def prompt_text(prompt: list[dict]) -> str:
    """The text of the last user message of a conversational prompt."""
    content = prompt[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content if part.get("type") == "text")


class RolloutVideoMixin:
    """Video inputs of the rollout (mixed into ``KTRTrainer`` before ``GRPOTrainer``)."""

    def _tokenize_prompts(self, prompts: list):
        paths = [prompt_video_path(p) for p in prompts] if isinstance(prompts[0], list) else [None]
        if all(p is None for p in paths):
            self._rollout_video = None
            return super()._tokenize_prompts(prompts)
        if any(p is None for p in paths):
            from videoktr.errors import UserError

            raise UserError(
                "a batch mixes video and non-video prompts, which KTRTrainer cannot train in one forward yet; "
                "train the video and the image/text records in separate runs"
            )
        from videoktr.data.video import decode_video
        from videoktr.models.qwen2_5_vl import build_video_inputs

        # a record's frame_indices (a frame selector's choice) replace uniform sampling; every pass after the
        # rollout (KTR perturbations, T-GRPO's shuffled rollouts, the loss) reuses these decoded frames, and each
        # video is decoded once per generation batch (the cache is cleared in _generate_and_score_completions)
        keys = [(path, tuple(prompt_video_frames(p) or ())) for path, p in zip(paths, prompts)]
        cache = self.__dict__.setdefault("_decoded_videos", {})
        for key in dict.fromkeys(keys):
            if key not in cache:
                cache[key] = decode_video(key[0], self.sampling, indices=list(key[1]) or None)
        videos = [cache[key] for key in keys]
        batch = build_video_inputs(
            self.processing_class, [prompt_text(p) for p in prompts], videos, sampling=self.sampling
        )
        keep = batch["attention_mask"].bool()
        prompt_ids = [ids[m].tolist() for ids, m in zip(batch["input_ids"], keep, strict=True)]
        mm_ids = [ids[m].tolist() for ids, m in zip(batch["mm_token_type_ids"], keep, strict=True)]
        grid = batch["video_grid_thw"]
        rows = list(torch.split(batch["pixel_values_videos"], grid.prod(-1).tolist()))
        # carried for every family (bookkeeping); given to the model only by families that use it (Qwen2.5-VL)
        temporal_patch = self.processing_class.video_processor.temporal_patch_size
        seconds = batch.get("second_per_grid_ts", [temporal_patch / v.sample_fps for v in videos])
        self._rollout_video = {
            "pixel_values_videos": rows,
            "video_grid_thw": grid,
            "second_per_grid_ts": torch.as_tensor(seconds, dtype=torch.float32),
            "videos": videos,
        }
        fields = {
            "pixel_values_videos": batch["pixel_values_videos"],
            "video_grid_thw": grid,
            "mm_token_type_ids": mm_ids,
        }
        if "second_per_grid_ts" in batch:
            fields["second_per_grid_ts"] = self._rollout_video["second_per_grid_ts"]
        return prompt_ids, None, fields

    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        """TRL's generation; the rollout's first call also records the sampled tokens' log-probs and entropies
        (``ktr_full_logps: generation``, see training/generation_scores.py). With use_vllm the rows' video
        requests are queued for TRL's vLLM call first (training/vllm_rollout.py)."""
        if self.use_vllm:
            self._queue_vllm_videos(prompt_ids)
        if not self._record_generation:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        from peft import PeftModel

        from videoktr.training.generation_scores import GenerationRecorder

        self._record_generation = False  # one call: later ones (T-GRPO's shuffled rollouts, tools) are not it
        model = self.accelerator.unwrap_model(self.model)
        model = model.get_base_model() if isinstance(model, PeftModel) else model
        recorder = GenerationRecorder(self.temperature)
        handle = model.register_forward_hook(recorder.hook, with_kwargs=True)
        try:
            completion_ids, logprobs = super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        finally:
            handle.remove()
        self._generation_scores = recorder.finish(completion_ids)
        return completion_ids, logprobs

    def _generate_and_score_completions(self, inputs):
        args = self.args
        self._record_generation = (
            args.ktr_full_logps == "generation" and bool(args.selection_signals) and not self.tools
        )
        self._generation_scores = None
        self._decoded_videos = {}  # each video is decoded once per generation batch (rollout, T-GRPO shuffles)
        try:
            output = super()._generate_and_score_completions(inputs)
            video = self._rollout_video
            scores = self._generation_scores
        finally:
            self._rollout_video = None
            self._record_generation = False
            self._generation_scores = None
            self._decoded_videos = {}
        if scores is not None:
            from videoktr.training.generation_scores import fit_width

            width = output["completion_ids"].size(1)
            output["_generation_logps"], output["_generation_entropy"] = (fit_width(v, width) for v in scores)
        n_local = output["completion_ids"].size(0)
        start = self.accelerator.process_index * n_local
        num_generations = self.num_generations if self.model.training else self.num_generations_eval
        rows = torch.arange(start, start + n_local, device=output["completion_ids"].device)
        output["group_ids"] = rows // num_generations
        rows_video = None
        if video is not None:
            device = self.accelerator.device
            output["pixel_values_videos"] = [r.to(device) for r in video["pixel_values_videos"]]
            output["video_grid_thw"] = video["video_grid_thw"].to(device)
            output["second_per_grid_ts"] = video["second_per_grid_ts"].to(device)
            if self.args.method == "ktr" and self.args.ktr_temporal_level == "frame":
                output["pixel_values_videos_shuffled"] = self._frame_shuffled_pixels(video)
            rows_video = self._batch_video(output)
        # Selection over whole groups, before TRL shuffles and splits the generation batch (training/selection.py).
        self._rollout_problem_ids = [row.get("problem_id") for row in inputs]  # selection.jsonl's problem_id
        try:
            self._attach_selection(output, rows_video)
        finally:
            self._rollout_problem_ids = None
        return output

    def _frame_shuffled_pixels(self, video: dict) -> list[torch.Tensor]:
        """Authors'-code option: shuffle raw frames (one permutation per distinct video), re-run the processor."""
        from videoktr.models.qwen2_5_vl import reencode_with_frame_permutation

        out, cache = [], {}
        for decoded in video["videos"]:
            key = id(decoded)
            if key not in cache:
                t = decoded.frames.shape[0]
                perm = random_derangement_like(t, self._ktr_generator)
                pixels = reencode_with_frame_permutation(
                    self.processing_class, [decoded], [perm], self.sampling
                )
                cache[key] = pixels["pixel_values_videos"]
            out.append(cache[key].to(self.accelerator.device))
        return out
