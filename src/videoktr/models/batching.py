"""Split and concatenate multimodal batches by rows, carrying each row's vision inputs (pixel rows belong to videos
by ``video_grid_thw.prod(-1)``, videos to rows by runs of video tokens in ``mm_token_type_ids``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "MULTIMODAL_KEYS",
    "SEQUENCE_KEYS",
    "VIDEO_TYPE",
    "IMAGE_TYPE",
    "visuals_per_row",
    "split_multimodal",
    "concat_multimodal",
]

# kwargs of the vision inputs; their first dimension counts patches or videos/images, not rows
MULTIMODAL_KEYS = (
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
    "pixel_values",
    "image_grid_thw",
)
# per-row (N, L) tensors that are left padded when batches are concatenated: key -> padding value (None: pad id)
SEQUENCE_KEYS = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0}
IMAGE_TYPE, VIDEO_TYPE = 1, 2  # values of mm_token_type_ids (text = 0)


def visuals_per_row(mm_token_type_ids: torch.Tensor, token_type: int) -> torch.Tensor:
    """Number of videos (``VIDEO_TYPE``) or images (``IMAGE_TYPE``) in each row: runs of that type.

    mm_token_type_ids: (N, L) -> (N,) long. Two visuals are always separated by vision start/end (text) tokens.
    """
    is_type = (mm_token_type_ids == token_type).long()
    starts = is_type[:, 1:] - is_type[:, :-1] == 1
    return is_type[:, 0] + starts.long().sum(-1)


def _visual_slices(inputs, n_rows: int) -> dict[str, list[slice]]:
    """Per row, the slice of videos / images / pixel rows belonging to it."""
    out: dict[str, list[slice]] = {}
    for kind, token_type, grid_key, pixel_key in (
        ("video", VIDEO_TYPE, "video_grid_thw", "pixel_values_videos"),
        ("image", IMAGE_TYPE, "image_grid_thw", "pixel_values"),
    ):
        if inputs.get(grid_key) is None:
            continue
        counts = visuals_per_row(inputs["mm_token_type_ids"], token_type).tolist()
        grid = inputs[grid_key]
        if sum(counts) != grid.shape[0]:
            raise ValueError(
                f"{sum(counts)} {kind} runs in mm_token_type_ids but {grid.shape[0]} rows in {grid_key}"
            )
        bounds = torch.tensor([0] + counts).cumsum(0).tolist()
        patch_bounds = torch.cat([torch.zeros(1, dtype=torch.long), grid.prod(-1).cumsum(0)]).tolist()
        out[grid_key] = [slice(bounds[r], bounds[r + 1]) for r in range(n_rows)]
        out[pixel_key] = [slice(patch_bounds[bounds[r]], patch_bounds[bounds[r + 1]]) for r in range(n_rows)]
        if kind == "video" and inputs.get("second_per_grid_ts") is not None:
            out["second_per_grid_ts"] = out[grid_key]
    return out


def split_multimodal(inputs, row_slices: Sequence[slice]) -> list[dict[str, Any]]:
    """Split a batch into row groups, carrying each group's vision inputs along.

    inputs: mapping with input_ids (N, L), mm_token_type_ids (N, L) and optional MULTIMODAL_KEYS; every other value
    must be row-indexed (first dim N). row_slices: contiguous slices of rows, e.g. ``[slice(0, 4), slice(4, 8)]``.
    Returns one dict per slice; pixel rows belong to videos by ``video_grid_thw.prod(-1)`` (images likewise).
    """
    n_rows = inputs["input_ids"].shape[0]
    per_row = _visual_slices(inputs, n_rows)
    parts = []
    for rows in row_slices:
        start, stop, step = rows.indices(n_rows)
        if step != 1 or stop <= start:
            raise ValueError(f"row slices must be non-empty and contiguous, got {rows}")
        part: dict[str, Any] = {}
        for key, value in inputs.items():
            if value is None:
                part[key] = None
            elif key in per_row:
                part[key] = value[per_row[key][start].start : per_row[key][stop - 1].stop]
            elif key in MULTIMODAL_KEYS:
                raise ValueError(f"{key} given without its grid (video_grid_thw / image_grid_thw)")
            elif len(value) == n_rows:
                part[key] = value[start:stop]
            else:
                raise ValueError(
                    f"cannot split {key!r}: first dimension {len(value)} is not the row count {n_rows}"
                )
        parts.append(part)
    return parts


def _left_pad(value: torch.Tensor, length: int, pad_value: int) -> torch.Tensor:
    if value.shape[1] == length:
        return value
    pad = value.new_full((value.shape[0], length - value.shape[1]), pad_value)
    return torch.cat([pad, value], dim=1)


def concat_multimodal(parts: Sequence[Any], pad_token_id: int | None = None) -> dict[str, Any]:
    """Inverse of :func:`split_multimodal`: concatenate row groups (and their vision inputs) in order.

    Sequence tensors (input_ids, attention_mask, mm_token_type_ids) of different lengths are left padded
    (input_ids with ``pad_token_id``, which is then required). Other values are concatenated along dim 0; vision
    keys may be absent from parts without videos/images.
    """
    keys = list(dict.fromkeys(key for p in parts for key in p))
    for key in keys:
        if key not in MULTIMODAL_KEYS and any(key not in p for p in parts):
            raise ValueError(f"{key!r} is missing from some parts (only vision keys may be absent)")
    length = max(p["input_ids"].shape[1] for p in parts)
    out: dict[str, Any] = {}
    for key in keys:
        values = [p[key] for p in parts if p.get(key) is not None]
        if not values:
            out[key] = None
        elif key in SEQUENCE_KEYS:
            pad = SEQUENCE_KEYS[key] if SEQUENCE_KEYS[key] is not None else pad_token_id
            if pad is None and any(v.shape[1] != length for v in values):
                raise ValueError(
                    "parts have different sequence lengths: pass pad_token_id to left pad input_ids"
                )
            out[key] = torch.cat([_left_pad(v, length, pad) for v in values])
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.cat(values)
        else:
            out[key] = [item for v in values for item in v]
    return out
