"""``--scorer video-r1``: the rules of Video-R1's ``src/eval_bench.py`` (``reward_fn``), which the Video-KTR
authors used unchanged for their tables.

- The answer is the content of the **first** ``<answer>...</answer>`` pair, stripped; with no pair, or an empty
  one, the whole output (not stripped).
- multiple choice: ``answer.strip() == gold`` - the bare letter only: ``B.``, ``(B)``, ``B) text``, ``b``,
  ``Option B`` are all wrong.
- numerical: 0 when exactly one of answer / gold contains ``.`` or ``,``; else both parsed with commas removed and
  compared at 2 decimals (``12.0`` for 12 is wrong, ``3 apples`` is wrong).
- regression: mean relative accuracy (thresholds 0.50..0.95), kept out of the accuracy and averaged as
  ``mean_mra``; ``correct`` only at 1.0.
- any other problem type (OCR, free-form): 0, still in the denominator (Video-R1's ``else: return 0.0``); such
  items are flagged ``no_rule``.
A generation error counts as a wrong answer (Video-R1 substitutes ``<answer>error</answer>``).

Rules are looked up by problem type in :data:`VIDEO_R1_RULES`; a new problem type registers its rule there.
"""

from __future__ import annotations

from typing import Any

from videoktr.core.registry import Registry
from videoktr.eval.benchmarks import BenchItem
from videoktr.eval.scorers.base import (
    SCORERS,
    GoldError,
    ItemScorer,
    first_answer,
    normalize_number,
    option_letters,
    regression,
    result,
)

VIDEO_R1_RULES: Registry[ItemScorer] = Registry("Video-R1 problem-type rule")


@VIDEO_R1_RULES.register("multiple choice")
def _multiple_choice(item: BenchItem, output: str) -> dict[str, Any]:
    answer = first_answer(output).strip()
    return result(answer, answer == item.answer.strip(), extracted=answer in option_letters(item))


@VIDEO_R1_RULES.register("numerical")
def _numerical(item: BenchItem, output: str) -> dict[str, Any]:
    answer, gold = first_answer(output), item.answer
    pred_value, gold_value = normalize_number(answer), normalize_number(gold)
    if gold_value is None:
        raise GoldError(f"the gold answer {gold!r} of a numerical item is not a number")
    if (("." in gold) or ("," in gold)) != (("." in answer) or ("," in answer)):
        return result(answer, False, extracted=pred_value is not None)
    if pred_value is None:
        return result(answer, False, extracted=pred_value is not None)
    return result(answer, round(gold_value, 2) == round(pred_value, 2))


@VIDEO_R1_RULES.register("regression")
def _regression(item: BenchItem, output: str) -> dict[str, Any]:
    return regression(first_answer(output), item.answer)


def _no_rule(item: BenchItem, output: str) -> dict[str, Any]:
    return result(first_answer(output), False, extracted=False, no_rule=True)


@SCORERS.register("video-r1")
def score_video_r1(item: BenchItem, output: str) -> dict[str, Any]:
    """Score ``output`` for ``item`` with Video-R1's rule for its problem type."""
    rule = VIDEO_R1_RULES.get(item.problem_type) if item.problem_type in VIDEO_R1_RULES else _no_rule
    return rule(item, output)
