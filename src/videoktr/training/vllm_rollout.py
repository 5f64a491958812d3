"""vLLM video rollouts of ``KTRTrainer`` (``use_vllm: true``, colocate mode), through TRL's own generation hook.

TRL 1.16 (``trl/generation/vllm_generation.py``) builds its engine with ``LLM(model=..., ...)`` and, in colocate
mode, one row ``{"prompt_token_ids": ids}`` per prompt (``multi_modal_data`` only for images) that it hands to
``self.llm.generate(rows, sampling_params=...)``. What is added here, and nothing else:

- the engine is built with ``limit_mm_per_prompt={"image": 0, "video": 1}`` (:func:`video_engine`, around
  ``GRPOTrainer.__init__``, which constructs it);
- the engine TRL holds is wrapped in :class:`VideoLLM`: its ``generate`` replaces each row by the video request of
  ``videoktr.vllm.payload`` for the same prompt (checked by the prompt's token ids), for the rollout and for
  T-GRPO's shuffled rollouts alike; weight sync, sleep mode and sampling stay TRL's;
- ``suppress_tokens`` (vision placeholders, transformers) become ``logit_bias`` -100 (vLLM's ``SamplingParams``
  has no ``suppress_tokens``).

TRL then computes the old log-probs (our video forward) and the importance-sampling ratio against vLLM's logprobs
(``vllm_importance_sampling_*``); ``KTRTrainer._compute_loss`` multiplies the policy term by it, as TRL's loss does.
Not run on a GPU here (docs/vllm.md).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

import torch

from videoktr.vllm.payload import video_request

LIMIT_MM_PER_PROMPT = {"image": 0, "video": 1}
SUPPRESS_BIAS = -100.0  # vLLM clamps logit_bias to [-100, 100]


@contextlib.contextmanager
def video_engine(enabled: bool):
    """While TRL builds its vLLM engine: the engine class TRL calls, with video prompts allowed."""
    if not enabled:
        yield
        return
    from trl.generation import vllm_generation

    original = vllm_generation.LLM
    vllm_generation.LLM = functools.partial(original, limit_mm_per_prompt=dict(LIMIT_MM_PER_PROMPT))
    try:
        yield
    finally:
        vllm_generation.LLM = original


def vllm_generation_kwargs(generation_kwargs: dict | None, suppress: Sequence[int]) -> dict:
    """TRL's ``generation_kwargs`` for vLLM's ``SamplingParams``: token suppression as a logit bias."""
    kwargs = dict(generation_kwargs or {})
    suppress = sorted(set(kwargs.pop("suppress_tokens", None) or []) | set(suppress))
    if suppress:
        kwargs["logit_bias"] = {
            **(kwargs.get("logit_bias") or {}),
            **{int(t): SUPPRESS_BIAS for t in suppress},
        }
    return kwargs


class VideoLLM:
    """TRL's vLLM engine with video requests: ``queue`` them, TRL's next ``generate`` call sends them.

    Everything but ``generate`` is the engine's own (weight sync, sleep / wake up, prefix cache).
    """

    def __init__(self, llm):
        self._llm = llm
        self._queued: list[tuple[list[int], dict]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def queue(self, prompt_ids: Sequence[Sequence[int]], requests: Sequence[dict]) -> None:
        """prompt_ids: the trainer's ids of each row (as TRL will send them); requests: their video requests."""
        self._queued = [(list(map(int, ids)), r) for ids, r in zip(prompt_ids, requests, strict=True)]

    def generate(self, prompts, *args, **kwargs):
        queued, self._queued = self._queued, None
        if queued is not None:
            if len(queued) != len(prompts):
                raise RuntimeError(f"{len(prompts)} vLLM rows for {len(queued)} queued video requests")
            rows = []
            for k, (row, (ids, request)) in enumerate(zip(prompts, queued)):
                if list(row["prompt_token_ids"]) != ids:
                    raise RuntimeError(f"vLLM row {k} is not the prompt its video request was built for")
                rows.append(request)
            prompts = rows
        return self._llm.generate(prompts, *args, **kwargs)


class VLLMVideoMixin:
    """Queues the video requests of a generation call when ``use_vllm`` (mixed into ``KTRTrainer``)."""

    def _wrap_vllm_engine(self) -> None:
        if self.use_vllm and not isinstance(self.vllm_generation.llm, VideoLLM):
            self.vllm_generation.llm = VideoLLM(self.vllm_generation.llm)

    def _queue_vllm_videos(self, prompt_ids: Sequence[Sequence[int]]) -> None:
        """Video requests of the rows about to be generated: T-GRPO's shuffled clips when it set them
        (``_vllm_videos``: per row (DecodedVideo, frames or None, row of the rollout)), else the rollout's videos."""
        video = self._rollout_video
        rows, self._vllm_videos = getattr(self, "_vllm_videos", None), None
        if rows is None and video is not None:
            rows = [(v, None, k) for k, v in enumerate(video["videos"])]
        if rows is None:
            raise RuntimeError(
                "use_vllm: a generation call without video prompts (vLLM rollouts need videos)"
            )
        requests = [
            video_request(self.processing_class, ids, decoded, self.sampling, frames=frames)
            for ids, (decoded, frames, _) in zip(prompt_ids, rows, strict=True)
        ]
        self.vllm_generation.llm.queue(prompt_ids, requests)
        self._log_vllm_positions(
            [video["video_grid_thw"][k] for *_, k in rows],
            [float(video["second_per_grid_ts"][k]) for *_, k in rows],
        )

    def _log_vllm_positions(self, grids: Sequence[torch.Tensor], seconds: Sequence[float]) -> None:
        """``vllm/positions_differ``: fraction of rows whose M-RoPE positions vLLM 0.33 places differently from
        transformers (``payload.positions_agree``, bf16 engine); the importance-sampling ratio absorbs the
        difference, this metric shows how often it occurs."""
        from videoktr.vllm.payload import positions_agree

        tokens_per_second = getattr(
            getattr(self.model.config, "vision_config", None), "tokens_per_second", None
        )
        if tokens_per_second is None or not grids:
            return
        differ = sum(
            not positions_agree(g.tolist(), s, tokens_per_second, self.processing_class, torch.bfloat16)
            for g, s in zip(grids, seconds, strict=True)
        )
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["vllm/positions_differ"].append(differ / len(grids))
