"""``videoktr eval`` (generate, score, summarise) and ``videoktr eval score`` (score external predictions).

    videoktr eval --model runs/ktr --bench video-holmes --data test_Video-Holmes.json --video-root holmes/videos \
        --frames 32 --predictions out/holmes.jsonl --summary out/holmes.json
    videoktr eval score --bench videomme --data videomme.json --predictions preds.jsonl --scorer official

The first form resumes: rerunning with the same ``--predictions`` skips the ids already in it. The file's first line
records the run (model and data hashes, frames, pixels, template, generation settings); resuming it with a different
model or settings (the scorer included) is refused, so one file never mixes two runs. ``--scorer``: video-r1
(the Video-KTR authors' rules, default), official (each benchmark's own scorer), lenient (diagnosis);
docs/evaluation.md says which scorer each published number used. To score finished predictions with another
scorer, use ``videoktr eval score --scorer ...`` (no generation).
"""

from __future__ import annotations

import argparse

EVAL_MAX_PIXELS = 256 * 28 * 28  # the paper's evaluation budget per frame


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bench", help="Benchmark format: video-holmes, videommmu, mmvu, tempcompass, videomme, video-r1"
    )
    parser.add_argument("--data", help="The benchmark's annotation file (.json / .jsonl)")
    parser.add_argument(
        "--summary", help="Where to write the summary JSON (default: next to the predictions)"
    )
    parser.add_argument(
        "--scorer",
        default="video-r1",
        choices=_ScorerNames(),
        metavar="SCORER",  # a metavar keeps argparse from reading the registry when the parser is built
        help="How outputs are read and judged, one of: %(choices)s. video-r1: the authors' rules (default); "
        "official: the benchmark's own scorer; lenient: diagnosis; tw-grpo: TW-GRPO's multi-answer strict "
        "accuracy and partial credit (docs/evaluation.md)",
    )


class _ScorerNames:
    """``--scorer`` choices read from the scorer registry (:data:`videoktr.eval.scorers.SCORERS`) when argparse
    first needs them, so a newly registered scorer is a choice and ``videoktr --help`` does not import torch."""

    @staticmethod
    def _names() -> list[str]:
        from videoktr.eval.scorers import SCORERS

        return SCORERS.names()

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="Evaluate a model on a benchmark (or `eval score` external predictions)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser)
    parser.add_argument(
        "--model", help="Model directory (a local checkpoint: Qwen2.5-VL, Qwen2-VL, Qwen3-VL or Qwen3.5)"
    )
    parser.add_argument("--video-root", help="Folder the benchmark's video paths are relative to")
    parser.add_argument(
        "--predictions",
        help="Predictions JSONL, appended and resumed (default eval_results/<bench>_predictions.jsonl)",
    )
    parser.add_argument(
        "--frames", type=int, default=16, help="Frames per video (even; paper: 16/32/64). Default 16"
    )
    parser.add_argument(
        "--fps", type=float, help="Sample frames at this rate instead of a fixed --frames count"
    )
    parser.add_argument(
        "--max-frames", type=int, default=64, help="Upper bound on frames with --fps. Default 64"
    )
    parser.add_argument(
        "--max-pixels", type=int, default=EVAL_MAX_PIXELS, help="Pixels per frame (default 256*28*28)"
    )
    parser.add_argument("--min-pixels", type=int, help="Minimum pixels per frame (default: the processor's)")
    parser.add_argument("--batch-size", type=int, default=1, help="Items generated together. Default 1")
    parser.add_argument(
        "--max-new-tokens", type=int, default=1024, help="Tokens generated per answer. Default 1024"
    )
    _add_sampling(parser)
    parser.add_argument(
        "--template",
        default="video-r1",
        help="Prompt template (the training one), or 'benchmark' for the benchmark's own prompt. Default video-r1",
    )
    parser.add_argument(
        "--skip-missing", action="store_true", help="Evaluate without items whose video is missing"
    )
    parser.add_argument("--limit", type=int, help="Only the first N items")
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="Accept video paths outside --video-root (absolute paths elsewhere, ../)",
    )
    parser.add_argument(
        "--retry-errors", action="store_true", help="On resume, regenerate items that had an error"
    )
    parser.add_argument(
        "--backend", choices=("hf", "vllm"), default="hf", help="Generation backend. Default hf"
    )
    parser.add_argument("--device", default="cpu", help="Device for the hf backend (cpu, cuda). Default cpu")
    parser.add_argument(
        "--frame-selector",
        choices=("uniform", "random", "oracle", "voyager"),
        help="Choose --frames of --candidates frames per video (videoktr frames; docs/frames.md); the chosen "
        "indices are stored with each prediction. Default: uniform sampling by --frames / --fps",
    )
    parser.add_argument("--selector", help="Querier checkpoint for --frame-selector voyager (frames train)")
    parser.add_argument("--candidates", type=int, default=16, help="M candidate frames per video. Default 16")
    parser.set_defaults(func=run)
    modes = parser.add_subparsers(dest="eval_mode", metavar="[score]")
    score = modes.add_parser("score", help="Score an external predictions file (no model needed)")
    _add_common(score)
    score.add_argument(
        "--predictions", help="Predictions (.jsonl lines or a .json list) with an id and 'output'"
    )
    score.set_defaults(func=run_score)


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    """Sampling flags; defaults are the trainer's rollouts (TRL: top_k 0 = off, no min-p, no repetition penalty)."""
    group = parser.add_argument_group("sampling (recorded in the summary)")
    group.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); authors: 0.1")
    group.add_argument("--top-p", type=float, default=1.0, help="Nucleus mass when sampling; authors: 0.001")
    group.add_argument(
        "--top-k", type=int, default=0, help="Top-k when sampling; 0 = off (default, as TRL rollouts)"
    )
    group.add_argument("--min-p", type=float, help="Min-p when sampling (default: off)")
    group.add_argument("--repetition-penalty", type=float, default=1.0, help="1.0 = none (default)")
    group.add_argument("--seed", type=int, default=0, help="Sampling seed (per item position). Default 0")
    group.add_argument(
        "--authors-sampling",
        action="store_true",
        help="The authors' T=0.1, top_p=0.001 (other flags as given)",
    )


def _generation(args: argparse.Namespace):
    from videoktr.eval.generation import AUTHORS_GENERATION, GenerationSettings

    temperature, top_p = (
        (AUTHORS_GENERATION.temperature, AUTHORS_GENERATION.top_p)
        if args.authors_sampling
        else (args.temperature, args.top_p)
    )
    return GenerationSettings(
        max_new_tokens=args.max_new_tokens, temperature=temperature, top_p=top_p, top_k=args.top_k,
        min_p=args.min_p, repetition_penalty=args.repetition_penalty, seed=args.seed,
    )  # fmt: skip


def _require(args: argparse.Namespace, *names: str) -> None:
    from videoktr.errors import UserError

    missing = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name, None) in (None, "")]
    if missing:
        raise UserError(f"missing {', '.join(missing)}; see `videoktr eval --help`")


def _print_summary(title: str, summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title} (scorer: {summary['scorer']})")
    table.add_column("category")
    table.add_column("n", justify="right")
    table.add_column("accuracy", justify="right")
    partial = summary.get("by_category_mean_score") if summary.get("partial_credit") else None
    if partial is not None:  # multi-answer items: the mean of |P|/|G| beside the strict accuracy
        table.add_column("partial credit", justify="right")
    extra = [f"{summary['mean_score']:.2%}"] if partial is not None else []
    table.add_row("overall", str(summary["n_scored"]), f"{summary['accuracy']:.2%}", *extra, style="bold")
    if "mean_mra" in summary:
        table.add_row("regression (mean_mra)", str(summary["n_regression"]), f"{summary['mean_mra']:.2%}")
    tables = summary.get("tables") or {}
    for key, accuracy in summary["by_category"].items() if not tables else ():
        extra = [f"{partial[key]:.2%}"] if partial is not None else []
        table.add_row(key, str(summary["category_counts"][key]), f"{accuracy:.2%}", *extra)
    console = Console()
    console.print(table)
    for name, published in tables.items():
        console.print(_published_table(name, published))
    flags = {
        k: summary[k]
        for k in summary
        if k.startswith("n_") and k not in ("n_scored", "n_correct", "n_regression") and summary[k]
    }
    if flags:
        console.print("  ".join(f"{k}={v}" for k, v in flags.items()))
    for note in summary.get("notes", []):
        console.print(f"note: {note}")


def _published_table(name: str, published: dict):
    """One of the benchmark's published tables (``summary["tables"]``) as a rich table."""
    from rich.table import Table

    def cells(cell: dict) -> tuple[str, str]:
        accuracy = "-" if cell["accuracy"] is None else f"{cell['accuracy']:.2%}"
        return str(cell["n"]), accuracy

    table = Table(title=name, title_justify="left")
    table.add_column("category")
    table.add_column("n", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_row("overall", *cells(published["overall"]), style="bold")
    for breakdown, rows in published.items():
        if breakdown == "overall":
            continue
        table.add_section()
        for value, cell in rows.items():
            table.add_row(f"{breakdown}: {value}", *cells(cell))
    return table


def _warn_no_rule(scorer: str, items: list) -> None:
    import sys

    from videoktr.eval.scorers import no_rule_warning

    warning = no_rule_warning(scorer, items)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def run_score(args: argparse.Namespace) -> int:
    from pathlib import Path

    from videoktr.eval.benchmarks import load_benchmark
    from videoktr.eval.scoring import read_predictions, score_predictions, write_summary

    _require(args, "bench", "data", "predictions")
    items = load_benchmark(args.bench, args.data)
    _warn_no_rule(args.scorer, items)
    _, summary = score_predictions(items, read_predictions(args.predictions), scorer=args.scorer)
    summary["run"] = {
        "bench": args.bench, "data": str(args.data), "predictions": str(args.predictions), "scorer": args.scorer,
    }  # fmt: skip
    _print_summary(f"{args.bench}: {args.predictions}", summary)
    out = Path(args.summary) if args.summary else Path(args.predictions).with_suffix(".summary.json")
    print(f"summary: {write_summary(summary, out)}")
    return 0


def _sampling(args: argparse.Namespace):
    from videoktr.data.video import VideoSamplingConfig

    return VideoSamplingConfig(
        num_frames=None if args.fps else args.frames,
        fps=args.fps,
        max_frames=args.max_frames,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
    )


def _backend(args: argparse.Namespace, sampling, generation, frames=None):
    import sys

    from videoktr.eval.backends import HFBackend, VLLMBackend

    if not sys.stderr.isatty():  # a log: transformers' redrawn load bars would pile up on one line
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    if args.backend == "vllm":
        return VLLMBackend(args.model, sampling, generation)
    from videoktr.models.tiny import load_model_and_processor

    model, processor = load_model_and_processor(args.model, device=args.device)
    model.eval()
    backend = HFBackend(model, processor, sampling, generation)
    if frames is not None:  # (VoyagerConfig, records): choose each video's frames
        from videoktr.frames.select import plan_frames

        cfg, records = frames
        backend.frame_indices = plan_frames(
            args.frame_selector, records, args.video_root, cfg, model=model, processor=processor,
            selector=args.selector, model_path=str(args.model), sampling=sampling, template=args.template,
        )  # fmt: skip
    return backend


def _frame_selection(args: argparse.Namespace, items) -> tuple[dict, tuple | None]:
    """(identity keys, (VoyagerConfig, records) or None) of ``--frame-selector``; refuses what cannot work."""
    if not args.frame_selector:
        return {}, None
    import json
    from pathlib import Path

    from videoktr.errors import UserError
    from videoktr.eval.identity import file_sha256
    from videoktr.frames.config import VoyagerConfig

    if args.fps:
        raise UserError("--frame-selector keeps --frames frames of --candidates: drop --fps")
    if args.backend != "hf":
        raise UserError("--frame-selector needs --backend hf")
    cfg = VoyagerConfig(candidates=args.candidates, frames=args.frames)
    records = [item.to_record() for item in items]
    if (
        args.frame_selector == "oracle"
    ):  # the evidence rule is in the data file's rows (synthetic sparse data)
        rows = json.loads(Path(args.data).read_text())
        by_id = {str(r.get("problem_id")): r for r in rows} if isinstance(rows, list) else {}
        for record in records:
            if "evidence_rule" not in by_id.get(record["problem_id"], {}):
                raise UserError(
                    f"record {record['problem_id']}: --frame-selector oracle needs 'evidence_rule' in {args.data} "
                    "(the synthetic sparse records have it); use uniform, random or voyager"
                )
            record["evidence_rule"] = by_id[record["problem_id"]]["evidence_rule"]
    selector = {"name": args.frame_selector, "candidates": args.candidates, "frames": args.frames}
    if args.frame_selector == "voyager":
        if not args.selector:
            raise UserError(
                "--frame-selector voyager needs --selector DIR (a `videoktr frames train` output)"
            )
        weights = Path(args.selector) / "querier.safetensors"
        if not weights.is_file():
            raise UserError(
                f"{args.selector} is not a querier checkpoint; train one with `videoktr frames train`"
            )
        selector["selector_sha256"] = file_sha256(weights)
    return {"frame_selector": selector}, (cfg, records)


def _check_video_r1_records(args: argparse.Namespace) -> None:
    """The record check ``train`` and ``validate-data`` run (every problem listed), before anything loads."""
    from pathlib import Path

    from videoktr.data.schema import check_records, require_valid
    from videoktr.eval.benchmarks import read_annotations

    rows = read_annotations(Path(args.data))
    if isinstance(rows, dict) and isinstance(rows.get("results"), list):
        rows = rows["results"]  # Video-R1's eval output files keep the records under "results"
    if not isinstance(rows, list):
        return  # the loader names the problem
    report = check_records(
        rows, args.video_root, path=args.data, exists=False, decode=False,
        allow_outside_root=args.allow_outside_root,
    )  # fmt: skip
    require_valid(report, "benchmark file")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from videoktr.eval.benchmarks import load_benchmark
    from videoktr.eval.identity import HEADER_KEY, RunIdentity, eval_run_settings, open_predictions
    from videoktr.eval.runner import EvalRunConfig, check_videos, question_text, run_evaluation
    from videoktr.eval.scorers import check_scorer
    from videoktr.eval.scoring import write_summary

    _require(args, "model", "bench", "data", "video_root")
    generation = _generation(args)
    sampling = _sampling(args)
    config = EvalRunConfig(
        video_root=Path(args.video_root), batch_size=args.batch_size, template=args.template,
        skip_missing=args.skip_missing, limit=args.limit, retry_errors=args.retry_errors, scorer=args.scorer,
        allow_outside_root=args.allow_outside_root,
    )  # fmt: skip
    if args.bench == "video-r1":
        _check_video_r1_records(args)
    items = load_benchmark(args.bench, args.data)
    predictions = Path(args.predictions or f"eval_results/{args.bench}_predictions.jsonl")
    # refuse what cannot run before the (slow) model load: every missing video, the scorer, the prompt, a mixed resume
    check_videos(items, config)
    check_scorer(args.scorer, items)
    _warn_no_rule(args.scorer, items)
    question_text(items[0], args.template)
    selection, frames = _frame_selection(args, items)
    settings, recorded = eval_run_settings(
        model_dir=args.model, bench=args.bench, data=args.data, sampling=sampling, generation=generation,
        template=args.template, backend=args.backend, scorer=args.scorer, **selection,
    )  # fmt: skip
    identity = RunIdentity(settings, recorded)
    open_predictions(predictions, identity)
    backend = _backend(args, sampling, generation, frames)
    _, summary = run_evaluation(backend, items, config, predictions, identity=identity, progress=True)
    summary["run"] = {
        "model": str(args.model), "bench": args.bench, "data": str(args.data), "video_root": str(args.video_root),
        "sampling": vars(sampling), "generation": vars(generation), "template": args.template,
        "scorer": args.scorer, "backend": args.backend, "predictions": str(predictions),
        "identity": identity.header()[HEADER_KEY], **selection,
    }  # fmt: skip
    _print_summary(f"{args.bench}: {args.model}", summary)
    out = Path(args.summary) if args.summary else predictions.with_suffix(".summary.json")
    print(f"predictions: {predictions}\nsummary: {write_summary(summary, out)}")
    return 0
