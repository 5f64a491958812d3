"""TW-GRPO multi-answer rewards (METHOD.md section 5), read the way the authors' code reads answers.

Reference: github longmalongma/TW-GRPO at aa529ff, ``src/open_r1/grpo.py`` (``accuracy_reward``,
``origin_accuracy_reward``) and ``src/eval/eval_clevrer.py`` (``calculate_accuracy_score``).

**The authors' reading** (:func:`answer_set`): the content of the *first* ``<answer>...</answer>`` pair, stripped,
else the whole stripped text; every space removed; split on commas; each piece stripped. The gold set ``G`` is read
from the solution the same way, the predicted set ``P`` from the completion. So ``"A, C"`` -> ``{"A", "C"}``, while
``"A. red"`` -> ``{"A.red"}``, ``"a"`` -> ``{"a"}`` and an empty answer -> ``{""}``: none of them is a gold letter.

| reward name            | value                                                                            |
|------------------------|----------------------------------------------------------------------------------|
| ``tw_soft_mc``         | ``|P| / |G|`` if ``P`` is a subset of ``G``, else 0 (authors' ``accuracy``)        |
| ``tw_exact_mc``        | 1 if ``P == G`` else 0: the binary reward (authors' ``origin_accuracy``)          |
| ``tw_soft_mc_lenient`` | the same ratio on a lenient reading: the *last* ``<answer>`` (no fallback), every |
|                        | standalone capital letter in it, letters outside the options dropped (diagnosis)  |

What is deliberately not copied: the authors first try ``math_verify`` symbolic equality on the whole completion
and give 1.0 when it succeeds; that pass is not reproduced (it is meant for maths answers, and adds a dependency).

Data errors are not the model's fault and are not scored 0: a gold set with a piece that is not a single capital
letter, or (when the ``options`` column is given) a gold letter that is not among the options, raises
:class:`RewardError` naming the sample. Question-Answer Inversion lives in :mod:`videoktr.data.qai`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from videoktr.rewards.base import RewardError, check_column, completion_text, register_reward, sample_name
from videoktr.rewards.parsing import extract_answer, extract_letter_set, option_letters

_FIRST_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_LETTER = re.compile(r"[A-Z]")
# the authors' evaluation fallback when there are no tags: "Answer: A, C" (src/eval/eval_clevrer.py)
_EVAL_FALLBACK = re.compile(r"(?:answer|Answer|ANSWER)[:\s]+([A-Z](?:\s*,\s*[A-Z])*)")


def answer_text(text: str) -> str:
    """Content of the first ``<answer>...</answer>`` pair, stripped; else the whole text, stripped (authors)."""
    match = _FIRST_ANSWER.search(text)
    return match.group(1).strip() if match else text.strip()


def answer_set(text: str) -> set[str]:
    """The authors' answer set: :func:`answer_text`, spaces removed, split on commas, pieces stripped."""
    return {piece.strip() for piece in answer_text(text).replace(" ", "").split(",")}


def soft_choice_score(pred: set[str], gold: set[str]) -> float:
    """``|pred| / |gold|`` if ``pred`` is a subset of ``gold``, else 0 (``gold`` non-empty).

    As the authors: an empty ``pred`` is a subset and scores 0 only because ``|pred| = 0``.
    """
    if not gold:
        raise ValueError("gold letter set is empty")
    return len(pred) / len(gold) if pred <= gold else 0.0


def gold_letter_set(solution: Any, options: Sequence[str] | None = None) -> set[str]:
    """The gold letters of a solution, read as the authors read it, checked: every piece a capital letter and,
    when ``options`` are given, among their labels. Raises ``ValueError`` saying what is wrong."""
    if not isinstance(solution, str) or not solution.strip():
        raise ValueError(f"missing solution (got {solution!r}); write '<answer>A,C</answer>'")
    gold = answer_set(solution)
    bad = sorted(piece for piece in gold if not _LETTER.fullmatch(piece))
    if bad:
        raise ValueError(f"solution {solution!r} has pieces that are not option letters: {bad}")
    valid = option_letters(options)
    if valid is not None and not gold <= valid:
        raise ValueError(
            f"solution {solution!r} names letters {sorted(gold - valid)} that are not among the options "
            f"{sorted(valid)}"
        )
    return gold


def _gold_sets(name: str, solution, options, problem_id, n: int) -> list[set[str]]:
    solutions = check_column(name, "solution", solution, n)
    golds = []
    for i in range(n):
        try:
            golds.append(gold_letter_set(solutions[i], options[i] if options is not None else None))
        except ValueError as err:
            raise RewardError(name, sample_name(i, problem_id), str(err)) from err
    return golds


@register_reward("tw_soft_mc")
def tw_soft_mc_reward(
    completions: Sequence[Any],
    solution: Sequence[Any] | None = None,
    problem_id: Sequence[Any] | None = None,
    options: Sequence[Sequence[str] | None] | None = None,
    **kwargs: Any,
) -> list[float]:
    """TW-GRPO soft reward as the authors compute it (module table). Columns: ``solution``; optional
    ``options`` (checks the gold letters), ``problem_id`` (names samples in errors)."""
    golds = _gold_sets("tw_soft_mc", solution, options, problem_id, len(completions))
    return [soft_choice_score(answer_set(completion_text(c)), g) for c, g in zip(completions, golds)]


@register_reward("tw_exact_mc")
def tw_exact_mc_reward(
    completions: Sequence[Any],
    solution: Sequence[Any] | None = None,
    problem_id: Sequence[Any] | None = None,
    options: Sequence[Sequence[str] | None] | None = None,
    **kwargs: Any,
) -> list[float]:
    """Binary multi-answer reward: 1 iff the authors' reading gives exactly the gold set (``origin_accuracy``:
    the soft reward with every value below 1 set to 0)."""
    golds = _gold_sets("tw_exact_mc", solution, options, problem_id, len(completions))
    return [1.0 if answer_set(completion_text(c)) == g else 0.0 for c, g in zip(completions, golds)]


@register_reward("tw_soft_mc_lenient")
def tw_soft_mc_lenient_reward(
    completions: Sequence[Any],
    solution: Sequence[Any] | None = None,
    problem_id: Sequence[Any] | None = None,
    options: Sequence[Sequence[str] | None] | None = None,
    **kwargs: Any,
) -> list[float]:
    """Soft reward on a lenient reading (module table): not the authors'; for diagnosing parsing losses."""
    golds = _gold_sets("tw_soft_mc_lenient", solution, options, problem_id, len(completions))
    rewards = []
    for i, (completion, gold) in enumerate(zip(completions, golds)):
        valid = option_letters(options[i]) if options is not None else None
        pred = extract_letter_set(extract_answer(completion_text(completion)), valid)
        rewards.append(soft_choice_score(pred, gold))
    return rewards


def eval_answer_text(output: str) -> str:
    """What the authors' CLEVRER evaluation reads from an output: the first ``<answer>`` content, else letters
    after "Answer:" (``"Answer: A, C"``), else ``""``."""
    match = _FIRST_ANSWER.search(output)
    if match:
        return match.group(1).strip()
    fallback = _EVAL_FALLBACK.search(output)
    return fallback.group(1).strip() if fallback else ""


def score_multi_answer(output: str, gold: set[str]) -> dict[str, Any]:
    """Score one evaluation output against a gold letter set as the authors' evaluation does.

    Returns ``prediction`` (the extracted text), ``partial`` (the soft score of its answer set) and ``strict``
    (``partial == 1``, i.e. exactly the gold set).
    """
    extracted = eval_answer_text(output)
    partial = soft_choice_score(answer_set(extracted), gold)
    return {"prediction": extracted, "partial": partial, "strict": partial == 1.0}
