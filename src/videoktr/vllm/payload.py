"""vLLM requests for video prompts: the same frames, metadata and pixel budget as the trainer's processor call.

One request per prompt (a dict ``vllm.LLM.generate`` takes), built by :func:`video_request` for training rollouts,
T-GRPO's shuffled rollouts and the eval backend alike::

    {"prompt_token_ids": [...],                      # ONE <|video_pad|> per video (vLLM expands it)
     "multi_modal_data": {"video": (frames, meta)},  # frames (T, H, W, 3) uint8, exactly the decoded frames
     "mm_processor_kwargs": {"do_sample_frames": False, "size": {...}}}

Why each field is what it is (vLLM 0.33.0, read in its wheel):

- ``prompt_token_ids`` carry one placeholder per video: vLLM's ``BaseMultiModalProcessor.apply`` always replaces
  the first ``<|video_pad|>`` by ``t*h*w / merge**2`` of them (``multimodal/processing/processor.py``
  ``_apply_token_matches_with_placeholders``, target ``[video_pad]`` from ``Qwen2_5_VLMultiModalProcessor.
  _get_prompt_updates``, ``model_executor/models/qwen2_5_vl.py``); the trainer's already expanded ids would be
  expanded again (2N - 1 placeholders). :func:`collapse_video_placeholders` turns the trainer's ids into these.
- the metadata dict becomes ``transformers.video_utils.VideoMetadata(**meta)`` (``qwen2_5_vl.py``
  ``_get_hf_mm_inputs``); the HF processor derives ``second_per_grid_ts = temporal_patch_size / sampled_fps`` from it,
  as in the trainer (``DecodedVideo.metadata_dict``).
- ``mm_processor_kwargs`` reach both ``get_hf_processor(**kw)`` and the processor call (``multimodal/processing/
  context.py`` ``call_hf_processor``): ``do_sample_frames=False`` (the frames are already sampled; no resampling)
  and the trainer's ``size`` override (``models.inputs._size_kwargs``, the recipe's min/max pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "collapse_video_placeholders",
    "expected_video_tokens",
    "mm_processor_kwargs",
    "patch_shuffled_video",
    "positions_agree",
    "video_request",
    "video_token_id",
]


def video_token_id(processor) -> int:
    """Id of the video placeholder token (``<|video_pad|>``), read from the processor as vLLM does."""
    return int(processor.tokenizer.convert_tokens_to_ids(processor.video_token))


def collapse_video_placeholders(prompt_ids: Sequence[int], video_token: int) -> list[int]:
    """``prompt_ids`` with every run of ``video_token`` reduced to one token (the inverse of vLLM's expansion).

    prompt_ids: (L,) token ids with expanded video placeholders. Returns (L - sum(run - 1),) ids.
    """
    out: list[int] = []
    for token in prompt_ids:
        token = int(token)
        if token == video_token and out and out[-1] == video_token:
            continue
        out.append(token)
    return out


def expected_video_tokens(grid_thw: Sequence[int], merge_size: int) -> int:
    """Placeholders vLLM writes for one video: ``t * h * w // merge_size**2`` (``get_replacement_qwen2vl``)."""
    t, h, w = (int(x) for x in grid_thw)
    return t * h * w // merge_size**2


def mm_processor_kwargs(processor, video, sampling) -> dict[str, Any]:
    """Processor kwargs of one request: no frame resampling, the trainer's pixel budget (``size``)."""
    from videoktr.models.inputs import _size_kwargs

    return {"do_sample_frames": False, **_size_kwargs(processor, sampling, int(video.frames.shape[0]))}


def video_request(
    processor, prompt_ids: Sequence[int], video, sampling, frames: torch.Tensor | None = None
) -> dict[str, Any]:
    """The vLLM request of one video prompt.

    processor: the model's HF processor (the trainer's). prompt_ids: the prompt's token ids, expanded (the trainer's
    ``_tokenize_prompts``) or not (the chat template tokenized alone). video: the ``DecodedVideo`` the trainer used.
    sampling: the run's ``VideoSamplingConfig`` (pixel budget). frames: (T, C, H, W) uint8 to send instead of
    ``video.frames`` (T-GRPO's shuffled clip, :func:`patch_shuffled_video`); metadata stays the video's.
    """
    frames = video.frames if frames is None else frames
    if frames.dim() != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be (T, 3, H, W) uint8, got {tuple(frames.shape)} {frames.dtype}")
    token = video_token_id(processor)
    ids = collapse_video_placeholders(prompt_ids, token)
    if ids.count(token) != 1:
        raise ValueError(f"a video prompt needs exactly one video placeholder run, found {ids.count(token)}")
    return {
        "prompt_token_ids": ids,
        "multi_modal_data": {
            "video": (frames.permute(0, 2, 3, 1).contiguous().numpy(), video.metadata_dict())
        },
        "mm_processor_kwargs": mm_processor_kwargs(processor, video, sampling),
    }


def patch_shuffled_video(frames: torch.Tensor, perm: torch.Tensor, temporal_patch: int) -> torch.Tensor:
    """Frames whose processing gives the temporal patches in order ``perm`` (T-GRPO's shuffle on the pixel rows).

    frames: (T, C, H, W); perm: (P,) with P = ceil(T / temporal_patch). The processor pads T up to a multiple of
    ``temporal_patch`` by repeating the last frame; the same padding is done here first, so the returned
    (P * temporal_patch, C, H, W) frames need no padding and patch ``i`` is the original patch ``perm[i]``.
    """
    t = frames.shape[0]
    patches = -(-t // temporal_patch)
    if sorted(perm.tolist()) != list(range(patches)):
        raise ValueError(f"not a permutation of {patches} temporal patches: {perm.tolist()}")
    pad = patches * temporal_patch - t
    if pad:
        frames = torch.cat([frames, frames[-1:].expand(pad, *frames.shape[1:])])
    blocks = frames.view(patches, temporal_patch, *frames.shape[1:])
    return blocks[perm].reshape(patches * temporal_patch, *frames.shape[1:])


def positions_agree(
    grid_thw: Sequence[int],
    second_per_grid_ts: float,
    tokens_per_second: float,
    processor,
    vllm_dtype: torch.dtype = torch.float32,
) -> bool:
    """Whether vLLM 0.33 and transformers (5.20-5.23) give a Qwen2.5-VL video prompt the same M-RoPE positions.

    Both scale the temporal index by ``tokens_per_second * second_per_grid_ts`` (vLLM with the value cast to the
    model dtype, ``vllm_dtype``); the text after the video then starts at ``max(h, w)`` past the video's start in
    transformers and at ``max(every vision position) + 1`` in vLLM (``qwen2_5_vl.py get_mrope_input_positions``).
    They differ when the last temporal index reaches the merged frame side (long clips at a low sampling fps).
    """
    merge = processor.video_processor.merge_size
    t, h, w = (int(x) for x in grid_thw)
    steps = torch.arange(t)
    ours = (steps * (tokens_per_second * torch.tensor(second_per_grid_ts, dtype=torch.float32))).long()
    theirs_factor = float(torch.tensor(second_per_grid_ts).to(vllm_dtype)) * tokens_per_second
    theirs = (steps.double() * theirs_factor).long()
    side = max(h, w) // merge
    text_start_theirs = max(int(theirs.max()), side - 1) + 1
    return torch.equal(ours, theirs) and text_start_theirs == side
