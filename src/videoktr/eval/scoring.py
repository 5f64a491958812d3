"""Scoring model outputs as the authors' evaluation does, and summarising accuracy per category.

Per item: take the content of the last ``<answer>...</answer>`` (fall back to the whole text when there are no
tags, ``answer_source: "text"``); multiple choice is an exact match of the option letter read from it (letters
outside the item's options count as none); numerical uses the Video-R1 rule (decimal-point/comma agreement, equal
at 2 decimals); other problem types use the training reward's scorer and count as correct only at score 1.
An output from which no letter / number / text can be read is wrong and flagged ``extracted: false``; an item whose
generation failed is wrong and carries its ``error``. Accuracy = correct / scored items (errors included).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from videoktr.errors import UserError
from videoktr.eval.benchmarks import BenchItem, read_annotations
from videoktr.eval.identity import is_header
from videoktr.rewards.accuracy import GoldError, score_answer
from videoktr.rewards.parsing import extract_answer, extract_letter, option_letters, parse_number

ID_KEYS = ("id", "problem_id", "question_id", "Question ID")


def _read_value(item: BenchItem, answer: str) -> str | None:
    """What the item's problem type reads from an answer: a letter, a number string, or non-empty text."""
    if item.problem_type == "multiple choice":
        return extract_letter(answer, option_letters(item.options))
    if item.problem_type in ("numerical", "regression"):
        return answer if parse_number(answer) is not None else None
    return answer or None


def score_output(item: BenchItem, output: str) -> dict[str, Any]:
    """Score one model output: ``prediction``, ``extracted``, ``answer_source``, ``correct``, ``score``."""
    tagged = extract_answer(output)
    answer = tagged if tagged is not None else output.strip()
    prediction = _read_value(item, answer)
    try:
        score = (
            score_answer(item.problem_type, answer, item.answer, item.options)
            if prediction is not None
            else 0.0
        )
    except GoldError as err:
        raise UserError(f"{item.benchmark} item {item.id!r} cannot be scored: {err}") from err
    return {
        "prediction": prediction,
        "extracted": prediction is not None,
        "answer_source": "tag" if tagged is not None else "text",
        "correct": score >= 1.0,
        "score": float(score),
    }


def prediction_record(item: BenchItem, output: str | None, error: str | None = None) -> dict[str, Any]:
    """The JSONL line of one item: its id, gold answer, categories, raw output, and score (or its error)."""
    record = {
        "id": item.id,
        "benchmark": item.benchmark,
        "problem_type": item.problem_type,
        "answer": item.answer,
        "categories": item.categories,
        "output": output,
        "error": error,
    }
    if error is not None or output is None:
        record.update(prediction=None, extracted=False, answer_source=None, correct=False, score=0.0)
    else:
        record.update(score_output(item, output))
    return record


def summarize(records: Iterable[Mapping[str, Any]], **counts: int) -> dict[str, Any]:
    """Accuracy overall and per ``category/value`` over scored records; ``counts`` are added as they are.

    Returns ``accuracy`` (fraction), ``mean_score``, ``n_scored``, ``n_correct``, ``n_not_extracted``,
    ``n_errors``, ``by_category`` {"field/value": accuracy} and ``category_counts`` {"field/value": n}.
    """
    records = list(records)
    totals: dict[str, list[int]] = {}
    for record in records:
        for name, value in record.get("categories", {}).items():
            total = totals.setdefault(f"{name}/{value}", [0, 0])
            total[0] += bool(record["correct"])
            total[1] += 1
    n = len(records)
    n_correct = sum(bool(r["correct"]) for r in records)
    return {
        "accuracy": n_correct / n if n else 0.0,
        "mean_score": sum(r["score"] for r in records) / n if n else 0.0,
        "n_scored": n,
        "n_correct": n_correct,
        "n_not_extracted": sum(not r["extracted"] and r.get("error") is None for r in records),
        "n_errors": sum(r.get("error") is not None for r in records),
        **counts,
        "by_category": {key: correct / total for key, (correct, total) in sorted(totals.items())},
        "category_counts": {key: total for key, (_, total) in sorted(totals.items())},
    }


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
    items: list[BenchItem], predictions: Mapping[str, Mapping[str, Any]]
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
    records = [
        prediction_record(item, predictions[item.id].get("output"), predictions[item.id].get("error"))
        for item in items
        if item.id in predictions
    ]
    return records, summarize(records, n_items=len(items), n_missing_predictions=len(items) - len(records))


def write_summary(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Write the summary JSON (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
