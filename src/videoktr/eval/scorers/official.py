"""``--scorer official``: each benchmark's own published scorer, known misreads included (documented, not fixed).

What a benchmark scorer reads: Video-Holmes' ``evaluate.py`` takes the ``<answer>`` tags itself (the last pair).
The other scorers read a bare ``response`` (their prompts ask for the answer alone); they get
:func:`~videoktr.eval.scorers.base.first_answer` of the output - the answer-tag content when there is one, else the
whole output (with ``--template benchmark`` there are no tags, so this is the raw output, as published).

- ``video-holmes`` (TencentARC/Video-Holmes ``evaluate.py``): a letter cascade over the answer: the first of
  ``"A "``, ``"A:"``, ``"[A"`` ... ``F`` found anywhere, else the first capital A-F found anywhere, else wrong.
  Misreads: ``C) A phone rings`` -> A; ``The answer is B`` -> B only because "answer" is lower case;
  ``Both A and C`` -> A. Every item is in the denominator.
- ``videomme`` (BradyFU/Video-MME ``eval_your_results.py``, ``extract_characters_regex``): removes a few answer
  prefixes (two pairs of them are fused by missing commas in the script, so ``The best option is`` and
  ``Best answer:`` are not removed), returns "" for more than 10 words without a capital A-D, else the first
  capital A-D anywhere. An empty extraction is **dropped from the denominator**.
- ``tempcompass`` (llyx97/TempCompass ``eval_multi-choice.py``, ``eval_yes_no.py``, ``eval_caption_matching.py``
  with ``--disable_llm``: unmatched = wrong): multi-choice: the whole answer string, a bare ``A``-``D``, or a
  response starting ``A.`` / ``A)``; yes/no: the lower-cased response starts with ``yes`` / ``no`` (so ``Not
  sure`` reads as no); caption matching: the response equals an option line, an option's sentence (also after
  ``X) ``), or its label with full stops removed.
- ``videommmu`` and ``mmvu``: lmms-eval's task utils (:mod:`videoktr.eval.scorers.lmms_eval`).
- ``video-r1``: Video-R1's own evaluation (:mod:`videoktr.eval.scorers.video_r1`).
"""

from __future__ import annotations

import re
from typing import Any

from videoktr.errors import UserError
from videoktr.eval.benchmarks import BenchItem
from videoktr.eval.scorers.base import OFFICIAL, SCORERS, first_answer, result
from videoktr.eval.scorers.video_r1 import score_video_r1

OFFICIAL.add("video-r1", score_video_r1)

_HOLMES_ANSWERS = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
_HOLMES_LETTERS = "ABCDEF"


@OFFICIAL.register("video-holmes")
def holmes(item: BenchItem, output: str) -> dict[str, Any]:
    matches = _HOLMES_ANSWERS.findall(output)
    choice = matches[-1].strip() if matches else output
    letter = next(
        (c for c in _HOLMES_LETTERS if f"{c} " in choice or f"{c}:" in choice or f"[{c}" in choice), None
    )
    if letter is None:
        letter = next((c for c in _HOLMES_LETTERS if c in choice), None)
    return result(letter, letter == item.answer)


# As written in eval_your_results.py: the missing commas fuse two pairs of prefixes into one string each.
_VIDEOMME_PREFIXES = [
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option isThe correct option is",  # noqa: ISC001 - reproduced on purpose
    "Best answer:Best option:",  # noqa: ISC001 - reproduced on purpose
]


def videomme_extract(response: str) -> str:
    """Video-MME's ``extract_characters_regex``."""
    s = response.strip()
    for prefix in _VIDEOMME_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCD]", s):
        return ""
    match = re.search(r"[ABCD]", s)
    return "" if match is None else match[0]


@OFFICIAL.register("videomme")
def videomme(item: BenchItem, output: str) -> dict[str, Any]:
    letter = videomme_extract(first_answer(output))
    if letter == "":
        return result(None, False, counted=False)
    return result(letter, letter == item.answer)


def _tc_multi_choice(prediction: str, answer: str) -> str | None:
    if prediction == answer:
        return answer[0]
    if prediction in ["A", "B", "C", "D"]:
        return prediction
    if any(prediction.startswith(prefix) for prefix in ["A.", "B.", "C.", "D."]):
        return prediction.split(".")[0]
    if any(prediction.startswith(prefix) for prefix in ["A)", "B)", "C)", "D)"]):
        return prediction.split(")")[0]
    return None


def _tc_yes_no(prediction: str, answer: str) -> str | None:
    lowered = prediction.lower()
    if lowered.startswith("yes"):
        return "yes"
    if lowered.startswith("no"):
        return "no"
    return None


def _tc_caption_matching(prediction: str, question: str) -> str | None:
    option_strs = question.split("\n")[1:]
    option_sents = [opt.split(": ")[1] for opt in option_strs]
    option_inds = [opt.split(": ")[0] for opt in option_strs]
    chosen = None
    for option_str in option_strs:
        if option_str == prediction:
            chosen = option_str
    for option_sent in option_sents:
        if option_sent == prediction or (") " in prediction and option_sent == prediction.split(") ")[1]):
            chosen = option_sent
    for option_ind in option_inds:
        if option_ind == prediction or option_ind == prediction.replace(".", ""):
            chosen = option_ind
    return chosen


@OFFICIAL.register("tempcompass")
def tempcompass(item: BenchItem, output: str) -> dict[str, Any]:
    task, answer = item.native.get("task"), item.native.get("answer")
    if task is None or answer is None:
        raise UserError(f"tempcompass item {item.id!r} was not loaded by the tempcompass loader")
    prediction = first_answer(output).replace("</s>", "")
    if task == "multi-choice":
        letter = _tc_multi_choice(prediction, answer)
        correct = letter is not None and (prediction == answer or letter == answer[0])
        return result(letter, correct)
    if task == "yes_no":
        reply = _tc_yes_no(prediction, answer)
        return result(reply, reply is not None and reply == answer)
    chosen = _tc_caption_matching(prediction, item.native["question"])
    correct = chosen is not None and chosen in (answer, answer.split(":")[0], answer.split(": ")[1])
    return result(chosen, correct)


@SCORERS.register("official")
def score_official(item: BenchItem, output: str) -> dict[str, Any]:
    """Score ``output`` with the scorer published by ``item``'s benchmark (see :data:`OFFICIAL`)."""
    return OFFICIAL.get(item.benchmark)(item, output)
