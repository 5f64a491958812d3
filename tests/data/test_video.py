from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from videoktr.data.video import DecodedVideo, VideoDecodeError, VideoSamplingConfig, decode_video, write_video
from videoktr.errors import UserError

H, W = 32, 48


def graded_frames(count: int) -> np.ndarray:
    """Frame i is a flat grey of level 20 * i, so a decoded frame tells which source frame it was."""
    levels = (20 * np.arange(count)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, H, W, 3)).copy()


@pytest.fixture(scope="module")
def twelve_frames(tmp_path_factory):
    """12 frames at 6 fps (2.0 s)."""
    return write_video(tmp_path_factory.mktemp("video") / "graded.mp4", graded_frames(12), fps=6.0)


def frame_levels(decoded: DecodedVideo) -> list[int]:
    return [round(float(f.float().mean()) / 20) for f in decoded.frames]


def test_fixed_count_indices_rate_and_content(twelve_frames):
    decoded = decode_video(twelve_frames, VideoSamplingConfig(num_frames=4))
    assert decoded.frames.shape == (4, 3, H, W) and decoded.frames.dtype == torch.uint8
    # round(linspace(0, 11, 4)) = round([0, 3.67, 7.33, 11]) = [0, 4, 7, 11]
    assert decoded.frame_indices == [0, 4, 7, 11]
    assert frame_levels(decoded) == [0, 4, 7, 11]  # the pixels really are those source frames
    # 4 sampled frames over 12 source frames at 6 fps: 4 / 12 * 6 = 2.0 frames per second
    assert decoded.sample_fps == pytest.approx(2.0)
    assert (decoded.source_fps, decoded.total_frames, decoded.duration) == (6.0, 12, pytest.approx(2.0))
    assert decoded.path == str(twelve_frames)


def test_all_frames_keep_the_source_rate(twelve_frames):
    decoded = decode_video(twelve_frames, VideoSamplingConfig(num_frames=12))
    assert decoded.frame_indices == list(range(12))
    assert frame_levels(decoded) == list(range(12))
    assert decoded.sample_fps == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("fps", "min_frames", "max_frames", "expected"),
    [
        (2.0, 4, 64, 4),  # 2 s * 2 fps = 4 frames
        (1.0, 2, 64, 2),  # 2 s * 1 fps = 2 frames (min_frames 2 allows it)
        (1.0, 4, 64, 4),  # 2 frames wanted, raised to min_frames = 4
        (10.0, 4, 64, 12),  # 20 wanted, capped by the video's 12 frames
        (10.0, 4, 8, 8),  # 20 wanted, capped by max_frames
        (2.5, 2, 64, 4),  # 2 s * 2.5 fps = 5, floored to the even 4
    ],
)
def test_fps_sampling_count(twelve_frames, fps, min_frames, max_frames, expected):
    cfg = VideoSamplingConfig(num_frames=None, fps=fps, min_frames=min_frames, max_frames=max_frames)
    decoded = decode_video(twelve_frames, cfg)
    assert len(decoded.frame_indices) == expected and decoded.frames.shape[0] == expected
    assert decoded.frame_indices[0] == 0 and decoded.frame_indices[-1] == 11
    assert decoded.sample_fps == pytest.approx(expected / 12 * 6.0)


def test_metadata_gives_the_processor_our_sample_fps(twelve_frames):
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    decoded = decode_video(twelve_frames, VideoSamplingConfig(num_frames=4))
    processor = Qwen2VLVideoProcessor(min_pixels=28 * 28, max_pixels=64 * 28 * 28)
    out = processor(
        videos=[decoded.frames],
        video_metadata=[decoded.metadata_dict()],
        do_sample_frames=False,
        return_metadata=True,
        cap_pixels_per_frame=False,
        return_tensors="pt",
    )
    metadata = out["video_metadata"][0]
    assert metadata.sampled_fps == pytest.approx(decoded.sample_fps)
    assert metadata.frames_indices == [0, 4, 7, 11]
    assert out["video_grid_thw"][0, 0].item() == 2  # 4 frames in temporal patches of 2: nothing resampled


def test_too_short_video_names_the_file(twelve_frames):
    with pytest.raises(VideoDecodeError, match="too short.*12 frames.*num_frames=16") as info:
        decode_video(twelve_frames, VideoSamplingConfig(num_frames=16))
    assert str(twelve_frames) in str(info.value)


def test_missing_file_raises_user_error_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "clip.mp4"
    with pytest.raises(VideoDecodeError, match="not found") as info:
        decode_video(missing, VideoSamplingConfig(num_frames=4))
    assert isinstance(info.value, UserError)
    assert info.value.path == str(missing) and str(missing) in str(info.value)


@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_empty_or_truncated_file_raises(tmp_path, twelve_frames, keep):
    data = twelve_frames.read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(VideoDecodeError) as info:
        decode_video(broken, VideoSamplingConfig(num_frames=4))
    assert str(broken) in str(info.value)


def test_truncated_faststart_file_reports_the_missing_frames(tmp_path):
    """With the index at the front the file opens, and the shortfall shows only while decoding."""
    path = tmp_path / "faststart.mp4"
    noise = np.random.default_rng(0).integers(0, 256, (8, H, W, 3), dtype=np.uint8)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=Fraction(4))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for image in noise:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(VideoDecodeError, match="faststart.mp4"):
        decode_video(path, VideoSamplingConfig(num_frames=8))


def test_container_without_frame_count_is_counted_by_packets(tmp_path):
    """Matroska stores no frame count (stream.frames == 0): the frames are counted by demuxing."""
    path = tmp_path / "graded.mkv"
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(6))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for image in graded_frames(12):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    decoded = decode_video(path, VideoSamplingConfig(num_frames=4))
    assert decoded.total_frames == 12 and frame_levels(decoded) == [0, 4, 7, 11]


@pytest.mark.parametrize("codec, tolerance", [("libx264", 8), ("mpeg4", 16)])
def test_written_colours_survive_the_round_trip(tmp_path, codec, tolerance):
    frames = np.zeros((4, H, W, 3), dtype=np.uint8)
    frames[:] = (122, 116, 104)
    frames[:, 8:24, 16:32] = (220, 30, 30)
    path = write_video(tmp_path / f"{codec}.mp4", frames, fps=4.0, codec=codec)
    decoded = decode_video(path, VideoSamplingConfig(num_frames=4)).frames.permute(0, 2, 3, 1).int()
    inside = decoded[:, 10:22, 18:30] - torch.tensor([220, 30, 30])  # 2 px away from the edges
    outside = decoded[:, :, 36:] - torch.tensor([122, 116, 104])
    assert inside.abs().max() <= tolerance and outside.abs().max() <= tolerance


def test_write_video_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 48, 3), np.uint8), fps=4.0)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "float.mp4", np.zeros((2, 32, 48, 3), np.float32), fps=4.0)
    with pytest.raises(ValueError, match="codec"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 32, 48, 3), np.uint8), fps=4.0, codec="vp9")


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"num_frames": 15}, "use 16"),
        ({"num_frames": 16, "fps": 2.0}, "exactly one"),
        ({"num_frames": None}, "exactly one"),
        ({"num_frames": None, "fps": -1.0}, "fps"),
        ({"min_frames": 3}, "min_frames"),
        ({"min_frames": 8, "max_frames": 4}, "max_frames"),
        ({"max_pixels": 0}, "max_pixels"),
        ({"min_pixels": 200 * 28 * 28, "max_pixels": 100 * 28 * 28}, "min_pixels"),
    ],
)
def test_sampling_config_errors_say_what_to_fix(kwargs, hint):
    with pytest.raises(UserError, match=hint):
        VideoSamplingConfig(**kwargs)


def test_sampling_config_fields_have_help():
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(VideoSamplingConfig))
