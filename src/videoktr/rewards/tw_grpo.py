"""TW-GRPO data side (METHOD.md section 5): soft multi-choice reward and Question-Answer Inversion.

Soft multi-choice reward: with the gold answer a set of option letters G (``"<answer>A, C</answer>"``) and the
predicted set P read from the completion's ``<answer>``, the reward is ``|P| / |G|`` if P is a non-empty subset of
G, else 0. On single-answer data it equals the exact-letter reward.

Question-Answer Inversion turns a single-answer multiple-choice record into a multi-answer one: the question is
negated (``"did"`` -> ``"didn't"``, ``"is"`` -> ``"isn't"``, ...), the formerly correct option becomes the only wrong
one, and 1..n of the formerly wrong options (n = their number) become the correct set; options are shuffled and
relabelled A, B, ... A question with none of the auxiliary verbs below cannot be negated and is returned
unchanged (``qa_inverted: False``), like the records the coin flip leaves alone.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from videoktr.rewards.accuracy import GoldError, gold_answer
from videoktr.rewards.base import RewardError, check_column, completion_text, register_reward, sample_name
from videoktr.rewards.parsing import extract_answer, extract_letter_set, option_letters

# auxiliary -> negated form; the first one found in the question (as a whole word) is negated.
NEGATIONS = {
    "did": "didn't", "does": "doesn't", "do": "don't", "is": "isn't", "are": "aren't", "was": "wasn't",
    "were": "weren't", "can": "can't", "could": "couldn't", "will": "won't", "would": "wouldn't",
    "should": "shouldn't", "has": "hasn't", "have": "haven't", "had": "hadn't",
}  # fmt: skip
_AUXILIARY = re.compile(r"\b(" + "|".join(NEGATIONS) + r")\b", re.IGNORECASE)
_OPTION = re.compile(r"^\s*\(?([A-Z])[.):]\s*(.*)$", re.DOTALL)


def soft_choice_score(pred: set[str], gold: set[str]) -> float:
    """``|pred| / |gold|`` if ``pred`` is a non-empty subset of ``gold``, else 0 (``gold`` must be non-empty)."""
    if not gold:
        raise ValueError("gold letter set is empty")
    return len(pred) / len(gold) if pred and pred <= gold else 0.0


@register_reward("tw_soft_mc")
def tw_soft_mc_reward(
    completions: Sequence[Any],
    solution: Sequence[Any] | None = None,
    problem_id: Sequence[Any] | None = None,
    options: Sequence[Sequence[str] | None] | None = None,
    **kwargs: Any,
) -> list[float]:
    """TW-GRPO soft multi-choice reward per completion (columns: ``solution``; optional ``options``, ``problem_id``)."""
    n = len(completions)
    solutions = check_column("tw_soft_mc", "solution", solution, n)
    rewards = []
    for i, completion in enumerate(completions):
        try:
            valid = option_letters(options[i] if options is not None else None)
            gold = extract_letter_set(gold_answer(solutions[i]), valid)
        except (GoldError, ValueError) as err:
            raise RewardError("tw_soft_mc", sample_name(i, problem_id), str(err)) from err
        if not gold:
            raise RewardError(
                "tw_soft_mc", sample_name(i, problem_id), f"solution {solutions[i]!r} has no letter"
            )
        pred = extract_letter_set(extract_answer(completion_text(completion)), valid)
        rewards.append(soft_choice_score(pred, gold))
    return rewards


def negate_question(question: str) -> str | None:
    """Negate the first auxiliary verb (``"What did he do?"`` -> ``"What didn't he do?"``); ``None`` if none."""
    match = _AUXILIARY.search(question)
    if match is None:
        return None
    word = match.group(1)
    negated = NEGATIONS[word.lower()]
    if word[0].isupper():
        negated = negated[0].upper() + negated[1:]
    return question[: match.start()] + negated + question[match.end() :]


def _option_texts(options: Sequence[str], record_id: Any) -> dict[str, str]:
    texts = {}
    for option in options:
        match = _OPTION.match(option)
        if match is None:
            raise ValueError(f"record {record_id!r}: option {option!r} does not start with a letter label")
        texts[match.group(1)] = match.group(2).strip()
    return texts


def invert_question(record: dict[str, Any], rng: random.Random, probability: float = 0.5) -> dict[str, Any]:
    """Question-Answer Inversion of a single-answer multiple-choice record (Video-R1 schema), a new dict.

    With probability ``probability`` (and a negatable question) the result has the negated ``problem``, shuffled
    relabelled ``options``, ``solution`` ``"<answer>B, D</answer>"`` (sorted letters) and ``qa_inverted: True``;
    otherwise a copy with ``qa_inverted: False``. Raises ``ValueError`` for a record that is not single-answer
    multiple choice with at least two options.
    """
    record_id = record.get("problem_id")
    if record.get("problem_type") != "multiple choice" or not record.get("options"):
        raise ValueError(f"record {record_id!r}: QA inversion needs a multiple-choice record with options")
    texts = _option_texts(record["options"], record_id)
    gold = extract_letter_set(gold_answer(record["solution"]), set(texts))
    if len(gold) != 1 or len(texts) < 2:
        raise ValueError(f"record {record_id!r}: QA inversion needs one correct letter among >= 2 options")
    result = dict(record, qa_inverted=False)
    negated = negate_question(record["problem"])
    if rng.random() >= probability or negated is None:
        return result
    (old_correct,) = gold
    wrong = [letter for letter in sorted(texts) if letter != old_correct]
    kept = rng.sample(wrong, rng.randint(1, len(wrong)))
    pool = [(texts[old_correct], False)] + [(texts[letter], True) for letter in kept]
    rng.shuffle(pool)
    letters = [chr(ord("A") + k) for k in range(len(pool))]
    new_correct = [letter for letter, (_, is_correct) in zip(letters, pool) if is_correct]
    result.update(
        problem=negated,
        options=[f"{letter}. {text}" for letter, (text, _) in zip(letters, pool)],
        solution=f"<answer>{', '.join(new_correct)}</answer>",
        qa_inverted=True,
    )
    return result
