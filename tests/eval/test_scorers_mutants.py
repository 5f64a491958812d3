"""Tests written to kill mutants that survived `scripts/mutation.sh eval/scoring` (docs/testing.md): the regression
score (MRA), TW-GRPO's partial credit, the scorer checks and lmms-eval's open-answer reading, each worked by hand.
"""

from dataclasses import replace

import pytest

from videoktr.errors import UserError
from videoktr.eval.benchmarks import BenchItem
from videoktr.eval.scorers import check_scorer, no_rule_warning
from videoktr.eval.scorers.base import GoldError, mean_relative_accuracy, regression
from videoktr.eval.scorers.lmms_eval import (
    _extract_numbers,
    _normalize_str,
    videommmu_eval_open,
    videommmu_open,
)
from videoktr.eval.scorers.official import _tc_multi_choice, videomme_extract
from videoktr.eval.scorers.tw_grpo import multi_answer_fields
from videoktr.eval.scoring import write_summary


@pytest.mark.parametrize(
    "pred, target, mra",
    [
        (10.0, 10.0, 1.0),  # relative error 0 < 1 - t for all 10 thresholds 0.50 ... 0.95
        (10.6, 10.0, 0.9),  # 0.06: below 1 - t for t <= 0.90 (9 of 10), not below 0.05
        (11.2, 10.0, 0.8),  # 0.12: t <= 0.85 -> 8 of 10
        (14.9, 10.0, 0.1),  # 0.49: only t = 0.50 (0.49 < 0.50)
        (15.0, 10.0, 0.0),  # 0.50 is not < 0.50: strict
        (0.0, 0.0, 1.0),  # 0 / (0 + 1e-8) = 0
        (1.0, 0.0, 0.0),  # 1 / 1e-8
    ],
)
def test_mean_relative_accuracy(pred, target, mra):
    assert mean_relative_accuracy(pred, target) == pytest.approx(mra, abs=1e-6)


def test_regression_fields():
    exact = regression("10", "10")
    assert (exact["correct"], exact["score"], exact["extracted"], exact["metric"]) == (True, 1.0, True, "mra")
    partial = regression("10.6", "10")  # MRA 0.9 is a score, not a correct answer
    assert (partial["correct"], partial["score"], partial["metric"]) == (False, pytest.approx(0.9), "mra")
    unreadable = regression("ten", "10")
    assert (unreadable["correct"], unreadable["score"], unreadable["extracted"], unreadable["metric"]) == (
        False,
        0.0,
        False,
        "mra",
    )
    with pytest.raises(GoldError) as info:
        regression("1", "n/a")
    assert str(info.value) == "the gold answer 'n/a' of a regression item is not a number"


def _mc(answer: str) -> BenchItem:
    return BenchItem("q1", "?", ["A. a", "B. b", "C. c", "D. d"], answer, "multiple choice", "v.mp4")


def test_multi_answer_partial_credit():
    # gold {A, C}: {A} is a subset -> partial 1/2, not strictly correct; {A, C} -> 1, correct; {A, B} -> 0.
    half = multi_answer_fields(_mc("A,C"), "<answer>A</answer>")
    assert (half["prediction"], half["correct"], half["score"], half["partial_credit"]) == (
        "A",
        False,
        0.5,
        True,
    )
    full = multi_answer_fields(_mc("A,C"), "<answer>A, C</answer>")
    assert (full["correct"], full["score"]) == (True, 1.0)
    wrong = multi_answer_fields(_mc("A,C"), "<answer>A,B</answer>")
    assert (wrong["correct"], wrong["score"]) == (False, 0.0)
    none = multi_answer_fields(_mc("A,C"), "no idea")
    assert (none["prediction"], none["correct"], none["score"]) == (None, False, 0.0)
    with pytest.raises(GoldError) as info:
        multi_answer_fields(_mc("E"), "<answer>E</answer>")
    assert "['E'] that are not among the options" in str(info.value)


def test_check_scorer_messages():
    with pytest.raises(UserError) as info:
        check_scorer("nope", [])
    assert str(info.value).startswith("unknown scorer 'nope'; valid: ")
    item = replace(_mc("A"), benchmark="my-bench")
    with pytest.raises(UserError) as info:
        check_scorer("official", [item])
    message = str(info.value)
    assert message.startswith("no official scorer for my-bench; official scorers exist for ")
    assert message.endswith(": use --scorer video-r1 or lenient")
    check_scorer("video-r1", [item])  # any benchmark


def test_lmms_eval_number_and_string_normalisation():
    assert _extract_numbers("-12 and 3.5") == ["-12", "3.5"]
    # with commas as one number; the simple pattern still finds the last group (lmms-eval does the same)
    assert _extract_numbers("1,234,567") == ["1,234,567", "567"]
    assert _normalize_str(" 12.0 ") == [12.0]  # numbers compare as floats rounded to 2 decimals
    assert _normalize_str("1,234.567") == [1234.57]
    assert _normalize_str("A") == [" a", "a "]  # a single letter must stand alone
    assert _normalize_str(" Cat ") == ["cat"]


def test_videommmu_open_reads_key_phrases_and_numbers():
    assert videommmu_open("") == "API Error"
    # "answer " -> "is 42", "is " -> "42": the shortest tail is kept; "42" normalises to 42.0
    assert videommmu_open("The answer is 42.") == [42.0]
    # line 1: "so " / "is " -> "7"; last line also splits on "=": "12 apples"; numbers 7 and 12 added
    assert set(videommmu_open("so it is 7\nthe total = 12 apples")) == {7.0, 12.0, "12 apples"}
    assert videommmu_eval_open("42", [42.0]) is True
    assert videommmu_eval_open("cat", ["a black cat"]) is True  # gold text inside a candidate
    assert videommmu_eval_open("cat", [3.0, "dog"]) is False
    assert videommmu_eval_open("3", ["3 apples"]) is False  # gold number 3.0 vs a string: no match


def test_no_rule_warning_counts_the_items_video_r1_cannot_score():
    items = [
        _mc("A"),
        replace(_mc("x"), problem_type="yes/no", options=None),
        replace(_mc("x"), problem_type="yes/no", options=None),
        replace(_mc("x"), problem_type="caption matching", options=None),
    ]
    assert no_rule_warning("video-r1", items) == (
        "3 of 4 items are caption matching, yes/no, which Video-R1's evaluation scores 0 (it has no rule for them); "
        "--scorer official or lenient reads them"
    )
    assert no_rule_warning("lenient", items) is None  # only video-r1 lacks rules
    assert no_rule_warning("video-r1", items[:1]) is None


def test_write_summary_creates_folders_and_keeps_unicode(tmp_path):
    path = write_summary({"accuracy": 0.5, "note": "déjà vu"}, tmp_path / "a" / "b" / "summary.json")
    assert path == tmp_path / "a" / "b" / "summary.json"
    assert path.read_text(encoding="utf-8") == '{\n  "accuracy": 0.5,\n  "note": "déjà vu"\n}\n'


@pytest.mark.parametrize(
    "prediction, answer, letter",
    [
        ("B. dog", "B. dog", "B"),  # the answer string itself -> its letter
        ("C", "B. dog", "C"),
        ("A. cat", "B. dog", "A"),
        ("D.cat", "B. dog", "D"),
        ("B) dog", "A. cat", "B"),
        ("E", "A. cat", None),  # only A-D
        ("cat", "A. cat", None),
    ],
)
def test_tempcompass_multi_choice_reading(prediction, answer, letter):
    assert _tc_multi_choice(prediction, answer) == letter


def test_videomme_removes_its_prefixes_before_reading_the_letter():
    # "Best answer:Best option:" holds a capital B: read before removal, every such answer would be B.
    assert videomme_extract("Best answer:Best option: C") == "C"
    assert videomme_extract("  (D) because  ") == "D"
    assert videomme_extract("no letter here") == ""
