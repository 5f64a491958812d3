"""``--scorer lenient``: a forgiving reader for diagnosis (the project's original evaluation reader).

Not comparable with any published number. The answer is the content of the **last** ``<answer>`` pair (else the
whole stripped output); multiple choice accepts a leading letter in the forms ``B``, ``B.``, ``(B)``,
``B) text``, ``B: text``, ``Option B``, ``Answer: B``, ``The answer is B`` (upper case only: a lone ``a`` is an
article; letters outside the options count as none); an item with several gold letters (``A,C``) is correct when
the standalone capital letters of the answer are exactly that set; numerical uses the Video-R1 rule on that answer; OCR /
free-form use the training reward's scorer and are correct at score 1; regression is Video-R1's mean relative
accuracy. TempCompass yes/no accepts a leading ``yes`` / ``no`` in any case; caption matching accepts the label
(``Caption B``, ``B``, ``Option 2``, ``2``) or the caption text.

Every summary reports how many items only this reader accepts (``n_only_lenient``), whatever the chosen scorer.
"""

from __future__ import annotations

import re
from typing import Any

from videoktr.eval.benchmarks import BenchItem
from videoktr.eval.scorers.base import SCORERS, GoldError, regression, result
from videoktr.rewards.accuracy import GoldError as RewardGoldError
from videoktr.rewards.accuracy import score_answer
from videoktr.rewards.parsing import (
    extract_answer,
    extract_letter,
    extract_letter_set,
    option_letters,
    parse_number,
)

_WORD = re.compile(r"[A-Za-z]+")
# "Caption B", "Option 2", "(B)", "B.", "B:", "B" - but not the article in "A man ...".
_LABEL = re.compile(
    r"^(?:(?:caption|sentence|option)\s+\(?([A-Z0-9])\)?(?![A-Za-z0-9])|\(?([A-Z0-9])(?:\)|[.:]|$))",
    re.IGNORECASE,
)


def _yes_no(item: BenchItem, answer: str) -> dict[str, Any]:
    word = _WORD.match(answer.strip())
    reply = word.group(0).lower() if word else None
    reply = reply if reply in ("yes", "no") else None
    return result(reply, reply == item.answer)


def _caption(item: BenchItem, answer: str) -> dict[str, Any]:
    lines = item.native["question"].split("\n")[1:]
    labels = [line.split(": ", 1)[0].split()[-1] for line in lines]
    texts = [line.split(": ", 1)[1].strip().rstrip(".").lower() for line in lines]
    gold = lines.index(item.native["answer"])
    match = _LABEL.match(answer.strip())
    label = (match.group(1) or match.group(2)).upper() if match else None
    if label in labels:
        chosen = labels.index(label)
    else:
        found = [k for k, text in enumerate(texts) if text and text in answer.lower()]
        chosen = found[0] if len(found) == 1 else None
    return result(None if chosen is None else labels[chosen], chosen == gold)


@SCORERS.register("lenient")
def score_lenient(item: BenchItem, output: str) -> dict[str, Any]:
    """Score ``output`` for ``item`` with the lenient reader (see the module docstring)."""
    tagged = extract_answer(output)
    answer = tagged if tagged is not None else output.strip()
    task = item.native.get("task")
    if task == "yes_no":
        return _yes_no(item, answer)
    if task == "caption_matching":
        return _caption(item, answer)
    if item.problem_type == "regression":
        return regression(answer, item.answer)
    if item.problem_type == "multiple choice" and "," in item.answer:  # several gold letters (TW-GRPO)
        letters = extract_letter_set(answer, option_letters(item.options))
        gold = {letter.strip() for letter in item.answer.split(",")}
        return result(",".join(sorted(letters)) or None, letters == gold)
    if item.problem_type == "multiple choice":
        letter = extract_letter(answer, option_letters(item.options))
        return result(letter, letter is not None and letter == item.answer)
    readable = parse_number(answer) is not None if item.problem_type == "numerical" else bool(answer)
    if not readable:
        return result(None, False)
    try:
        score = score_answer(item.problem_type, answer, item.answer, item.options)
    except RewardGoldError as err:
        raise GoldError(str(err)) from err
    return result(answer, score >= 1.0, score=score)
