"""``videoktr frames label | train | select | demo``: Frame-Voyager from the command line.

    videoktr frames label  --model DIR --data train.json --root DIR --out labels.jsonl [key=value ...]
    videoktr frames train  --model DIR --data train.json --root DIR --labels labels.jsonl --out SELECTOR_DIR
    videoktr frames select --model DIR --data test.json --root DIR --frame-selector voyager --selector SELECTOR_DIR
                           --out test_with_frames.json      # records + frame_indices (RL / SFT / eval data)
    videoktr frames demo   --out DIR [--config YAML] [key=value ...]

``key=value`` are :class:`videoktr.frames.config.VoyagerConfig` fields (``--candidates`` / ``--frames`` set M / T).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _voyager_config(args, extra: dict | None = None):
    import dataclasses

    from videoktr.errors import UserError
    from videoktr.frames.config import VoyagerConfig
    from videoktr.training.recipe import parse_value

    raw = dict(extra or {})
    if getattr(args, "config", None):
        import yaml

        loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        if not isinstance(loaded, dict):
            raise UserError(f"{args.config}: expected a mapping of VoyagerConfig fields")
        raw.update(loaded.get("voyager", loaded))
    names = {f.name for f in dataclasses.fields(VoyagerConfig)}
    for item in getattr(args, "overrides", []) or []:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (e.g. max_combinations=32)")
        key, value = item.split("=", 1)
        if key not in names:
            raise UserError(f"unknown frames setting {key!r}; valid: {', '.join(sorted(names))}")
        raw[key] = parse_value(value)
    unknown = sorted(set(raw) - names)
    if unknown:
        raise UserError(f"unknown frames setting(s) {unknown}; valid: {', '.join(sorted(names))}")
    if getattr(args, "candidates", None) is not None:
        raw["candidates"] = args.candidates
    if getattr(args, "frames", None) is not None:
        raw["frames"] = args.frames
    return VoyagerConfig(**raw)


def _load(args, vcfg):
    from videoktr.data.schema import load_records
    from videoktr.data.video import VideoSamplingConfig
    from videoktr.demo import quiet_libraries
    from videoktr.models.tiny import load_model_and_processor

    quiet_libraries()
    import torch

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    model, processor = load_model_and_processor(args.model, dtype=dtype, device=args.device)
    model.eval()
    sampling = VideoSamplingConfig(num_frames=vcfg.frames, max_pixels=args.max_pixels)
    records = load_records(args.data)
    if args.limit is not None:
        records = records[: args.limit]
    return model, processor, sampling, records


def _features(model, processor, records, args, vcfg, sampling):
    from videoktr.frames.demo import encode_all

    return encode_all(model, processor, records, args.root, vcfg, sampling, args.template)


def run_label(args) -> int:
    from videoktr.frames.labels import label_agreement, label_record

    vcfg = _voyager_config(args)
    model, processor, sampling, records = _load(args, vcfg)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    lines = []
    with open(args.out, "w") as handle:
        for record in records:  # one record's token features in memory at a time
            (candidate,) = _features(model, processor, [record], args, vcfg, sampling).values()
            lines.append(label_record(model, processor, record, candidate, vcfg, args.template, sampling))
            handle.write(json.dumps(lines[-1]) + "\n")
    print(
        json.dumps({"labelled": len(lines), "kept": sum(x["kept"] for x in lines), **label_agreement(lines)})
    )
    return 0


def run_train(args) -> int:
    import dataclasses

    from videoktr.frames.features import model_fingerprint
    from videoktr.frames.train import train_querier

    lines = [json.loads(x) for x in Path(args.labels).read_text().splitlines() if x.strip()]
    vcfg = _voyager_config(args)
    model, processor, sampling, records = _load(args, vcfg)
    labelled = {line["problem_id"] for line in lines}
    records = [r for r in records if str(r.get("problem_id")) in labelled]
    feats = {}
    for record in records:
        feats.update(
            {k: v.compact() for k, v in _features(model, processor, [record], args, vcfg, sampling).items()}
        )
    querier, history = train_querier(feats, lines, vcfg, model_fingerprint(model), str(args.model), log=print)
    querier.save_pretrained(args.out, extra={"voyager": dataclasses.asdict(vcfg)})
    (Path(args.out) / "train_history.json").write_text(json.dumps(history))
    print(f"querier saved to {args.out}")
    return 0


def run_select(args) -> int:
    from videoktr.data.video import read_frame_count
    from videoktr.errors import UserError
    from videoktr.frames.select import load_selector, select_frames

    vcfg = _voyager_config(args)
    model, processor, sampling, records = _load(args, vcfg)
    querier = feats = None
    if args.frame_selector == "voyager":
        if not args.selector:
            raise UserError("--frame-selector voyager needs --selector DIR (from `videoktr frames train`)")
        querier = load_selector(args.selector, model, args.model, vcfg)
        feats = _features(model, processor, records, args, vcfg, sampling)
    out = []
    for record in records:
        total = read_frame_count(Path(args.root) / record["path"])
        candidate = feats[record["problem_id"]] if feats else None
        frames = select_frames(args.frame_selector, record, total, vcfg, candidate=candidate, querier=querier)
        out.append({**record, "frame_indices": frames})
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"{len(out)} records with frame_indices ({args.frame_selector}, T={vcfg.frames}) -> {args.out}")
    return 0


def run_demo(args) -> int:
    import yaml

    from videoktr.demo import quiet_libraries
    from videoktr.frames.demo import run_frames_demo

    quiet_libraries()
    raw = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    run_frames_demo(demo_config(args.overrides, raw), Path(args.out))
    return 0


def demo_config(overrides: list[str], raw: dict | None = None):
    """FramesDemoConfig from ``raw`` (a YAML mapping) and ``key=value`` / ``voyager.KEY=VALUE`` / ``model.KEY=VALUE``
    overrides, validated (unknown settings refused with the valid ones) before any work."""
    import dataclasses

    from videoktr.errors import UserError
    from videoktr.frames.demo import FramesDemoConfig
    from videoktr.training.recipe import parse_value

    raw = dict(raw or {})
    names = {f.name for f in dataclasses.fields(FramesDemoConfig)}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (e.g. sft_steps=200 or voyager.frames=4)")
        key, value = item.split("=", 1)
        if key.startswith(("voyager.", "model.")):
            group, name = key.split(".", 1)
            raw[group] = {**raw.get(group, {}), name: parse_value(value)}
        else:
            raw[key] = parse_value(value)
    unknown = sorted(set(raw) - names)
    if unknown:
        raise UserError(f"unknown frames demo settings {unknown}; valid: {', '.join(sorted(names))}")
    cfg = FramesDemoConfig(**raw)
    cfg.voyager_config()
    cfg.model_config()
    return cfg


def _common(parser, need_out: bool = True) -> None:
    parser.add_argument(
        "--model", required=True, help="video LLM checkpoint (its vision tower gives the features)"
    )
    parser.add_argument("--data", required=True, help="Video-R1 JSON records")
    parser.add_argument("--root", required=True, help="folder the records' video paths are relative to")
    parser.add_argument("--candidates", type=int, help="M candidate frames (default 16)")
    parser.add_argument("--frames", type=int, help="T frames kept (default 6)")
    parser.add_argument("--template", default="short", help="prompt template (as the model was trained)")
    parser.add_argument("--max-pixels", type=int, default=56 * 112, help="pixels per frame after resize")
    parser.add_argument("--limit", type=int, help="only the first N records")
    parser.add_argument(
        "--config", help="YAML of VoyagerConfig fields (e.g. configs/paper/frame_voyager_*.yaml)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("overrides", nargs="*", help="key=value VoyagerConfig fields")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "frames",
        help="Frame-Voyager: label frame combinations, train a querier, select frames, demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="frames_command", metavar="STEP")
    sub.required = True
    label = sub.add_parser("label", help="score T-frame combinations by the model's loss on the answer")
    _common(label)
    label.add_argument("--out", required=True, help="labels JSONL")
    label.set_defaults(func=run_label)
    train = sub.add_parser("train", help="train a querier on labels (pairwise ranking)")
    _common(train)
    train.add_argument("--labels", required=True, help="labels JSONL from `frames label`")
    train.add_argument("--out", required=True, help="querier checkpoint directory")
    train.set_defaults(func=run_train)
    select = sub.add_parser("select", help="write the records with frame_indices chosen by a selector")
    _common(select)
    select.add_argument(
        "--frame-selector", default="voyager", choices=["uniform", "random", "oracle", "voyager"]
    )
    select.add_argument("--selector", help="querier checkpoint (voyager)")
    select.add_argument("--out", required=True, help="output JSON records with frame_indices")
    select.set_defaults(func=run_select)
    demo = sub.add_parser("demo", help="the whole pipeline on sparse synthetic videos (CPU, minutes)")
    demo.add_argument("--out", required=True, help="output directory")
    demo.add_argument("--config", help="YAML of FramesDemoConfig fields (configs/frames_demo.yaml)")
    demo.add_argument(
        "overrides", nargs="*", help="key=value FramesDemoConfig fields; voyager.KEY=VALUE; model.KEY=VALUE"
    )
    demo.set_defaults(func=run_demo)
