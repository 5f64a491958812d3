"""Fixtures of the vLLM tests (the tiny model and videos: tests/conftest.py): an emulation of vLLM 0.33.0's input
processing of a video request (vLLM itself does not install on this machine: its wheel needs torch==2.14.0 and
transformers<5.21, see docs/vllm.md).

The emulation follows vLLM 0.33.0's code, read in its wheel (vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl):

1. ``multimodal/parse.py`` ``_parse_video_data`` / ``_get_video_with_metadata`` (l. 781-834, 648-665): a
   ``(frames, metadata)`` tuple is one video item; Qwen2.5-VL's parser sets ``video_needs_metadata=True``.
2. ``model_executor/models/qwen2_5_vl.py`` ``Qwen2_5_VLMultiModalProcessor._get_hf_mm_inputs`` (l. 1214-1232):
   ``videos=[frames]``, ``video_metadata=[VideoMetadata(**meta without do_sample_frames)]``; no text
   (``processor.py`` ``_get_hf_mm_text`` returns None, l. 1223-1231; Qwen2-VL does not override it).
3. ``multimodal/processing/processor.py`` ``_call_hf_processor`` (l. 1287-1297) -> ``context.py``
   ``get_hf_processor`` (l. 299-330: the processor built with the request's ``mm_processor_kwargs``) and
   ``call_hf_processor`` (l. 402-438: called with them and ``return_tensors="pt"``; floating outputs cast to the
   model dtype, l. 345-374).
4. ``qwen2_5_vl.py`` ``_get_prompt_updates`` (l. 1234-1281): target ``[video_pad]``, replacement
   ``[video_pad] * (prod(grid_thw) // merge_size**2)``; ``processor.py`` ``_apply_token_matches_with_placeholders``
   (l. 851-900) replaces the first match per item (no detection of an already expanded prompt).
5. ``qwen2_5_vl.py`` ``get_mrope_input_positions`` / ``iter_mm_grid_thw`` (l. 1330-1405): M-RoPE positions, the
   temporal index scaled by ``second_per_grid_ts * tokens_per_second`` (``astype(int64)``), the text after a video
   starting at ``max(vision positions) + 1``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _vllm_process(processor_dir, request: dict, model_dtype=torch.float32) -> dict:
    """What vLLM 0.33.0 makes of ``request`` for Qwen2.5-VL (steps 1-4 of the module docstring).

    Returns prompt_token_ids (list), pixel_values_videos, video_grid_thw (1, 3), second_per_grid_ts (1,).
    """
    from transformers import AutoProcessor
    from transformers.video_utils import VideoMetadata

    frames, meta = request["multi_modal_data"]["video"]  # step 1: one (frames, metadata) item
    assert isinstance(frames, np.ndarray) and frames.ndim == 4 and meta is not None
    kwargs = dict(request.get("mm_processor_kwargs") or {})
    processor = AutoProcessor.from_pretrained(str(processor_dir), **kwargs)  # step 3, get_hf_processor
    metadata = VideoMetadata(**{k: v for k, v in meta.items() if k != "do_sample_frames"})  # step 2
    out = processor(videos=[frames], video_metadata=[metadata], **kwargs, return_tensors="pt")  # step 3
    out = {
        k: v.to(model_dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in out.items()
    }
    if "second_per_grid_ts" in out and not torch.is_tensor(out["second_per_grid_ts"]):
        out["second_per_grid_ts"] = torch.tensor(out["second_per_grid_ts"]).to(model_dtype)
    token = processor.tokenizer.convert_tokens_to_ids(processor.video_token)  # step 4
    merge = processor.video_processor.merge_size
    n = int(out["video_grid_thw"][0].prod()) // merge**2
    ids = list(request["prompt_token_ids"])
    first = ids.index(token)
    out["prompt_token_ids"] = ids[:first] + [token] * n + ids[first + 1 :]
    return out


def _vllm_mrope_positions(
    input_ids: list[int], offset: int, grid_thw, t_factor: float, merge: int
) -> np.ndarray:
    """vLLM 0.33.0's ``get_mrope_input_positions`` for one video at ``offset`` (step 5). Returns (3, L)."""
    t, h, w = (int(x) for x in grid_thw)
    h, w = h // merge, w // merge
    parts = [np.broadcast_to(np.arange(offset), (3, offset))]
    grid = np.indices((t, h, w))
    if t_factor != 1.0:
        grid[0] = (grid[0] * t_factor).astype(np.int64)
    parts.append(grid.reshape(3, -1) + offset)
    st = offset + t * h * w
    rest = len(input_ids) - st
    start = parts[-1].max() + 1
    parts.append(np.broadcast_to(np.arange(rest), (3, rest)) + start)
    return np.concatenate(parts, axis=1)


@pytest.fixture(scope="session")
def vllm_process():
    """vllm_process(processor_dir, request, model_dtype=float32) -> what vLLM 0.33 makes of the request."""
    return _vllm_process


@pytest.fixture(scope="session")
def vllm_mrope_positions():
    """vllm_mrope_positions(input_ids, offset, grid_thw, t_factor, merge) -> (3, L) vLLM 0.33 M-RoPE positions."""
    return _vllm_mrope_positions
