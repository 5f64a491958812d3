"""Parsing a model's answer: the ``<answer>`` content, option letters, numbers.

Two callers, two fallbacks (both documented, both explicit arguments):
- training rewards take the content of the *last* ``<answer>...</answer>`` and do not fall back: a completion
  without the tags has no answer, which is the model's fault and scores 0 (as in the authors' training code);
- evaluation falls back to the whole text when there are no tags (as the authors' ``eval_bench.py`` does), and
  flags a prediction from which no letter/number can be read as ``extracted: false``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# A leading option letter: "B", "B.", "(B)", "B) text", "B: text", "Option B", "Answer: B", "The answer is B".
_LEADING_LETTER = re.compile(
    r"^(?i:the\s+(?:correct\s+)?answer\s+is|answer|option)?\s*[:：]?\s*\(?([A-Z])\)?(?=$|[\s.,:;)\]])"
)
_STANDALONE_LETTER = re.compile(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])")
_OPTION_LABEL = re.compile(r"^\s*\(?([A-Z])[.):]")


def extract_answer(text: str, fallback_to_text: bool = False) -> str | None:
    """Content of the last ``<answer>...</answer>`` (stripped).

    With no complete tag pair: ``None``, or the whole stripped text when ``fallback_to_text`` (evaluation).
    """
    matches = _ANSWER.findall(text)
    if matches:
        return matches[-1].strip()
    return text.strip() if fallback_to_text else None


def option_letters(options: Iterable[str] | None) -> set[str] | None:
    """Letters labelling options like ``["A. cat", "B. dog"]`` -> ``{"A", "B"}``; ``None`` when no options."""
    if not options:
        return None
    letters = set()
    for option in options:
        match = _OPTION_LABEL.match(option)
        if match is None:
            raise ValueError(f"option {option!r} does not start with a letter label like 'A.'")
        letters.add(match.group(1))
    return letters


def extract_letter(answer: str | None, valid: set[str] | None = None) -> str | None:
    """The single option letter an answer gives, or ``None`` when it gives none.

    Accepts ``"B"``, ``"B."``, ``"(B)"``, ``"B. the dog"``, ``"Option B"``, ``"The answer is B"``. Letters must be
    upper case (a lone ``"a"`` is an article). A letter outside ``valid`` (when given) counts as none.
    """
    if answer is None:
        return None
    match = _LEADING_LETTER.match(answer.strip())
    if match is None:
        return None
    letter = match.group(1)
    if valid is not None and letter not in valid:
        return None
    return letter


def extract_letter_set(answer: str | None, valid: set[str] | None = None) -> set[str]:
    """All standalone upper-case letters in an answer like ``"A, C"`` or ``"A and C"`` (TW-GRPO multi-choice).

    Letters outside ``valid`` (when given) are dropped; an answer with none gives the empty set.
    """
    if answer is None:
        return set()
    letters = set(_STANDALONE_LETTER.findall(answer))
    return letters & valid if valid is not None else letters


def has_decimal_or_comma(text: str) -> bool:
    """Whether a numeric answer is written with a decimal point or a comma (the Video-R1 numerical rule)."""
    return "." in text or "," in text


def parse_number(text: str | None) -> float | None:
    """``float`` of an answer with commas removed (``"1,000"`` -> 1000.0); ``None`` when it is not a number."""
    if text is None:
        return None
    cleaned = text.strip().replace(",", "")
    if not cleaned:
        return None
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None
