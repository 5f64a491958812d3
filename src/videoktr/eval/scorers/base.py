"""What every scorer returns for one output, and the registries scorers are looked up in.

A scorer is a function ``(item, output) -> dict`` with the fields below; it reads the output the way its
reference does and never raises on a model's output (only on an unusable gold answer).

- ``prediction``: what the rule read (a letter, a number string, a yes/no word, ...), or ``None``;
- ``extracted``: whether the rule could read an answer at all;
- ``correct``: the reference's verdict; ``score``: its per-item value (1/0, or the mean relative accuracy);
- ``counted``: whether the reference keeps the item in its denominator (Video-MME's official scorer drops
  unparseable answers, lmms-eval drops empty VideoMMMU answers and MMVU subjects outside its map);
- ``metric``: ``"accuracy"``, or ``"mra"`` for regression items (averaged apart as ``mean_mra``, as Video-R1 does);
- ``no_rule``: the reference has no rule for this problem type and scores it 0 (Video-R1 for OCR / free-form).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from videoktr.core.registry import Registry
from videoktr.eval.benchmarks import BenchItem


class GoldError(ValueError):
    """The item's gold answer cannot be scored by the rule (a data error, reported with the item's id)."""


ItemScorer = Callable[[BenchItem, str], dict[str, Any]]

SCORERS: Registry[ItemScorer] = Registry("scorer")
"""``--scorer`` names: ``video-r1``, ``official``, ``lenient``."""

OFFICIAL: Registry[ItemScorer] = Registry("official benchmark scorer")
"""Benchmark name -> that benchmark's own scorer (``--scorer official``). A new benchmark registers one here."""

_FIRST_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)


def result(
    prediction: str | None,
    correct: bool,
    *,
    score: float | None = None,
    extracted: bool | None = None,
    counted: bool = True,
    metric: str = "accuracy",
    no_rule: bool = False,
) -> dict[str, Any]:
    """One item's scoring fields (see the module docstring); ``score`` defaults to 1.0 / 0.0 from ``correct``."""
    return {
        "prediction": prediction,
        "extracted": prediction is not None if extracted is None else extracted,
        "correct": bool(correct),
        "score": float(correct) if score is None else float(score),
        "counted": counted,
        "metric": metric,
        "no_rule": no_rule,
    }


def first_answer(output: str) -> str:
    """Video-R1's ``extract_answer`` with its fallback: the content of the **first** ``<answer>...</answer>``
    (whitespace inside the tags dropped), or the whole output when there is no pair or the pair is empty."""
    match = _FIRST_ANSWER.search(output)
    content = match.group(1).strip() if match else ""
    return content if content != "" else output


def option_letters(item: BenchItem) -> list[str]:
    """The letters labelling ``item.options`` (``"A. x"`` -> ``A``)."""
    return [option.strip()[0] for option in item.options or []]


def normalize_number(text: str) -> float | None:
    """Video-R1's ``normalize_number``: ``float`` with commas removed, ``None`` when that fails."""
    try:
        return float(text.replace(",", ""))
    except (ValueError, AttributeError):
        return None


def mean_relative_accuracy(pred: float, target: float, start=0.5, end=0.95, interval=0.05) -> float:
    """Video-R1's regression score, computed as it does (float32 torch): the fraction of the thresholds
    0.50, 0.55, ..., 0.95 for which ``|pred - target| / (|target| + 1e-8) < 1 - threshold``.

    Exact answers score 1.0 (a gold of 0 included: 0 / 1e-8 = 0); any non-zero answer to a gold of 0 scores 0.
    """
    import torch

    pred_t = torch.tensor(pred, dtype=torch.float32)
    target_t = torch.tensor(target, dtype=torch.float32)
    rel_error = torch.abs(pred_t - target_t) / (torch.abs(target_t) + 1e-8)
    thresholds = torch.arange(start, end + interval / 2, interval, dtype=torch.float32)
    return (rel_error < (1 - thresholds)).float().mean().item()


def regression(prediction: str, gold: str) -> dict[str, Any]:
    """A regression item by Video-R1's rule (shared by every scorer): ``metric="mra"``, correct iff MRA is 1."""
    gold_value, pred_value = normalize_number(gold), normalize_number(prediction)
    if gold_value is None:
        raise GoldError(f"the gold answer {gold!r} of a regression item is not a number")
    if pred_value is None:
        return result(prediction, False, extracted=pred_value is not None, metric="mra")
    mra = mean_relative_accuracy(pred_value, gold_value)
    return result(prediction, mra == 1.0, score=mra, metric="mra")
