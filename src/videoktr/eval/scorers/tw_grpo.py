"""``--scorer tw-grpo``: the TW-GRPO authors' multi-answer evaluation (``src/eval/eval_clevrer.py`` at aa529ff),
also the ``official`` scorer of the benchmarks they introduced or converted (``clevrer``, ``nextgqa``).

- multiple choice: the answer is the content of the first ``<answer>...</answer>`` pair (stripped), else the
  letters after "Answer:" (``Answer: A, C``), else nothing; read as a set (spaces removed, split on commas);
  ``score`` (partial credit) = ``|P| / |G|`` if ``P`` is a subset of the gold set ``G``, else 0; ``correct``
  (strict) iff the score is 1. Single-answer items of a mixed set are scored the same way (exact set match).
- other problem types: Video-R1's rules (:mod:`.video_r1`).
Summaries then report ``accuracy`` (strict) and ``mean_score`` (mean partial credit), overall and per category,
as the authors' ``strict_accuracy`` / ``partial_accuracy``. A gold letter that is not among the item's options is
a data error naming the item.
"""

from __future__ import annotations

from typing import Any

from videoktr.eval.benchmarks import BenchItem
from videoktr.eval.scorers.base import OFFICIAL, SCORERS, GoldError, result
from videoktr.eval.scorers.video_r1 import score_video_r1
from videoktr.rewards.tw_grpo import gold_letter_set, score_multi_answer


def multi_answer_fields(item: BenchItem, output: str) -> dict[str, Any]:
    """Scoring fields of one multiple-choice item read the authors' multi-answer way (module docstring)."""
    try:
        gold = gold_letter_set(f"<answer>{item.answer}</answer>", item.options)
    except ValueError as err:
        raise GoldError(str(err)) from err
    scored = score_multi_answer(output, gold)
    fields = result(scored["prediction"] or None, scored["strict"], score=scored["partial"])
    fields["partial_credit"] = True
    return fields


@SCORERS.register("tw-grpo")
def score_tw_grpo(item: BenchItem, output: str) -> dict[str, Any]:
    """Multi-answer rule for multiple choice, Video-R1's rules for the rest."""
    if item.problem_type == "multiple choice":
        return multi_answer_fields(item, output)
    return score_video_r1(item, output)


OFFICIAL.add("clevrer", score_tw_grpo)
OFFICIAL.add("nextgqa", score_tw_grpo)
