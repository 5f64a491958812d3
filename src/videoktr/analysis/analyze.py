"""``videoktr analyze RUN_DIR --out DIR``: the paper's analyses of the selected tokens of any training run.

Reads ``RUN_DIR/selection.jsonl`` (format version 1, docs/metrics.md) and a checkpoint with its tokenizer
(``RUN_DIR`` itself after a finished run, else its newest ``checkpoint-*``), and writes into ``DIR``:
``analysis.json`` (every number), ``word_classes.png``, ``overlap.png``, ``positions.png`` and ``analysis.html``
(completions with their tokens highlighted per signal, browsable by step and signal; paper Fig. 2).

Numbers (all over the scored rows, i.e. records with ``skipped: false``; definitions in docs/analysis.md):
word-class shares per signal (RQ3), counts of every region of the signals' overlap, top words per signal,
histograms of the relative positions of selected tokens along the completion (B.4), and the gradient decomposition
of B.1 on a few recorded batches (``videoktr.analysis.gradients``).
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import product
from pathlib import Path
from typing import Any

from videoktr.errors import UserError

SELECTION_VERSION = 1  # the selection.jsonl version this module reads (videoktr.training.selection)
HOW_TO_RECORD = (
    "it is written by `videoktr train` with `trainer.log_selected_examples: -1` (every row; n > 0 = the first n "
    "rows of each generation batch) and method ktr or entropy with binary weighting; `videoktr demo` writes "
    "DIR/rl/selection.jsonl"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="Word classes, overlap, positions, B.1 gradients and a highlighted HTML page of a run's selections.",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("run_dir", type=Path, help="Training output dir holding selection.jsonl (e.g. DEMO/rl).")
    p.add_argument(
        "--out", type=Path, required=True, help="Directory for analysis.json, PNGs, analysis.html."
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="Checkpoint (weights + tokenizer); default RUN_DIR if it holds a model, else its newest "
        "checkpoint-*.",
    )
    p.add_argument(
        "--spacy-model",
        default="en_core_web_sm",
        help="spaCy pipeline for part-of-speech word classes (optional; named with its install "
        "command when missing).",
    )
    p.add_argument(
        "--grad-batches",
        type=int,
        default=4,
        help="Recorded batches (steps spread over the run) for the B.1 gradient decomposition; 0: skip.",
    )
    p.add_argument(
        "--grad-layers", type=int, default=2, help="Last decoder layers whose gradient is decomposed."
    )
    p.add_argument(
        "--examples-per-step",
        type=int,
        default=3,
        help="Completions per step shown in analysis.html (every step is shown).",
    )
    p.add_argument("--top-k", type=int, default=15, help="Top words listed per signal.")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------ loading
def load_selection(run_dir: Path) -> list[dict]:
    """The records of ``run_dir/selection.jsonl``; UserError (saying how to produce one) when missing, malformed
    or written by another format version."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory; pass a training output dir (e.g. DEMO/rl)")
    path = run_dir / "selection.jsonl"
    if not path.is_file():
        hint = f"; did you mean {run_dir / 'rl'}?" if (run_dir / "rl" / "selection.jsonl").is_file() else ""
        raise UserError(f"{path} does not exist: {HOW_TO_RECORD}{hint}")
    records = []
    with open(path) as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path} line {n} is not JSON ({err.msg}); {HOW_TO_RECORD}") from None
            version = record.get("version") if isinstance(record, dict) else None
            if version != SELECTION_VERSION:
                raise UserError(
                    f"{path} line {n} has format version {version!r}; this videoktr reads version "
                    f"{SELECTION_VERSION}: re-run the training with this version ({HOW_TO_RECORD})"
                )
            records.append(record)
    scored = [r for r in records if not r.get("skipped") and r.get("union") is not None]
    if not scored:
        raise UserError(
            f"{path} has {len(records)} records and none was scored (all skipped or without masks); {HOW_TO_RECORD}"
        )
    return scored


def resolve_checkpoint(run_dir: Path, checkpoint: Path | None) -> Path:
    """The checkpoint to read the tokenizer (and weights for B.1) from; UserError naming the options if none."""
    if checkpoint is not None:
        if not (checkpoint / "config.json").is_file():
            raise UserError(f"--checkpoint {checkpoint}: no config.json there; pass a saved model directory")
        return checkpoint
    if (run_dir / "config.json").is_file():
        return run_dir
    steps = sorted(
        run_dir.glob("checkpoint-*"),
        key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
    )
    steps = [p for p in steps if (p / "config.json").is_file()]
    if not steps:
        raise UserError(f"{run_dir} holds no model (config.json) and no checkpoint-*; pass --checkpoint DIR")
    return steps[-1]


def token_records_of(rows: list[dict], tokenizer) -> list[list]:
    """TokenRecords (pieces, per-signal masks, scores, union) of every scored row."""
    from videoktr.analysis.tokens import pieces_from_ids, token_records

    return [
        token_records(
            pieces_from_ids(tokenizer, r["completion_ids"]), r["masks"], r["scores"], union=r["union"]
        )
        for r in rows
    ]


# ---------------------------------------------------------------------------------------------- numbers
def overlap_regions(records_list, signals: list[str]) -> dict[str, int]:
    """Token count of every region of the signals' Venn diagram: keys ``a+b`` (selected by exactly a and b),
    ``none``; all 2^k regions are present (0 when empty), over every token of every completion."""
    regions = {}
    for bits in product([True, False], repeat=len(signals)):
        name = "+".join(s for s, b in zip(signals, bits) if b) or "none"
        regions[name] = 0
    for records in records_list:
        for rec in records:
            regions["+".join(s for s in signals if rec.selected.get(s)) or "none"] += 1
    return regions


def position_histograms(records_list, signals: list[str], bins: int = 10) -> dict[str, dict]:
    """Per signal (and ``union``, ``all``): counts of selected tokens per relative-position bin, token ``t`` of a
    completion of ``T`` tokens falling in bin ``(t * bins) // T`` (i.e. ``t / T`` in ``[k/bins, (k+1)/bins)``),
    their fractions, and the mean of ``t / T``."""
    names = [*signals, "union", "all"]
    counts = {name: [0] * bins for name in names}
    sums = dict.fromkeys(names, 0.0)
    for records in records_list:
        n = len(records)
        for t, rec in enumerate(records):
            chosen = [s for s in signals if rec.selected.get(s)] + (["union"] if rec.union else []) + ["all"]
            for name in chosen:
                counts[name][(t * bins) // n] += 1
                sums[name] += t / n
    out = {}
    for name in names:
        total = sum(counts[name])
        out[name] = {
            "n": total,
            "counts": counts[name],
            "fractions": [c / total for c in counts[name]] if total else None,
            "mean_position": sums[name] / total if total else None,
        }
    return out


def synthetic_kinds(run_dir: Path) -> list[str] | None:
    """The question kinds of a run trained on the synthetic suite (every training record has ``data_source:
    synthetic``), else None."""
    from videoktr.data.schema import load_records
    from videoktr.training.recipe import read_yaml

    recipe = run_dir / "recipe.yaml"
    if not recipe.is_file():
        return None
    train = (read_yaml(recipe).get("data") or {}).get("train")
    if not train or not Path(train).is_file():
        return None
    records = load_records(train)
    if not all(r.get("data_source") == "synthetic" for r in records):
        return None
    return sorted({r["question_kind"] for r in records if r.get("question_kind")})


def word_class_section(
    records_list, signals: list[str], kinds: list[str] | None, spacy_model: str
) -> dict[str, Any]:
    """Shares per labeller: on the synthetic suite (``kinds``: its question kinds) ``counterfactual`` (the
    generator's counterfactual labels) and ``synthetic`` (its lexicon); ``spacy:<pipeline>`` (or why it is
    missing)."""
    from videoktr.analysis.word_classes import (
        PipelineMissing,
        class_shares,
        counterfactual_classes,
        spacy_labeller,
        synthetic_labeller,
        token_classes,
    )

    def shares(label) -> dict:
        texts = ["".join(rec.text for rec in records) for records in records_list]
        classes = [token_classes(records, label(text)) for records, text in zip(records_list, texts)]
        return class_shares(records_list, classes, signals)

    out: dict[str, Any] = {}
    if kinds is not None:
        classes, status = counterfactual_classes(records_list, kinds)
        out["counterfactual"] = {
            "labeller": "counterfactual labels of the synthetic generator (videoktr.data.counterfactual)",
            "status": status,
            **class_shares(records_list, classes, signals, unlabelled="unlabelled"),
        }
    if kinds is not None:
        out["synthetic"] = {
            "labeller": "synthetic generator lexicon (videoktr.data.synthetic)",
            **shares(synthetic_labeller()),
        }
    try:
        out[f"spacy:{spacy_model}"] = {
            "labeller": f"spaCy {spacy_model} coarse POS",
            **shares(spacy_labeller(spacy_model)),
        }
    except PipelineMissing as err:
        print(f"videoktr analyze: note: {err}; the rest of the analysis runs without it", file=sys.stderr)
        out[f"spacy:{spacy_model}"] = {"available": False, "pipeline": err.pipeline, "install": err.install}
    return out


def pick_steps(steps: list[int], n: int) -> list[int]:
    """``n`` steps spread evenly over ``steps`` (sorted, distinct), first and last included."""
    if n <= 0 or not steps:
        return []
    if n >= len(steps):
        return steps
    return sorted({steps[round(k * (len(steps) - 1) / max(n - 1, 1))] for k in range(n)})


def gradient_section(run_dir: Path, checkpoint: Path, rows: list[dict], n_batches: int, layers: int) -> dict:
    """B.1 on ``n_batches`` recorded steps; ``{"skipped": reason}`` when the records cannot be replayed."""
    from videoktr.analysis.gradients import CannotReplay, recorded_batch_gradients

    if n_batches <= 0:
        return {"skipped": "--grad-batches 0"}
    if any(r.get("problem_id") is None for r in rows):
        return {
            "skipped": "selection.jsonl rows carry no problem_id (written before it was recorded, or records "
            "without problem_id); re-run the training with this videoktr to replay its batches"
        }
    by_step: dict[int, list[dict]] = {}
    for r in rows:
        by_step.setdefault(r["step"], []).append(r)
    chosen = pick_steps(sorted(by_step), n_batches)
    try:
        return recorded_batch_gradients(run_dir, checkpoint, {s: by_step[s] for s in chosen}, layers)
    except CannotReplay as err:  # the batches cannot be replayed: say why, the rest of the analysis stands
        print(f"videoktr analyze: note: B.1 gradient decomposition skipped: {err}", file=sys.stderr)
        return {"skipped": str(err)}


def analyse(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict], list]:
    """(analysis.json content, scored selection rows, their TokenRecords)."""
    from transformers import AutoProcessor

    from videoktr.analysis.stats import selection_stats
    from videoktr.analysis.tokens import record_signals

    rows = load_selection(args.run_dir)
    checkpoint = resolve_checkpoint(args.run_dir, args.checkpoint)
    tokenizer = AutoProcessor.from_pretrained(checkpoint).tokenizer
    records_list = token_records_of(rows, tokenizer)
    signals = record_signals(records_list)
    stats = selection_stats(records_list, top_k=args.top_k)
    result = {
        "run_dir": str(args.run_dir),
        "checkpoint": str(checkpoint),
        "signals": signals,
        "n_completions": len(records_list),
        "n_tokens": stats["n_tokens"],
        "steps": sorted({r["step"] for r in rows}),
        "selected_frac": stats["selected_frac"],
        "word_classes": word_class_section(
            records_list, signals, synthetic_kinds(args.run_dir), args.spacy_model
        ),
        "overlap": overlap_regions(records_list, signals),
        "top_words": stats["top_words"],
        "positions": position_histograms(records_list, signals),
        "gradients": gradient_section(args.run_dir, checkpoint, rows, args.grad_batches, args.grad_layers),
    }
    return result, rows, records_list


def run(args: argparse.Namespace) -> int:
    from videoktr.analysis.analysis_page import write_figures, write_page

    for name in ("grad_batches", "examples_per_step", "top_k"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0")
    if args.grad_layers < 1:
        raise UserError("--grad-layers must be >= 1 (the number of last decoder layers)")
    result, rows, records_list = analyse(args)
    args.out.mkdir(parents=True, exist_ok=True)
    result["figures"] = write_figures(result, args.out)
    (args.out / "analysis.json").write_text(json.dumps(result, indent=2))
    write_page(result, rows, records_list, args.out / "analysis.html", args.examples_per_step)
    print(f"analysis of {len(records_list)} completions ({len(result['steps'])} steps) -> {args.out}")
    for name, part in result["word_classes"].items():
        if "all" in part:
            union = ", ".join(f"{k} {v:.1%}" for k, v in list(part["union"]["shares"].items())[:5])
            print(f"  word classes ({name}), selected tokens: {union}")
    print("  overlap: " + ", ".join(f"{k} {v}" for k, v in result["overlap"].items()))
    mean = result["gradients"].get("mean")
    if mean:
        print(
            "  B.1 (mean over batches): "
            + ", ".join(f"{k} {v:.4g}" for k, v in mean.items() if v is not None)
        )
    else:
        print(f"  B.1 skipped: {result['gradients'].get('skipped')}")
    return 0
