"""Tokens of one training sample from a recipe's frame and pixel settings, with the real processor's arithmetic.

Qwen2-VL / Qwen2.5-VL (``Qwen2VLVideoProcessor``): each frame is resized by transformers' ``smart_resize`` to
multiples of ``patch * merge`` pixels within [min_pixels, max_pixels]; frames are padded to a multiple of
``temporal_patch`` (the last frame repeated); the vision tower sees ``t * (H / patch) * (W / patch)`` patches and the
LLM ``t * (H / patch) * (W / patch) / merge**2`` video tokens, with ``t = ceil(frames / temporal_patch)``.
Qwen3-VL / Qwen3.5 bound the pixels of the whole clip; videoktr scales the per-frame budget by the frame count
(``models/inputs.py``), so the same per-frame rule applies (their text also gets a timestamp per temporal patch,
counted in ``timestamp_tokens``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from videoktr.errors import UserError

__all__ = ["SampleTokens", "sample_tokens", "parse_frame_size"]

# Processor defaults when the recipe leaves a pixel bound unset (Qwen2VLVideoProcessor: size shortest/longest edge)
DEFAULT_MIN_PIXELS = 128 * 28 * 28
DEFAULT_MAX_PIXELS = 28 * 28 * 768
TIMESTAMP_TOKENS = 6  # "<1.5 seconds>" per temporal patch (Qwen3-VL / Qwen3.5), approximate


@dataclass(frozen=True)
class SampleTokens:
    """Token counts of one prompt + completion (see the module docstring)."""

    frames: int  # frames given to the processor (an upper bound when sampling by fps)
    frames_exact: bool  # False: fps sampling, the count depends on the video's length (video_max_frames used)
    height: int  # resized frame
    width: int
    vision_patches: int  # vision tower tokens per video (before the merge)
    visual_tokens: int  # LLM video tokens per sample
    text_tokens: int  # prompt text incl. chat template and vision start/end (an assumption: --text-tokens)
    completion_tokens: int  # max_completion_length

    @property
    def prompt_tokens(self) -> int:
        return self.visual_tokens + self.text_tokens

    @property
    def sequence(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def grid(self) -> tuple[int, int, int]:
        """(t, h, w) in patches: ``video_grid_thw`` of the processor."""
        return self.frames_padded // self.temporal_patch, self.height // self.patch, self.width // self.patch

    # set by sample_tokens (not init fields of the user-facing view)
    patch: int = 14
    temporal_patch: int = 2
    merge: int = 2

    @property
    def frames_padded(self) -> int:
        return math.ceil(self.frames / self.temporal_patch) * self.temporal_patch


def parse_frame_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. 360x640) -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--frame-size {text!r}: expected HEIGHTxWIDTH in pixels, e.g. 360x640") from None
    if h < 1 or w < 1:
        raise UserError(f"--frame-size {text!r}: both sides must be positive")
    return h, w


def sample_tokens(trainer: dict, sizes, frame_size: tuple[int, int], text_tokens: int) -> SampleTokens:
    """Tokens of one sample of a recipe whose ``trainer`` fields (with KTRConfig defaults filled) set the video
    sampling; ``sizes``: :class:`videoktr.plan.models.ModelSizes`; ``frame_size``: (H, W) of the source video."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    if trainer.get("video_frames") is not None:
        frames, exact = int(trainer["video_frames"]), True
    else:  # fps sampling: at most video_max_frames (fewer for a short video)
        frames, exact = int(trainer["video_max_frames"]), False
    min_pixels = trainer.get("video_min_pixels") or DEFAULT_MIN_PIXELS
    max_pixels = trainer.get("video_max_pixels") or DEFAULT_MAX_PIXELS
    min_pixels = min(min_pixels, max_pixels)
    factor = sizes.patch * sizes.merge
    height, width = smart_resize(*frame_size, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    t = math.ceil(frames / sizes.temporal_patch)
    patches = t * (height // sizes.patch) * (width // sizes.patch)
    visual = patches // sizes.merge**2
    extra = TIMESTAMP_TOKENS * t if sizes.family in ("qwen3_vl", "qwen3_5") else 0
    return SampleTokens(
        frames=frames,
        frames_exact=exact,
        height=height,
        width=width,
        vision_patches=patches,
        visual_tokens=visual,
        text_tokens=int(text_tokens) + extra,
        completion_tokens=int(trainer["max_completion_length"]),
        patch=sizes.patch,
        temporal_patch=sizes.temporal_patch,
        merge=sizes.merge,
    )
