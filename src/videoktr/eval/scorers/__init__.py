"""Scorers: how a model's output is read and judged (``--scorer``), looked up by name in :data:`SCORERS`.

- ``video-r1`` (default): the Video-KTR authors' rules (Video-R1 ``src/eval_bench.py``) - :mod:`.video_r1`;
- ``official``: each benchmark's own published scorer, looked up by benchmark in :data:`OFFICIAL` -
  :mod:`.official`, :mod:`.lmms_eval`;
- ``lenient``: a forgiving reader for diagnosis - :mod:`.lenient`;
- ``tw-grpo``: the TW-GRPO authors' multi-answer evaluation (strict accuracy and partial credit) - :mod:`.tw_grpo`.

Every record is also read by the lenient reader, so a summary can say how many items only it accepts.
Regression items are scored by Video-R1's mean relative accuracy under every scorer and averaged apart
(``mean_mra``). ``docs/evaluation.md`` lists, per benchmark, which scorer the paper and the leaderboards used.
"""

from __future__ import annotations

from typing import Any

from videoktr.errors import UserError
from videoktr.eval.benchmarks import BenchItem
from videoktr.eval.scorers import lenient, lmms_eval, official, tw_grpo, video_r1  # noqa: F401  (register)
from videoktr.eval.scorers.base import OFFICIAL, SCORERS, GoldError, result

DEFAULT_SCORER = "video-r1"

__all__ = ["DEFAULT_SCORER", "OFFICIAL", "SCORERS", "check_scorer", "no_rule_warning", "score_item"]


def check_scorer(name: str, items: list[BenchItem]) -> None:
    """Refuse, before any generation, a scorer that cannot score these items (unknown name, no official scorer)."""
    if name not in SCORERS:
        raise UserError(f"unknown scorer {name!r}; valid: {', '.join(SCORERS.names())}")
    if name == "official":
        missing = sorted({item.benchmark for item in items if item.benchmark not in OFFICIAL})
        if missing:
            raise UserError(
                f"no official scorer for {', '.join(missing)}; official scorers exist for "
                f"{', '.join(OFFICIAL.names())}: use --scorer video-r1 or lenient"
            )


def no_rule_warning(name: str, items: list[BenchItem]) -> str | None:
    """A warning when ``video-r1`` has no rule for some items (they will score 0, as in Video-R1), else None."""
    if name != "video-r1":
        return None
    from videoktr.eval.scorers.video_r1 import VIDEO_R1_RULES

    kinds = sorted({item.problem_type for item in items if item.problem_type not in VIDEO_R1_RULES})
    count = sum(item.problem_type not in VIDEO_R1_RULES for item in items)
    if not count:
        return None
    return (
        f"{count} of {len(items)} items are {', '.join(kinds)}, which Video-R1's evaluation scores 0 "
        "(it has no rule for them); --scorer official or lenient reads them"
    )


def score_item(item: BenchItem, output: str | None, scorer: str, error: str | None = None) -> dict[str, Any]:
    """The scoring fields of one item with ``scorer``, plus ``lenient_correct`` (the lenient reader's verdict).

    A failed generation (``error``) or a missing output is a wrong answer, kept in the denominator.
    """
    metric = "mra" if item.problem_type == "regression" else "accuracy"
    if error is not None or output is None:
        return {**result(None, False, metric=metric), "lenient_correct": False}
    try:
        fields = SCORERS.get(scorer)(item, output)
        fields["lenient_correct"] = (
            fields["correct"] if scorer == "lenient" else SCORERS.get("lenient")(item, output)["correct"]
        )
    except GoldError as err:
        raise UserError(f"{item.benchmark} item {item.id!r} cannot be scored: {err}") from err
    return fields
