"""Prediction records and summaries: one JSONL line per item, scored by the chosen scorer (``--scorer``, see
:mod:`videoktr.eval.scorers`), and the summary a run prints and saves.

Summary: ``accuracy`` = correct / counted non-regression items (``mean_score`` = mean per-item score over them:
the partial credit of multi-answer items under ``--scorer tw-grpo``, flagged ``partial_credit``, else equal to
``accuracy``; ``by_category_mean_score`` per category), where "counted" follows the scorer's denominator
rule (``n_dropped`` items left out, e.g. Video-MME's unparseable answers under ``official``); regression items are
averaged apart as ``mean_mra``; ``n_only_lenient`` counts the items only the lenient reader accepts; per-category
accuracies (``by_category``) pool each category over the run, ``tables`` are each benchmark's published tables
(:mod:`videoktr.eval.tables`: e.g. Video-MME per duration with domains, sub-categories and task types inside), both
with the scorer's denominator rule, and ``notes`` say what is and is not an official figure. A generation error
is a wrong, counted answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from videoktr.errors import UserError
from videoktr.eval.benchmarks import BenchItem, read_annotations
from videoktr.eval.identity import is_header
from videoktr.eval.scorers import DEFAULT_SCORER, check_scorer, score_item
from videoktr.eval.tables import published_tables

ID_KEYS = ("id", "problem_id", "question_id", "Question ID")

_NOTES = {
    "tempcompass": "TempCompass publishes accuracy per task, with its dimensions inside (tables task/...); "
    "'accuracy' pools the tasks and is not an official figure",
    "videommmu": "lmms-eval reports each VideoMMMU track on its own, with domains and subjects inside (tables "
    "track/...); 'accuracy' and by_category pool the tracks and are not its figures",
}
_SCORER_NOTES = {
    ("official", "videomme"): "Video-MME's official scorer leaves unparseable answers out of the denominator "
    "(n_dropped)",
    ("official", "videommmu"): "lmms-eval leaves empty answers out of the denominator (n_dropped)",
    ("official", "mmvu"): "lmms-eval counts only the subjects in its discipline map (n_dropped)",
}


def prediction_record(
    item: BenchItem, output: str | None, error: str | None = None, scorer: str = DEFAULT_SCORER
) -> dict[str, Any]:
    """The JSONL line of one item: id, gold answer, categories, raw output, the scorer's fields (or the error)."""
    return {
        "id": item.id,
        "benchmark": item.benchmark,
        "problem_type": item.problem_type,
        "answer": item.answer,
        "categories": item.categories,
        "output": output,
        "error": error,
        "scorer": scorer,
        **score_item(item, output, scorer, error),
    }


def summarize(
    records: Iterable[Mapping[str, Any]], scorer: str = DEFAULT_SCORER, **counts: Any
) -> dict[str, Any]:
    """The summary of scored records (see the module docstring); ``counts`` are added as they are."""
    records = list(records)
    scored = [r for r in records if r.get("metric", "accuracy") == "accuracy"]
    counted = [r for r in scored if r.get("counted", True)]
    regression = [r for r in records if r.get("metric") == "mra" and r.get("counted", True)]
    totals: dict[str, list[float]] = {}
    for record in counted:
        for name, value in record.get("categories", {}).items():
            total = totals.setdefault(f"{name}/{value}", [0, 0, 0.0])
            total[0] += bool(record["correct"])
            total[1] += 1
            total[2] += record["score"]
    n, n_correct = len(counted), sum(bool(r["correct"]) for r in counted)
    summary: dict[str, Any] = {
        "scorer": scorer,
        "accuracy": n_correct / n if n else 0.0,
        "mean_score": sum(r["score"] for r in counted) / n if n else 0.0,
        "partial_credit": any(r.get("partial_credit") for r in counted),
        "n_scored": n,
        "n_correct": n_correct,
        "n_dropped": len(scored) - n,
        "n_not_extracted": sum(not r["extracted"] and r.get("error") is None for r in scored),
        "n_errors": sum(r.get("error") is not None for r in records),
        "n_no_rule": sum(bool(r.get("no_rule")) for r in records),
        "n_only_lenient": sum(bool(r.get("lenient_correct")) and not r["correct"] for r in scored),
    }
    if regression:
        summary["n_regression"] = len(regression)
        summary["mean_mra"] = sum(r["score"] for r in regression) / len(regression)
    summary.update(counts)
    summary["by_category"] = {key: correct / total for key, (correct, total, _) in sorted(totals.items())}
    summary["by_category_mean_score"] = {
        key: score / total for key, (_, total, score) in sorted(totals.items())
    }
    summary["category_counts"] = {key: total for key, (_, total, _) in sorted(totals.items())}
    summary["tables"] = published_tables(records)
    benchmarks = sorted({r.get("benchmark", "") for r in records})
    notes = [_NOTES[b] for b in benchmarks if b in _NOTES]
    notes += [_SCORER_NOTES[(scorer, b)] for b in benchmarks if (scorer, b) in _SCORER_NOTES]
    if summary["n_no_rule"]:
        notes.append(
            f"{summary['n_no_rule']} items have a problem type Video-R1's evaluation has no rule for; they score "
            "0 as there (use --scorer official or lenient to read them)"
        )
    multi = [
        r for r in counted if r.get("problem_type") == "multiple choice" and "," in str(r.get("answer", ""))
    ]
    if multi and not summary["partial_credit"]:
        notes.append(
            f"{len(multi)} items have several correct letters; scorer {scorer!r} compares them as written: use "
            "--scorer tw-grpo for TW-GRPO's strict accuracy and partial credit"
        )
    summary["notes"] = notes
    return summary


def _prediction_id(row: Mapping[str, Any], path: Path, number: int) -> str:
    for key in ID_KEYS:
        if row.get(key) is not None:
            return str(row[key])
    raise UserError(f"{path}: prediction #{number} has no id; give each line one of {', '.join(ID_KEYS)}")


def read_predictions(path: str | Path) -> dict[str, dict[str, Any]]:
    """Predictions by id from JSONL / a JSON list / Video-R1's ``{"results": [...]}``; a later line for the same
    id replaces an earlier one (a rerun after an error). Each line needs an id and ``output`` (or ``error``).
    The run header of a videoktr predictions file (:mod:`videoktr.eval.identity`) is skipped."""
    path = Path(path)
    data = read_annotations(path)
    rows = data["results"] if isinstance(data, dict) and "results" in data else data
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected JSONL lines or a JSON list of predictions")
    predictions = {}
    for number, row in enumerate(rows, start=1):
        if number == 1 and is_header(row):
            continue
        if not isinstance(row, dict):
            raise UserError(f"{path}: prediction #{number} is not a JSON object")
        rid = _prediction_id(row, path, number)
        if not isinstance(row.get("output"), str) and row.get("error") is None:
            raise UserError(f"{path}: prediction {rid!r} needs a string 'output' (or an 'error')")
        predictions[rid] = row
    return predictions


def score_predictions(
    items: list[BenchItem], predictions: Mapping[str, Mapping[str, Any]], scorer: str = DEFAULT_SCORER
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score external predictions against ``items``. Items without a prediction are counted, not scored;
    a prediction whose id is not in ``items`` is an error (probably the wrong benchmark file)."""
    by_id = {item.id: item for item in items}
    unknown = [rid for rid in predictions if rid not in by_id]
    if unknown:
        shown = ", ".join(repr(r) for r in unknown[:5])
        raise UserError(
            f"{len(unknown)} prediction id(s) are not in the benchmark file (e.g. {shown}); check --data"
        )
    check_scorer(scorer, items)
    records = [
        prediction_record(item, predictions[item.id].get("output"), predictions[item.id].get("error"), scorer)
        for item in items
        if item.id in predictions
    ]
    counts = {"n_items": len(items), "n_missing_predictions": len(items) - len(records)}
    return records, summarize(records, scorer, **counts)


def write_summary(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Write the summary JSON (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
