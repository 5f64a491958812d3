"""Cost of decoding the frames a run keeps: 16 frames of a 10-minute video vs of a 20-second video.

    python benchmarks/decode_cost.py [--repeats 5] [--fps 24] [--gop-seconds 4] [--workdir DIR]

Writes two synthetic videos with ``write_video`` (H.264, 160x96, a keyframe every ``--gop-seconds`` like real
footage; a square moving over a gradient), then times ``decode_video`` (keyframe seek + decode forward to each kept
frame) with ``num_frames=16`` on each, and, for comparison, the former decoder (every frame in order up to the last
kept one). Prints the median wall time of each and the ratio long / short: the goal is a ratio <= 3 (cost grows with
the frames kept, not with the video's length); the former decoder's ratio is about the length ratio (30).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from videoktr.data.video import VideoSamplingConfig, _decode_in_order, decode_video, write_video

H, W = 96, 160


def synthetic_frames(seconds: float, fps: float) -> np.ndarray:
    n = int(round(seconds * fps))
    frames = np.empty((n, H, W, 3), dtype=np.uint8)
    base = np.linspace(40, 200, W, dtype=np.float32)[None, :, None]
    frames[:] = base.astype(np.uint8)
    for i in range(n):
        x = int((i * 3) % (W - 16))
        y = int((i * 2) % (H - 16))
        frames[i, y : y + 16, x : x + 16] = (220, 30, 30)
    return frames


def old_decode(path: Path, cfg: VideoSamplingConfig) -> None:
    """The former decoder: every frame in order up to the last kept one (for the comparison line)."""
    from videoktr.data.video import _info

    with av.open(str(path)) as container:
        info = _info(container, path)
        _decode_in_order(container, path, info.sample(cfg))


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--gop-seconds", type=float, default=4.0, help="seconds between keyframes")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the videos are written (default: temp)"
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="decode_cost_"))
    gop = max(1, int(round(args.gop_seconds * args.fps)))
    paths = {}
    for name, seconds in (("10-minute", 600.0), ("20-second", 20.0)):
        path = workdir / f"{name}_{args.fps:g}fps_gop{gop}.mp4"
        if not path.is_file():
            write_video(path, synthetic_frames(seconds, args.fps), fps=args.fps, keyframe_interval=gop)
        with av.open(str(path)) as container:
            keyframes = sum(1 for p in container.demux(video=0) if p.is_keyframe)
        print(f"{name} video: {path} ({seconds:g} s at {args.fps:g} fps, {keyframes} keyframes)")
        paths[name] = path
    cfg = VideoSamplingConfig(num_frames=16)
    seek = {name: median_time(lambda p=p: decode_video(p, cfg), args.repeats) for name, p in paths.items()}
    full = {name: median_time(lambda p=p: old_decode(p, cfg), 1) for name, p in paths.items()}
    for name in paths:
        print(
            f"{name}: seeking decoder {seek[name] * 1000:.1f} ms, former in-order decoder {full[name] * 1000:.1f} ms"
        )
    print(
        f"former in-order decoder, 16 frames, 10-minute / 20-second video: {full['10-minute'] / full['20-second']:.2f}"
    )
    print(f"decode 16 frames, 10-minute / 20-second video: {seek['10-minute'] / seek['20-second']:.2f}")


if __name__ == "__main__":
    main()
