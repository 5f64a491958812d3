"""Fixtures shared across test packages: the tiny Qwen2.5-VL (saved once per session) and random decoded videos."""

import pytest
import torch

from videoktr.data.video import DecodedVideo
from videoktr.models.tiny import build_tiny_model, load_model_and_processor


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    model, processor = load_model_and_processor(tiny_dir)
    model.eval()
    return model, processor


def _make_video(
    seed: int, n_frames: int = 8, fps: float = 2.0, height: int = 56, width: int = 112
) -> DecodedVideo:
    """Random frames taken as every 2nd frame of a 2*fps source: sample_fps = n / (2n) * 2fps = fps."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n_frames, 3, height, width), dtype=torch.uint8, generator=g)
    return DecodedVideo(
        frames=frames,
        sample_fps=fps,
        frame_indices=list(range(0, 2 * n_frames, 2)),
        source_fps=2 * fps,
        total_frames=2 * n_frames,
        duration=n_frames / fps,
        path=f"video{seed}.mp4",
    )


@pytest.fixture
def video():
    """Factory: video(seed, n_frames=8, fps=2.0) -> DecodedVideo of random frames (56x112)."""
    return _make_video


@pytest.fixture
def make_video():
    """The same factory as ``video`` (for tests whose local variable is named ``video``)."""
    return _make_video
