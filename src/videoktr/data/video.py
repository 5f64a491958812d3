"""Video decoding and frame sampling with PyAV, and a small writer for synthetic videos.

Sampling follows qwen-vl-utils (used by Video-R1): ``n`` frame indices spread uniformly over the whole video,
``round(linspace(0, total - 1, n))``, with ``n`` either fixed (``num_frames``) or derived from a target rate
(``fps``, bounded by ``min_frames`` / ``max_frames`` and by the video's length, floored to an even count because
Qwen2.5-VL encodes frames in temporal patches of 2).

The sampling rate handed to the processor is ``sample_fps = n / total_frames * source_fps`` (qwen-vl-utils'
definition, and exactly what ``transformers.video_utils.VideoMetadata.sampled_fps`` computes from
:meth:`DecodedVideo.metadata_dict`), i.e. the number of sampled frames over the clip's duration. It is the real
rate of the sampled frames: equal to ``source_fps`` when every frame is kept, and otherwise within ``1/n`` (relative)
of the spacing rate ``source_fps * (n - 1) / (last - first)``. The processor turns it into ``second_per_grid_ts``
(``temporal_patch_size / sample_fps``), which sets the temporal position ids: pass it, or temporal positions collapse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from videoktr.errors import UserError

__all__ = [
    "VideoSamplingConfig",
    "DecodedVideo",
    "VideoDecodeError",
    "VideoInfo",
    "check_frame_indices",
    "decode_video",
    "probe_video",
    "read_frame_count",
    "uniform_indices",
    "write_video",
]


class VideoDecodeError(UserError):
    """A video that cannot be used: missing, unreadable, without frames, or shorter than the sampling asks."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path}: {reason}")


@dataclass
class VideoSamplingConfig:
    """How many frames to take from each video and how large the processor may make them."""

    num_frames: int | None = field(
        default=16,
        metadata={
            "help": "Frames sampled uniformly over the whole video (even: Qwen2.5-VL encodes frame pairs). "
            "16 for training in the paper, up to 64 at evaluation. Set to None to sample by `fps`."
        },
    )
    fps: float | None = field(
        default=None,
        metadata={
            "help": "Sample at this many frames per second instead of a fixed count (then num_frames must be "
            "None); the count is bounded by min_frames/max_frames and the video length, floored to even."
        },
    )
    min_frames: int = field(
        default=4, metadata={"help": "Lower bound on the frame count when sampling by fps."}
    )
    max_frames: int = field(
        default=64, metadata={"help": "Upper bound on the frame count when sampling by fps."}
    )
    min_pixels: int | None = field(
        default=None,
        metadata={
            "help": "Minimum pixels per frame after the processor's resize (None: the processor's default). "
            "Carried to the processor, not applied here."
        },
    )
    max_pixels: int | None = field(
        default=128 * 28 * 28,
        metadata={
            "help": "Maximum pixels per frame after the processor's resize (paper: 128*28*28 for training, "
            "256*28*28 for evaluation). Carried to the processor, not applied here."
        },
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`UserError` naming the bad field and how to fix it."""
        if (self.num_frames is None) == (self.fps is None):
            raise UserError(
                f"video sampling: set exactly one of num_frames ({self.num_frames}) and fps ({self.fps}); "
                "e.g. num_frames=16, fps=None for a fixed count, or num_frames=None, fps=2.0 for a rate"
            )
        if self.num_frames is not None and (self.num_frames < 2 or self.num_frames % 2):
            raise UserError(
                f"video sampling: num_frames={self.num_frames} must be an even number >= 2 (Qwen2.5-VL encodes "
                f"frames in pairs); use {max(2, self.num_frames + self.num_frames % 2)}"
            )
        if self.fps is not None and not self.fps > 0:
            raise UserError(f"video sampling: fps={self.fps} must be > 0, e.g. 2.0")
        if self.min_frames < 2 or self.min_frames % 2:
            raise UserError(
                f"video sampling: min_frames={self.min_frames} must be an even number >= 2, e.g. 4"
            )
        if self.max_frames < self.min_frames or self.max_frames % 2:
            raise UserError(
                f"video sampling: max_frames={self.max_frames} must be even and >= min_frames={self.min_frames}"
            )
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"video sampling: {name}={value} must be a positive pixel count or None")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise UserError(
                f"video sampling: min_pixels={self.min_pixels} exceeds max_pixels={self.max_pixels}; lower min_pixels"
            )

    def frame_count(self, total_frames: int, source_fps: float) -> int:
        """Number of frames to sample from a video of ``total_frames`` frames at ``source_fps``.

        Raises ``ValueError`` with the reason when the video is too short (the caller names the file).
        """
        if self.num_frames is not None:
            if self.num_frames > total_frames:
                raise ValueError(
                    f"it has {total_frames} frames, fewer than num_frames={self.num_frames}; "
                    "lower num_frames or sample by fps"
                )
            return self.num_frames
        # qwen-vl-utils smart_nframes: bound, cap by the length, floor to the temporal patch size (2)
        upper = min(self.max_frames, total_frames) // 2 * 2
        wanted = total_frames / source_fps * self.fps
        count = math.floor(min(max(wanted, self.min_frames), upper) / 2) * 2
        if count < 2:
            raise ValueError(f"it has {total_frames} frame(s); at least 2 are needed")
        return count


@dataclass
class DecodedVideo:
    """Sampled frames of one video and what the processor needs to place them in time."""

    frames: torch.Tensor  # (T, C, H, W) uint8, RGB
    sample_fps: float  # n / total_frames * source_fps (see the module docstring)
    frame_indices: list[int]  # index in the source video of each sampled frame, increasing
    source_fps: float
    total_frames: int
    duration: float  # seconds, total_frames / source_fps
    path: str

    def metadata_dict(self) -> dict:
        """Metadata for the processor's ``video_metadata=`` (one dict per video) with ``do_sample_frames=False``.

        Keys are the fields of ``transformers.video_utils.VideoMetadata``; its ``sampled_fps``
        (``len(frames_indices) / total_num_frames * fps``) then equals :attr:`sample_fps`.
        """
        return {
            "total_num_frames": self.total_frames,
            "fps": self.source_fps,
            "width": int(self.frames.shape[-1]),
            "height": int(self.frames.shape[-2]),
            "duration": self.duration,
            "video_backend": "pyav",
            "frames_indices": list(self.frame_indices),
        }


def uniform_indices(total_frames: int, count: int) -> list[int]:
    """``count`` indices spread over ``[0, total_frames - 1]``, first and last included (qwen-vl-utils)."""
    return torch.linspace(0, total_frames - 1, count).round().long().tolist()


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise VideoDecodeError(path, "file not found (check the path and the data root)")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoDecodeError(path, f"not a readable video file ({err})") from err
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "the file has no video stream")
    return container


def _count_frames(container: av.container.InputContainer, path: Path) -> int:
    """Frames in the first video stream: the container's count, else the number of demuxed packets (no decoding)."""
    stream = container.streams.video[0]
    if stream.frames > 0:
        return int(stream.frames)
    try:
        count = sum(1 for packet in container.demux(stream) if packet.size > 0)
    except av.FFmpegError as err:
        raise VideoDecodeError(path, f"cannot read packets ({err})") from err
    container.seek(0)
    return count


@dataclass
class VideoInfo:
    """What the container says about a video, read without decoding a frame (see :func:`probe_video`)."""

    path: str
    source_fps: float
    total_frames: int
    duration: float  # total_frames / source_fps

    def sample(self, cfg: VideoSamplingConfig) -> list[int]:
        """Indices ``cfg`` takes from this video; raises :class:`VideoDecodeError` when it is too short."""
        try:
            count = cfg.frame_count(self.total_frames, self.source_fps)
        except ValueError as err:
            raise VideoDecodeError(self.path, f"too short: {err}") from err
        return uniform_indices(self.total_frames, count)


def _info(container: av.container.InputContainer, path: Path) -> VideoInfo:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    if not rate or rate <= 0:
        raise VideoDecodeError(path, "the video stream has no frame rate")
    total = _count_frames(container, path)
    if total == 0:
        raise VideoDecodeError(path, "the video has no frames")
    return VideoInfo(str(path), float(rate), total, total / float(rate))


def probe_video(path: str | Path, cfg: VideoSamplingConfig | None = None) -> VideoInfo:
    """Frame rate and frame count from the container alone (no frame is decoded): startup checks of many videos.

    With ``cfg``, also checks that the video is long enough for it. Raises :class:`VideoDecodeError` naming the file
    when it is missing, unreadable, has no video stream / frame rate / frames, or is too short. A file whose frames
    are damaged further in passes here and fails when decoded.
    """
    path = Path(path)
    container = _open(path)
    try:
        info = _info(container, path)
    finally:
        container.close()
    if cfg is not None:
        info.sample(cfg)
    return info


# Wanted frames at most this far (seconds) ahead of the decoder are reached by decoding on, not by seeking.
FORWARD_DECODE_SECONDS = 1.0


def _decode_indices(
    container: av.container.InputContainer, path: Path, indices: list[int]
) -> list[np.ndarray]:
    """RGB arrays (H, W, 3) of the frames at ``indices`` (increasing), by timestamp: frame ``i`` is the first frame
    shown at or after ``i / fps`` (half a frame of slack). Each wanted frame far ahead is reached by a seek to the
    keyframe before it and decoding on; the cost grows with the number of frames kept, not with the video's length.
    A container whose frames carry no timestamps is decoded in order, counting frames."""
    stream = container.streams.video[0]
    rate = float(stream.average_rate or stream.guessed_rate)
    base = stream.time_base
    if base is None:
        return _decode_in_order(container, path, indices)
    start = stream.start_time if stream.start_time is not None else 0
    half_frame = 0.5 / rate
    frames: list[np.ndarray] = []
    decoder, last_time, last_frame = None, None, None
    try:
        for index in indices:
            target = index / rate
            if decoder is None or last_time is None or target - last_time > FORWARD_DECODE_SECONDS:
                container.seek(
                    start + int(max(0.0, target - half_frame) / base), stream=stream, backward=True
                )
                decoder, last_time, last_frame = container.decode(stream), None, None
            if last_frame is not None and last_time >= target - half_frame:
                frames.append(last_frame.to_ndarray(format="rgb24"))  # the same frame serves again
                continue
            for frame in decoder:
                if frame.pts is None:
                    return _decode_in_order(container, path, indices)
                seeked = last_time is None
                last_time, last_frame = float((frame.pts - start) * base), frame
                if seeked and last_time > target + half_frame:  # the seek overshot: count frames instead
                    return _decode_in_order(container, path, indices)
                if last_time >= target - half_frame:
                    break
            else:
                raise VideoDecodeError(
                    path,
                    f"frame {index} (at {target:.3f} s) was asked for but the stream ends at "
                    f"{-1.0 if last_time is None else last_time:.3f} s (the container announces "
                    f"{stream.frames or 'no'} frames at {rate:g} fps; truncated or corrupt file? re-encode it, "
                    "e.g. ffmpeg -i in.mp4 out.mp4)",
                )
            frames.append(last_frame.to_ndarray(format="rgb24"))
    except av.FFmpegError as err:
        raise VideoDecodeError(path, f"decoding failed ({err})") from err
    return frames


def _decode_in_order(
    container: av.container.InputContainer, path: Path, indices: list[int]
) -> list[np.ndarray]:
    """RGB arrays of the frames at ``indices``, decoding the stream from its start and counting frames."""
    container.seek(0)
    wanted = set(indices)
    last = indices[-1]
    frames: dict[int, np.ndarray] = {}
    position = -1
    try:
        for position, frame in enumerate(container.decode(video=0)):
            if position in wanted:
                frames[position] = frame.to_ndarray(format="rgb24")
            if position >= last:
                break
    except av.FFmpegError as err:
        raise VideoDecodeError(path, f"decoding failed after {position + 1} frames ({err})") from err
    if len(frames) < len(wanted):
        raise VideoDecodeError(
            path,
            f"the container announces frames up to index {last} but only {position + 1} decode "
            "(truncated or corrupt file; re-encode it, e.g. ffmpeg -i in.mp4 out.mp4)",
        )
    return [frames[i] for i in indices]


def check_frame_indices(indices: list[int], total_frames: int) -> str | None:
    """Why ``indices`` cannot be decoded from a video of ``total_frames`` frames (None: they can).

    Explicit indices must be integers, strictly increasing, in ``[0, total_frames)``, and an even count >= 2
    (Qwen2.5-VL encodes frames in temporal patches of 2).
    """
    if not indices or len(indices) % 2:
        return f"{len(indices)} frame indices; an even number >= 2 is needed (Qwen2.5-VL encodes frame pairs)"
    if any(not isinstance(i, int) or isinstance(i, bool) for i in indices):
        return f"frame indices must be integers, got {indices}"
    if any(b <= a for a, b in zip(indices, indices[1:])):
        return f"frame indices must be strictly increasing (time order), got {indices}"
    if indices[0] < 0 or indices[-1] >= total_frames:
        return (
            f"frame indices {indices} fall outside the video's {total_frames} frames (0..{total_frames - 1})"
        )
    return None


def read_frame_count(path: str | Path) -> int:
    """Frames in the first video stream of ``path`` (raises :class:`VideoDecodeError` naming the file)."""
    path = Path(path)
    container = _open(path)
    try:
        return _count_frames(container, path)
    finally:
        container.close()


def decode_video(
    path: str | Path, cfg: VideoSamplingConfig, indices: list[int] | None = None
) -> DecodedVideo:
    """Decode the frames ``cfg`` asks for from ``path``; raises :class:`VideoDecodeError` naming the file.

    Returns frames (T, C, H, W) uint8 with T = ``cfg.frame_count(...)``. With ``indices`` (a record's
    ``frame_indices``, e.g. chosen by a frame selector), exactly those frames are decoded instead (the frame count
    of ``cfg`` is not used; its pixel budget still is). Their real positions go to the processor in
    ``frame_indices`` / :meth:`DecodedVideo.metadata_dict` (``timestamps = index / source_fps``); Qwen2.5-VL's
    processor reduces them to one rate per video, ``sample_fps = len(indices) / total_frames * source_fps``, so
    the temporal position ids of an uneven selection are evenly spaced at its mean rate. Only the kept frames (and the frames between each and the keyframe before it) are
    decoded.
    """
    path = Path(path)
    container = _open(path)
    try:
        info = _info(container, path)
        if indices is None:
            indices = info.sample(cfg)
        else:
            indices = [int(i) if isinstance(i, np.integer) else i for i in indices]
            problem = check_frame_indices(indices, info.total_frames)
            if problem is not None:
                raise VideoDecodeError(path, problem)
        arrays = _decode_indices(container, path, indices)
    finally:
        container.close()
    frames = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return DecodedVideo(
        frames=frames,
        sample_fps=len(indices) / info.total_frames * info.source_fps,
        frame_indices=indices,
        source_fps=info.source_fps,
        total_frames=info.total_frames,
        duration=info.duration,
        path=str(path),
    )


def _encoder_settings(codec: str) -> tuple[str, dict[str, str], int | None]:
    """(codec name, encoder options, bit rate) for ``codec`` in {"auto", "libx264", "mpeg4"}."""
    if codec == "auto":
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    if codec == "libx264":
        # crf 4: near-lossless luma/chroma for flat synthetic colours; fixed preset, one thread: same bytes each run
        return codec, {"crf": "4", "preset": "veryfast", "threads": "1"}, None
    if codec == "mpeg4":
        return codec, {}, 8_000_000
    raise ValueError(f"unknown codec {codec!r}; valid: auto, libx264, mpeg4")


def write_video(
    path: str | Path,
    frames: np.ndarray | torch.Tensor,
    fps: float,
    codec: str = "auto",
    keyframe_interval: int | None = None,
) -> Path:
    """Write RGB frames (T, H, W, 3) uint8 to an mp4 at ``fps``; returns the path.

    ``keyframe_interval``: frames between keyframes (GOP size; real videos: every 2-10 s); None keeps the encoder's.

    ``codec="auto"`` uses H.264 (libx264, yuv420p, crf 4) when this PyAV build has it, else MPEG-4 Part 2 at a high
    bit rate. yuv420p halves chroma resolution: keep coloured edges on even pixel coordinates. H and W must be even.
    """
    array = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {array.dtype} {array.shape}")
    height, width = array.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(
            f"frame size {height}x{width} must be even in both dimensions (yuv420p); pad or crop"
        )
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    name, options, bit_rate = _encoder_settings(codec)
    if keyframe_interval is not None:
        if keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be >= 1, got {keyframe_interval}")
        options = {**options, "g": str(keyframe_interval)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(name, rate=Fraction(fps).limit_denominator(1001), options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for image in array:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
