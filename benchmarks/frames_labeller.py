"""Frame-Voyager labeller and pruning variants, judged on training records only (never the test split).

    python benchmarks/frames_labeller.py agreement --run runs/frames_demo --out runs/fv_opt --records 224 \
        voyager.loss_form=option_nll          # or sft_insufficient_views=1, model.num_hidden_layers=4, ...
    python benchmarks/frames_labeller.py pruning --run runs/frames_demo --records 448 \
        "spread:" "best2.0:max_best_loss=2.0"
    python benchmarks/frames_labeller.py accuracy --sft runs/frames_demo/sft --out runs/fv_acc

``agreement``: reuses a finished ``videoktr frames demo`` run's data and initial model, SFT-trains a labeller with
the given demo overrides (``key=value`` FramesDemoConfig fields, ``voyager.KEY``, ``model.KEY``; reused from ``--out``
when already trained; with only ``voyager.*`` overrides the run's own SFT checkpoint is used), labels the first
``--records`` training records and prints the label/oracle agreement (overall and per question kind).
``accuracy``: an SFT checkpoint's greedy accuracy from oracle (sufficient) and uniform views on ``--records`` fresh
records of the training distribution (data seed ``--seed``, not the demo's records): how competent a labeller is.
``pruning``: splits the run's labelled training records 3:1, trains the querier on the first part with each pruning
variant (``name:key=value,...`` VoyagerConfig fields) and prints voyager's sufficiency on the held-out part.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from videoktr.demo import quiet_libraries
from videoktr.frames.commands import demo_config
from videoktr.frames.demo import FramesDemoConfig, _sampling, _sft, encode_all, selection_metrics
from videoktr.frames.labels import label_agreement, label_record
from videoktr.models.tiny import build_tiny_model, load_model_and_processor
from videoktr.training.recipe import parse_value


def _data(run: Path) -> dict:
    root = run / "data"
    return {"root": root, "train": root / "train.json", "test": root / "test.json"}


def _by_kind(lines: list[dict], records: dict) -> dict:
    out = {"all": label_agreement(lines)}
    for kind in sorted({r["question_kind"] for r in records.values()}):
        out[kind] = label_agreement([x for x in lines if records[x["problem_id"]]["question_kind"] == kind])
    return out


def agreement(args) -> None:
    cfg = demo_config(args.overrides)
    vcfg, data, out = cfg.voyager_config(), _data(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sft_dir = args.run / "sft"
    if any(not item.startswith("voyager.") for item in args.overrides):
        model_dir = args.run / "model"
        if cfg.model:
            from videoktr.data.schema import load_records
            from videoktr.data.synthetic import synthetic_corpus

            corpus = synthetic_corpus(load_records(data["train"]) + load_records(data["test"]), cfg.template)
            model_dir = build_tiny_model(out / "model", corpus=corpus, config=cfg.model_config())
        sft_dir = out / "sft"
        if not (sft_dir / "model.safetensors").exists():
            _sft(cfg, vcfg, out, data, model_dir)
    model, processor = load_model_and_processor(sft_dir)
    model.eval()
    records = json.loads(data["train"].read_text())[: args.records]
    sampling = _sampling(cfg, vcfg)
    feats = encode_all(model, processor, records, data["root"], vcfg, sampling, cfg.template)
    lines = [
        label_record(model, processor, r, feats[r["problem_id"]], vcfg, cfg.template, sampling)
        for r in records
    ]
    with open(out / "labels.jsonl", "w") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in lines)
    print(json.dumps({"overrides": args.overrides, **_by_kind(lines, {r["problem_id"]: r for r in records})}))


def pruning(args) -> None:
    from videoktr.frames.features import model_fingerprint
    from videoktr.frames.select import select_frames
    from videoktr.frames.train import train_querier

    cfg = FramesDemoConfig()
    base = cfg.voyager_config()
    data = _data(args.run)
    lines = [json.loads(x) for x in (args.run / "labels.jsonl").read_text().splitlines()][: args.records]
    by_id = {r["problem_id"]: r for r in json.loads(data["train"].read_text())}
    records = [by_id[line["problem_id"]] for line in lines]
    model, processor = load_model_and_processor(args.run / "sft")
    model.eval()
    feats = encode_all(model, processor, records, data["root"], base, _sampling(cfg, base), cfg.template)
    cut = len(lines) * 3 // 4
    for spec in args.variants:
        name, _, pairs = spec.partition(":")
        over = {k: parse_value(v) for k, v in (x.split("=", 1) for x in pairs.split(",") if x)}
        vcfg = dataclasses.replace(base, **over)
        fit = [
            {**x, "kept": max(x["losses"]) - min(x["losses"]) >= vcfg.min_loss_spread
             and (vcfg.max_best_loss is None or min(x["losses"]) <= vcfg.max_best_loss)}
            for x in lines[:cut]
        ]  # fmt: skip
        querier, _ = train_querier(feats, fit, vcfg, model_fingerprint(model), "")
        hits: dict[str, list[bool]] = {}
        for record in records[cut:]:
            candidate = feats[record["problem_id"]]
            frames = select_frames(
                "voyager", record, candidate.video.total_frames, vcfg, candidate=candidate, querier=querier
            )
            hits.setdefault(record["question_kind"], []).append(
                selection_metrics(record, frames)["sufficient"]
            )
        every = [h for kind in hits.values() for h in kind]
        kinds = {k: round(sum(v) / len(v), 4) for k, v in hits.items()}
        print(json.dumps({"variant": name, "kept": sum(x["kept"] for x in fit),
                          "held_out_sufficiency": round(sum(every) / len(every), 4), **kinds}), flush=True)  # fmt: skip


def accuracy(args) -> None:
    from videoktr.data.video import read_frame_count
    from videoktr.frames.demo import evaluate_selection, summarize_selection
    from videoktr.frames.select import select_frames
    from videoktr.frames.sparse import SparseConfig, make_sparse

    cfg = FramesDemoConfig()
    vcfg = cfg.voyager_config()
    root = args.out / "data"
    if not (root / "train.json").exists():
        shape = SparseConfig(num_frames=cfg.video_frames, unit=vcfg.unit, height=cfg.height, width=cfg.width)
        make_sparse(root, args.records, 0, args.seed, shape)
    records = json.loads((root / "train.json").read_text())
    model, processor = load_model_and_processor(args.sft)
    model.eval()
    out = {"sft": str(args.sft), "records": len(records), "data_seed": args.seed}
    for name in ("oracle", "uniform"):
        frames = {
            r["problem_id"]: select_frames(name, r, read_frame_count(root / r["path"]), vcfg) for r in records
        }
        rows = evaluate_selection(
            model, processor, records, frames, root, _sampling(cfg, vcfg), cfg, args.out / f"{name}.jsonl"
        )
        summary = summarize_selection(records, frames, rows)
        out[name] = {
            "accuracy": summary["accuracy"],
            **{k: v["accuracy"] for k, v in summary["by_kind"].items()},
        }
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    agree = sub.add_parser(
        "agreement", help="SFT a labeller variant, label training records, print agreement"
    )
    agree.add_argument(
        "--run", type=Path, required=True, help="a finished `videoktr frames demo` output directory"
    )
    agree.add_argument("--out", type=Path, required=True, help="output directory of this variant")
    agree.add_argument("--records", type=int, default=224, help="first N training records labelled")
    agree.add_argument(
        "overrides", nargs="*", help="FramesDemoConfig key=value, voyager.KEY=..., model.KEY=..."
    )
    agree.set_defaults(func=agreement)
    prune = sub.add_parser("pruning", help="pruning variants on a 3:1 split of the labelled training records")
    prune.add_argument(
        "--run", type=Path, required=True, help="a finished `videoktr frames demo` output directory"
    )
    prune.add_argument("--records", type=int, default=448, help="first N label lines used")
    prune.add_argument(
        "variants", nargs="+", help="name:key=value,... VoyagerConfig fields (name: = default)"
    )
    prune.set_defaults(func=pruning)
    acc = sub.add_parser(
        "accuracy", help="an SFT checkpoint's greedy accuracy from oracle and uniform views on fresh records"
    )
    acc.add_argument("--sft", type=Path, required=True, help="an SFT checkpoint directory (e.g. RUN/sft)")
    acc.add_argument("--out", type=Path, required=True, help="where the fresh records and predictions go")
    acc.add_argument("--records", type=int, default=256, help="fresh training-distribution records")
    acc.add_argument(
        "--seed",
        type=int,
        default=101,
        help="their data seed (not the demo's: neither its train nor test records)",
    )
    acc.set_defaults(func=accuracy)
    args = parser.parse_args()
    quiet_libraries()
    args.func(args)


if __name__ == "__main__":
    main()
