"""Accuracy reward by ``problem_type``, Video-R1 conventions (METHOD.md section 4).

| problem_type    | reward                                                                                   |
|-----------------|------------------------------------------------------------------------------------------|
| multiple choice | 1 if the answer's option letter equals the solution's letter, else 0                     |
| numerical       | 0 if exactly one of answer/solution has a decimal point or comma; else 1 iff equal after |
|                 | removing commas and rounding both to 2 decimals                                          |
| OCR             | 1 - word error rate, clipped to [0, 1]                                                   |
| free-form       | mean of ROUGE-1, ROUGE-2, ROUGE-L F-measure (stemmed), clipped to [0, 1]                 |
| regression      | 1 - (abs(p - g) + 1e-9) / (abs(g) + 1e-9), clipped to [0, 1]                              |

Two kinds of failure, kept apart on purpose:
- the **model's** answer is missing or unreadable (no ``<answer>`` tags, no letter, not a number): a legitimate
  0 for that completion;
- the **sample** cannot be scored (no ``solution`` column or value, solution without ``<answer>`` tags or with an
  unreadable gold letter/number, unknown ``problem_type``): ``RewardError`` naming the reward and the sample,
  because a silent 0 would hide a data bug and train on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from videoktr.rewards.base import RewardError, check_column, completion_text, register_reward, sample_name
from videoktr.rewards.parsing import (
    extract_answer,
    extract_letter,
    has_decimal_or_comma,
    option_letters,
    parse_number,
)

REGRESSION_EPS = 1e-9
_MULTI_LETTER = re.compile(r"\(?[A-Z]\)?(?:\s*(?:,|;|and)\s*\(?[A-Z]\)?)+")


class GoldError(ValueError):
    """The solution side of a sample is unusable (turned into ``RewardError`` with the sample's name)."""


def score_multiple_choice(pred: str | None, gold: str, valid: set[str] | None = None) -> float:
    """1.0 iff ``pred`` gives the same single option letter as ``gold`` (``valid``: the options' letters)."""
    if _MULTI_LETTER.fullmatch(gold.strip()):
        raise GoldError(f"solution {gold!r} has several letters; score multi-answer data with 'tw_soft_mc'")
    gold_letter = extract_letter(gold)
    if gold_letter is None:
        raise GoldError(f"solution {gold!r} is not an option letter")
    return 1.0 if extract_letter(pred, valid) == gold_letter else 0.0


def score_numerical(pred: str | None, gold: str) -> float:
    """Video-R1 numerical rule: decimal-point/comma presence must agree, then equal at 2 decimals."""
    gold_value = parse_number(gold)
    if gold_value is None:
        raise GoldError(f"solution {gold!r} is not a number")
    if pred is None or has_decimal_or_comma(pred) != has_decimal_or_comma(gold):
        return 0.0
    pred_value = parse_number(pred)
    if pred_value is None:
        return 0.0
    return 1.0 if round(pred_value, 2) == round(gold_value, 2) else 0.0


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance / number of reference words (at least 1). Can exceed 1."""
    ref, hyp = reference.split(), hypothesis.split()
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            substitution = previous[j - 1] + (ref_word != hyp_word)
            current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
        previous = current
    return previous[-1] / max(1, len(ref))


def score_ocr(pred: str | None, gold: str) -> float:
    """1 - WER(gold, pred), clipped to [0, 1]; no answer scores 0."""
    if pred is None:
        return 0.0
    return min(1.0, max(0.0, 1.0 - word_error_rate(gold, pred)))


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def score_free_form(pred: str | None, gold: str) -> float:
    """Mean of ROUGE-1/2/L F-measure between gold and pred (stemmed, as the authors), clipped to [0, 1]."""
    if pred is None:
        return 0.0
    scores = _rouge_scorer().score(gold, pred)
    mean = (scores["rouge1"].fmeasure + scores["rouge2"].fmeasure + scores["rougeL"].fmeasure) / 3
    return min(1.0, max(0.0, mean))


def score_regression(pred: str | None, gold: str) -> float:
    """1 - relative error ``(abs(p-g)+1e-9)/(abs(g)+1e-9)``, clipped to [0, 1]; unreadable answer scores 0."""
    gold_value = parse_number(gold)
    if gold_value is None:
        raise GoldError(f"solution {gold!r} is not a number")
    pred_value = parse_number(pred)
    if pred_value is None:
        return 0.0
    relative = (abs(pred_value - gold_value) + REGRESSION_EPS) / (abs(gold_value) + REGRESSION_EPS)
    return 1.0 - min(1.0, max(0.0, relative))


# problem_type -> scorer(pred_answer, gold_answer). Multiple choice also takes the options' letters.
SCORERS: dict[str, Callable[..., float]] = {
    "multiple choice": score_multiple_choice,
    "numerical": score_numerical,
    "OCR": score_ocr,
    "free-form": score_free_form,
    "regression": score_regression,
}


def score_answer(
    problem_type: str, pred: str | None, gold: str, options: Sequence[str] | None = None
) -> float:
    """Score one extracted answer against one gold answer. Raises ``GoldError`` for an unusable sample."""
    scorer = SCORERS.get(problem_type)
    if scorer is None:
        raise GoldError(f"unknown problem_type {problem_type!r}; valid: {', '.join(SCORERS)}")
    if problem_type == "multiple choice":
        try:
            valid = option_letters(options)
        except ValueError as err:
            raise GoldError(str(err)) from err
        return scorer(pred, gold, valid)
    return scorer(pred, gold)


def gold_answer(solution: Any) -> str:
    """The gold answer inside a solution ``"<answer>X</answer>"``. Raises ``GoldError`` when absent."""
    if not isinstance(solution, str) or not solution.strip():
        raise GoldError(f"missing solution (got {solution!r}); every record needs '<answer>...</answer>'")
    gold = extract_answer(solution)
    if gold is None:
        raise GoldError(f"solution {solution!r} has no <answer>...</answer> tags")
    return gold


@register_reward("accuracy")
def accuracy_reward(
    completions: Sequence[Any],
    solution: Sequence[Any] | None = None,
    problem_type: Sequence[str] | None = None,
    problem_id: Sequence[Any] | None = None,
    options: Sequence[Sequence[str] | None] | None = None,
    **kwargs: Any,
) -> list[float]:
    """Video-R1 accuracy reward per completion (see the module table). Columns: ``solution``, ``problem_type``
    (required), ``options`` (optional: restricts letters), ``problem_id`` (optional: names samples in errors)."""
    n = len(completions)
    solutions = check_column("accuracy", "solution", solution, n)
    types = check_column("accuracy", "problem_type", problem_type, n)
    rewards = []
    for i, completion in enumerate(completions):
        pred = extract_answer(completion_text(completion))
        row_options = options[i] if options is not None else None
        try:
            rewards.append(score_answer(types[i], pred, gold_answer(solutions[i]), row_options))
        except GoldError as err:
            raise RewardError("accuracy", sample_name(i, problem_id), str(err)) from err
    return rewards
