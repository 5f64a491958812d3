"""Video tokens per sample: the plan's arithmetic equals the real processor's output."""

from __future__ import annotations

import pytest
import torch

from videoktr.errors import UserError
from videoktr.plan.models import model_sizes, resolve_config
from videoktr.plan.tokens import parse_frame_size, sample_tokens


@pytest.mark.parametrize(
    "frames, hw, min_pixels, max_pixels",
    [(4, (56, 112), None, 56 * 112), (6, (90, 160), 28 * 28 * 4, 28 * 28 * 12), (5, (200, 120), 3136, 6272)],
)
def test_tokens_equal_the_processor(tiny_dir, tiny, frames, hw, min_pixels, max_pixels):
    from videoktr.plan.tokens import DEFAULT_MIN_PIXELS

    _, processor = tiny
    sizes = model_sizes(resolve_config(str(tiny_dir))[0])
    trainer = {"video_frames": frames, "video_min_pixels": min_pixels, "video_max_pixels": max_pixels,
               "max_completion_length": 32}  # fmt: skip
    tokens = sample_tokens(trainer, sizes, hw, text_tokens=10)
    size = dict(processor.video_processor.size)
    size["shortest_edge"] = min(min_pixels or DEFAULT_MIN_PIXELS, max_pixels)
    size["longest_edge"] = max_pixels
    video = torch.randint(0, 256, (frames, 3, *hw), dtype=torch.uint8)
    out = processor.video_processor(videos=[video], size=size, do_sample_frames=False, return_tensors="pt")
    grid = out["video_grid_thw"][0].tolist()
    assert list(tokens.grid) == grid
    assert tokens.vision_patches == out["pixel_values_videos"].shape[0]
    assert tokens.visual_tokens == grid[0] * grid[1] * grid[2] // 4  # merge 2 x 2
    assert tokens.sequence == tokens.visual_tokens + 10 + 32


def test_fps_sampling_uses_the_frame_bound():
    sizes = model_sizes(resolve_config("Qwen2.5-VL-7B-Instruct")[0])
    trainer = {"video_frames": None, "video_max_frames": 16, "video_min_pixels": 100352,
               "video_max_pixels": 100352, "max_completion_length": 768}  # fmt: skip
    tokens = sample_tokens(trainer, sizes, (360, 640), text_tokens=256)
    # smart_resize(360, 640, 28, 100352, 100352) = (224, 420): 16 x 30 patches, 8 temporal patches of 2 frames
    assert (tokens.height, tokens.width, tokens.grid) == (224, 420, (8, 16, 30))
    assert not tokens.frames_exact and tokens.visual_tokens == 8 * 16 * 30 // 4 == 960


def test_bad_frame_size():
    assert parse_frame_size("360x640") == (360, 640)
    with pytest.raises(UserError, match="HEIGHTxWIDTH"):
        parse_frame_size("360")
