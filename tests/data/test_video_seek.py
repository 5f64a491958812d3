"""Seeking decoder: the same frames as decoding the whole stream in order, at a cost that grows with the frames kept;
a container that announces more frames than it holds is an error naming the file; startup probes read metadata only."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

import videoktr.data.video as video_module
from videoktr.data.video import VideoDecodeError, VideoSamplingConfig, decode_video, probe_video, write_video

H, W = 32, 48


def noisy_frames(count: int, seed: int = 0) -> np.ndarray:
    """Random frames: two different source frames never decode alike, so a wrong pick shows."""
    return np.random.default_rng(seed).integers(0, 256, (count, H, W, 3), dtype=np.uint8)


def full_decode(path, indices):
    """Reference: decode every frame in order (the former decoder) and keep ``indices``."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack([frames[i] for i in indices])


def _write_mkv(path, frames, fps):
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.gop_size = 7
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("seek")
    frames = noisy_frames(90)
    return {
        "h264 gop 12": write_video(root / "a.mp4", frames, fps=6.0, keyframe_interval=12),
        "h264 gop 1": write_video(root / "b.mp4", frames, fps=6.0, keyframe_interval=1),
        "h264 default gop": write_video(root / "c.mp4", frames, fps=6.0),
        "mpeg4 gop 10, 29.97 fps": write_video(
            root / "d.mp4", frames, fps=30000 / 1001, codec="mpeg4", keyframe_interval=10
        ),
        "matroska, no frame count": _write_mkv(root / "e.mkv", frames, 6),
    }


SAMPLINGS = [
    VideoSamplingConfig(num_frames=4),
    VideoSamplingConfig(num_frames=16),
    VideoSamplingConfig(num_frames=90),
    VideoSamplingConfig(num_frames=None, fps=0.5, min_frames=2),
]


@pytest.mark.parametrize(
    "name",
    ["h264 gop 12", "h264 gop 1", "h264 default gop", "mpeg4 gop 10, 29.97 fps", "matroska, no frame count"],
)
@pytest.mark.parametrize("sampling", SAMPLINGS, ids=["4", "16", "all 90", "fps 0.5"])
def test_seeking_returns_the_frames_of_a_full_decode(videos, name, sampling):
    decoded = decode_video(videos[name], sampling)
    expected = full_decode(videos[name], decoded.frame_indices)
    assert decoded.total_frames == 90
    assert np.array_equal(decoded.frames.permute(0, 2, 3, 1).numpy(), expected)


def test_far_frames_are_reached_by_seeking_not_by_decoding_everything(videos, monkeypatch):
    """With a keyframe every 12 frames, 4 frames of 90 decode far fewer than the 90 a full decode needs."""
    decoded_count = 0
    original = av.container.InputContainer.decode

    def counting(self, *args, **kwargs):
        nonlocal decoded_count
        for frame in original(self, *args, **kwargs):
            decoded_count += 1
            yield frame

    monkeypatch.setattr(av.container.InputContainer, "decode", counting)
    decode_video(videos["h264 gop 12"], VideoSamplingConfig(num_frames=4))
    assert 4 <= decoded_count <= 4 * 12 - 10  # at most one GOP per kept frame (the last GOP is shorter)
    decoded_count = 0
    decode_video(videos["h264 gop 12"], VideoSamplingConfig(num_frames=90))
    assert decoded_count >= 90


def test_a_container_announcing_more_frames_than_it_holds_names_the_file(videos, monkeypatch):
    monkeypatch.setattr(video_module, "_count_frames", lambda container, path: 120)
    with pytest.raises(VideoDecodeError, match=r"frame 119 .*stream ends at 14\.8") as info:
        decode_video(videos["h264 gop 12"], VideoSamplingConfig(num_frames=4))
    assert str(videos["h264 gop 12"]) in str(info.value)


def test_probe_reads_metadata_without_decoding(videos, monkeypatch):
    def no_decode(self, *args, **kwargs):
        raise AssertionError("probe_video decoded a frame")

    monkeypatch.setattr(av.container.InputContainer, "decode", no_decode)
    info = probe_video(videos["h264 gop 12"], VideoSamplingConfig(num_frames=16))
    assert (info.total_frames, info.source_fps, info.duration) == (90, 6.0, 15.0)
    with pytest.raises(VideoDecodeError, match="too short") as err:
        probe_video(videos["h264 gop 12"], VideoSamplingConfig(num_frames=92))
    assert str(videos["h264 gop 12"]) in str(err.value)
