"""Qwen-VL model inputs through the real processor: chat formatting (video first, as Video-R1), the real sampling
fps handed to the processor, and frame-permuted re-encodings (the exact temporal counterfactual).

Traps guarded against (transformers 5.23): raw frames without metadata are taken as 24 fps (temporal positions
collapse), so the real sampling fps is always passed and ``second_per_grid_ts`` is checked when the processor returns
it; without ``mm_token_type_ids`` the model silently uses 1-D positions, so it is required.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["build_video_inputs", "reencode_with_frame_permutation"]


def _per_clip_budget(processor) -> bool:
    """Qwen3-VL / Qwen3.5's video processor bounds the pixels of the whole clip (t * h * w), Qwen2(.5)-VL's those
    of one frame."""
    return type(processor.video_processor).__name__.startswith("Qwen3")


def _size_kwargs(processor, sampling, frames: int = 1) -> dict[str, Any]:
    """``size=`` override of the video processor from ``sampling.min_pixels/max_pixels`` (None keeps its own).

    The sampling config's budget is per frame; a per-clip processor gets it times ``frames`` (the longest clip of
    the call), so each frame gets the same budget as with Qwen2.5-VL.
    """
    if sampling is None or (sampling.min_pixels is None and sampling.max_pixels is None):
        return {}
    scale = frames if _per_clip_budget(processor) else 1
    size = dict(processor.video_processor.size)
    if sampling.min_pixels is not None:
        size["shortest_edge"] = int(sampling.min_pixels) * scale
    if sampling.max_pixels is not None:
        size["longest_edge"] = int(sampling.max_pixels) * scale
    return {"size": size}


def _messages(text: str, has_video: bool, completion: str | None) -> list[dict]:
    content = ([{"type": "video"}] if has_video else []) + [{"type": "text", "text": text}]
    messages = [{"role": "user", "content": content}]
    if completion is not None:
        messages.append({"role": "assistant", "content": completion})
    return messages


def build_video_inputs(
    processor,
    texts: Sequence[str],
    videos: Sequence[Any | None],
    sampling=None,
    add_generation_prompt: bool = True,
    completions: Sequence[str] | None = None,
):
    """Chat-format ``texts`` (video first, then text, as Video-R1) and run the real processor on the frames.

    videos: one ``DecodedVideo`` (frames (T, C, H, W) uint8, ``sample_fps``) or None per text. ``sampling``: a
    ``VideoSamplingConfig`` whose ``min_pixels``/``max_pixels`` override the processor's. ``completions``: assistant
    turns appended (teacher forcing / SFT; then no generation prompt). Frames are never resampled here.

    Returns a ``BatchFeature``: input_ids (N, L) left padded, attention_mask (N, L), mm_token_type_ids (N, L),
    and when a video is present pixel_values_videos (sum_v t*h*w, C*tps*p*p), video_grid_thw (n_videos, 3),
    and for Qwen2.5-VL second_per_grid_ts (n_videos,) = temporal_patch_size / sample_fps (checked); Qwen3-VL /
    Qwen3.5 processors write each temporal patch's timestamp (from the frame indices and fps) in the text instead.
    """
    if len(texts) != len(videos) or (completions is not None and len(completions) != len(texts)):
        raise ValueError(
            f"{len(texts)} texts, {len(videos)} videos, completions {completions and len(completions)}"
        )
    prompts = []
    for i, (text, video) in enumerate(zip(texts, videos)):
        completion = None if completions is None else completions[i]
        prompts.append(
            processor.apply_chat_template(
                _messages(text, video is not None, completion),
                tokenize=False,
                add_generation_prompt=add_generation_prompt and completion is None,
            )
        )
    present = [v for v in videos if v is not None]
    kwargs: dict[str, Any] = {}
    if present:
        kwargs = dict(
            videos=[v.frames for v in present],
            video_metadata=[v.metadata_dict() for v in present],
            do_sample_frames=False,
            **_size_kwargs(processor, sampling, max(v.frames.shape[0] for v in present)),
        )
    inputs = processor(text=prompts, padding=True, padding_side="left", return_tensors="pt", **kwargs)
    if "mm_token_type_ids" not in inputs:
        raise RuntimeError("the processor returned no mm_token_type_ids; positions would silently be 1-D")
    if (
        present and "second_per_grid_ts" in inputs
    ):  # Qwen2.5-VL; Qwen3-VL / Qwen3.5 write timestamps in the text
        _check_second_per_grid(
            inputs["second_per_grid_ts"], present, processor.video_processor.temporal_patch_size
        )
    return inputs


def _check_second_per_grid(
    second_per_grid_ts: torch.Tensor, videos: Sequence[Any], temporal_patch: int
) -> None:
    expected = torch.tensor([temporal_patch / float(v.sample_fps) for v in videos])
    if not torch.allclose(second_per_grid_ts.float().cpu(), expected, rtol=1e-5):
        raise RuntimeError(
            f"second_per_grid_ts {second_per_grid_ts.tolist()} != temporal_patch_size / sample_fps "
            f"{expected.tolist()}: the processor ignored the video metadata (temporal positions would be wrong)"
        )


def reencode_with_frame_permutation(
    processor, videos: Sequence[Any], perms: Sequence[torch.Tensor], sampling=None
):
    """Pixel inputs of ``videos`` with their frames reordered (the authors' code-parity temporal perturbation).

    perms[v]: (T_v,) long, frame ``i`` of the new clip is frame ``perms[v][i]``. Metadata stays that of the
    original clip. Returns a ``BatchFeature`` with pixel_values_videos, video_grid_thw, second_per_grid_ts that
    replace the originals in the model inputs (the token layout does not change).
    """
    if len(perms) != len(videos):
        raise ValueError(f"{len(perms)} permutations for {len(videos)} videos")
    frames = []
    for video, perm in zip(videos, perms):
        if sorted(perm.tolist()) != list(range(video.frames.shape[0])):
            raise ValueError(f"not a permutation of {video.frames.shape[0]} frames: {perm.tolist()}")
        frames.append(video.frames[perm])
    out = processor.video_processor(
        videos=frames,
        video_metadata=[v.metadata_dict() for v in videos],
        do_sample_frames=False,
        return_tensors="pt",
        **_size_kwargs(processor, sampling, max(v.frames.shape[0] for v in videos)),
    )
    temporal_patch = processor.video_processor.temporal_patch_size
    out["second_per_grid_ts"] = torch.tensor([temporal_patch / float(v.sample_fps) for v in videos])
    out.pop("video_metadata", None)
    return out
