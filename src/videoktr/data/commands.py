"""``videoktr make-synthetic`` and ``videoktr validate-data``.

    videoktr make-synthetic --out data/synthetic --train 256 --test 64 --seed 0
    videoktr validate-data data/synthetic/train_sft.json --root data/synthetic --kind sft --frames 8
    videoktr validate-data data/train.json --root data   # fields, ids, paths under the root, videos decode

``validate-data`` prints every problem with its record (index and id), then a summary; exit code 1 when there is
an error (warnings, such as several records sharing a video, do not fail), 2 for a usage error.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    make = subparsers.add_parser(
        "make-synthetic",
        help="write procedurally generated video questions (mp4 + Video-R1 JSON)",
        description="Write synthetic video reasoning tasks: videos/*.mp4, train.json, train_sft.json, test.json.",
    )
    make.add_argument("--out", required=True, help="output folder (created if missing)")
    make.add_argument("--train", type=int, required=True, help="number of training records")
    make.add_argument("--test", type=int, required=True, help="number of test records")
    make.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    make.add_argument("--frames", type=int, default=8, help="frames per video (even)")
    make.add_argument("--height", type=int, default=56, help="frame height in pixels (even)")
    make.add_argument("--width", type=int, default=112, help="frame width in pixels (even)")
    make.add_argument("--fps", type=float, default=4.0, help="frame rate of the written videos")
    make.add_argument(
        "--kinds", nargs="+", default=None, help="question kinds (default: color count first_color direction)"
    )
    make.set_defaults(func=run)

    check = subparsers.add_parser(
        "validate-data",
        help="check a Video-R1 JSON/JSONL file: fields, answers, files, decoding",
        description="Check every record of a Video-R1 data file and print all problems with their record ids.",
    )
    check.add_argument("file", help="the .json or .jsonl data file")
    check.add_argument("--root", required=True, help="folder the records' paths are relative to")
    check.add_argument("--kind", choices=("rl", "sft"), default="rl", help="sft also requires `process`")
    check.add_argument("--no-decode", action="store_true", help="only check that media files exist")
    check.add_argument(
        "--frames",
        type=int,
        default=None,
        help="require every video to give this many sampled frames (even; use the recipe's video_frames). "
        "Default: only check that each video decodes (2 frames)",
    )
    check.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="accept media paths outside --root (absolute paths elsewhere, ../)",
    )
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``args.command`` (make-synthetic or validate-data)."""
    commands = {"make-synthetic": run_make_synthetic, "validate-data": run_validate_data}
    return commands[args.command](args)


def run_make_synthetic(args: argparse.Namespace) -> int:
    from videoktr.data.synthetic import make_synthetic

    paths = make_synthetic(
        args.out,
        n_train=args.train,
        n_test=args.test,
        seed=args.seed,
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        fps=args.fps,
        kinds=args.kinds,
    )
    for name in ("train", "train_sft", "test", "videos", "config"):
        print(f"{name:>9}: {paths[name]}")
    return 0


def run_validate_data(args: argparse.Namespace) -> int:
    from videoktr.data.schema import validate_dataset
    from videoktr.data.video import VideoSamplingConfig

    sampling = VideoSamplingConfig(num_frames=args.frames or 2)
    report = validate_dataset(
        args.file,
        args.root,
        kind=args.kind,
        decode=not args.no_decode,
        sampling=sampling,
        allow_outside_root=args.allow_outside_root,
    )
    print(report.format())
    if args.frames is None and not args.no_decode:
        print(
            "videos were checked to decode; pass --frames N to also require N frames (the recipe's video_frames)"
        )
    return 0 if report.ok else 1
