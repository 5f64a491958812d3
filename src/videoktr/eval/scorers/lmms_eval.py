"""Official scorers for VideoMMMU and MMVU: lmms-eval's task utils (EvolvingLMMs-Lab/lmms-eval,
``lmms_eval/tasks/videommmu/utils.py`` with ``_task_utils/mmmu_mcq_utils.py`` ``parse_videommmu_multi_choice_response``,
and ``lmms_eval/tasks/mmvu/utils.py`` ``evaluate_with_rule_based``), as stored at the commits named in
``docs/evaluation.md``. They read the response (the answer-tag content when there is one).

VideoMMMU multiple choice: after stripping punctuation at both ends, the candidates are the letters written ``X.``
or ``X:``, else ``(X)``, else ``X `` (with spaces around the response), else - for responses of more than 5 words -
options whose text appears; several candidates -> the one found last. Open questions: key phrases after words like
"is", "so", "answer", plus every number in them, normalised (numbers rounded to 2 decimals, so ``12.0`` = 12);
correct if the gold number is among them or the gold text is contained in one. An **empty response is dropped**
from the denominator ("API Error"), for both kinds. No candidate = wrong.

MMVU (multiple choice): correct if the first standalone letter A-E (any case: the article "a" reads as A) is the
gold, or the gold letter appears as a word anywhere, or the gold option's text appears, or the gold letter appears
anywhere in upper-cased text together with any word of 3+ letters of the gold option. Items whose subject folder
is not in lmms-eval's subject -> discipline map are **not counted** (its aggregation skips them).
"""

from __future__ import annotations

import re
import string
from typing import Any

from videoktr.eval.benchmarks import BenchItem
from videoktr.eval.scorers.base import OFFICIAL, first_answer, result


def videommmu_multi_choice(response: str, all_choices: list[str], index2ans: dict[str, str]) -> str:
    """lmms-eval's ``parse_videommmu_multi_choice_response``."""
    if response == "API Error" or response == "":
        return "API Error"
    for char in [",", ".", "!", "?", ";", ":", "'"]:
        response = response.strip(char)
    response = " " + response + " "
    index_ans, with_brack, with_period, with_colon = True, False, False, False
    candidates = []
    for choice in all_choices:
        if f"{choice}." in response:
            candidates.append(choice)
            with_period = True
    for choice in all_choices:
        if f"{choice}:" in response:
            candidates.append(choice)
            with_colon = True
    if not candidates:
        for choice in all_choices:
            if f"({choice})" in response:
                candidates.append(choice)
                with_brack = True
    if not candidates:
        for choice in all_choices:
            if f"{choice} " in response:
                candidates.append(choice)
    if not candidates and len(response.split()) > 5:
        for index, ans in index2ans.items():
            if ans.lower() in response.lower():
                candidates.append(index)
                index_ans = False
    if not candidates:
        return "No Answer Found."
    if len(candidates) == 1:
        return candidates[0]
    if not index_ans:
        starts = [response.lower().rfind(index2ans[can].lower()) for can in candidates]
    elif with_period:
        starts = [response.rfind(f"{can}.") for can in candidates]
    elif with_colon:
        starts = [response.rfind(f"{can}:") for can in candidates]
    elif with_brack:
        starts = [response.rfind(f"({can})") for can in candidates]
    else:
        starts = [response.rfind(f" {can} ") for can in candidates]
    return candidates[starts.index(max(starts))]  # np.argmax: the first maximum


def _extract_numbers(text: str) -> list[str]:
    with_commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return with_commas + scientific + simple


def _normalize_str(text: str) -> list[Any]:
    text = text.strip()
    try:
        return [round(float(text.replace(",", "")), 2)]
    except ValueError:
        text = text.lower()
        return [" " + text, text + " "] if len(text) == 1 else [text]


_INDICATORS = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ", "are ",
               "in total ", "total ", "identify ", "recognize ", "calculated as ", "counted as ", "measured as ",
               "observed as ", "concluded as ", "found to be ", "equals ", "determined to be ", "number of ",
               "value is ", "adds up to ", "have ", "has "]  # fmt: skip


def videommmu_open(response: str) -> list[Any] | str:
    """lmms-eval's ``parse_open_response``: candidate strings and numbers, or ``"API Error"`` when empty."""
    if response == "API Error" or response == "":
        return "API Error"
    response = response.strip().strip(".").lower()
    sub_responses = re.split(r"\.\s(?=[A-Z])|\n", response)  # lower-cased first: only newlines split
    indicators = list(_INDICATORS)
    key_responses = []
    for index, resp in enumerate(sub_responses):
        if index == len(sub_responses) - 1:
            indicators.extend(["="])
        shortest = None
        for indicator in indicators:
            if indicator in resp:
                tail = resp.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in [":", ",", ".", "!", "?", ";", ":", "'"]:
            key_responses.append(shortest)
    if not key_responses:
        key_responses = [response]
    pred_list = list(key_responses)
    for resp in key_responses:
        pred_list.extend(_extract_numbers(resp))
    normalized = []
    for pred in pred_list:
        normalized.extend(_normalize_str(pred))
    return list(set(normalized))


def videommmu_eval_open(gold: str, preds: list[Any]) -> bool:
    """lmms-eval's ``eval_open``."""
    norm_answers = _normalize_str(gold)
    for pred in preds:
        if isinstance(pred, str):
            if any(isinstance(ans, str) and ans in pred for ans in norm_answers):
                return True
        elif pred in norm_answers:
            return True
    return False


@OFFICIAL.register("videommmu")
def videommmu(item: BenchItem, output: str) -> dict[str, Any]:
    response = first_answer(output)
    if item.problem_type == "multiple choice":
        raw = [str(o) for o in item.native.get("options") or [o.split(". ", 1)[-1] for o in item.options]]
        letters = [chr(ord("A") + k) for k in range(len(raw))]
        parsed = videommmu_multi_choice(response, letters, dict(zip(letters, raw)))
        if parsed == "API Error":
            return result(None, False, counted=False)
        extracted = parsed in letters
        return result(parsed if extracted else None, parsed == item.answer, extracted=extracted)
    preds = videommmu_open(response)
    if preds == "API Error":
        return result(None, False, counted=False)
    return result(response, videommmu_eval_open(item.answer, preds))


_MMVU_LETTER = re.compile(r"\b([A-E])\b", re.IGNORECASE)


def mmvu_rule_based(prediction: str, answer: str, choices: dict[str, str]) -> bool:
    """lmms-eval's MMVU ``evaluate_with_rule_based`` for a multiple-choice question."""
    pred_str, answer_str = str(prediction).strip(), str(answer).strip()
    letter = _MMVU_LETTER.search(pred_str)
    if letter and letter.group(1).upper() == answer_str.upper():
        return True
    if answer_str.upper() in pred_str.upper() and re.search(rf"\b{re.escape(answer_str)}\b", pred_str, re.I):
        return True
    if answer_str in choices:
        choice_text, pred_lower = choices[answer_str].strip().lower(), pred_str.lower()
        if choice_text in pred_lower:
            return True
        if answer_str.upper() in pred_str.upper():
            words = [w.strip(string.punctuation) for w in choice_text.split()]
            words = [w for w in words if len(w) > 2]
            if words and any(word in pred_lower for word in words):
                return True
    return False


@OFFICIAL.register("mmvu")
def mmvu(item: BenchItem, output: str) -> dict[str, Any]:
    response = first_answer(output)
    choices = item.native.get("choices") or {o[0]: o.split(". ", 1)[-1] for o in item.options or []}
    letter = _MMVU_LETTER.search(response)
    counted = item.categories.get("discipline", "unknown") != "unknown"
    correct = mmvu_rule_based(response, item.answer, choices)
    return result(letter.group(1).upper() if letter else None, correct, extracted=bool(letter) or correct,
                  counted=counted)  # fmt: skip
