"""Tests written to kill mutants that survived `scripts/mutation.sh eval/scoring` (docs/testing.md): the regression
score (MRA), TW-GRPO's partial credit, the scorer checks and lmms-eval's open-answer reading, each worked by hand;
then every field and note of a summary, the prediction-file formats and messages, and the reference scorers' corner
cases (lmms-eval's candidate tie-breaking and key phrases, MMVU's key words, TempCompass' forms), each as the
upstream code at the commits named in docs/evaluation.md behaves.
"""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from videoktr.errors import UserError
from videoktr.eval.benchmarks import BenchItem, load_benchmark
from videoktr.eval.scorers import check_scorer, no_rule_warning, score_item
from videoktr.eval.scorers.base import GoldError, mean_relative_accuracy, normalize_number, regression
from videoktr.eval.scorers.lmms_eval import (
    _extract_numbers,
    _normalize_str,
    mmvu_rule_based,
    videommmu_eval_open,
    videommmu_multi_choice,
    videommmu_open,
)
from videoktr.eval.scorers.official import _tc_multi_choice, videomme_extract
from videoktr.eval.scorers.tw_grpo import multi_answer_fields
from videoktr.eval.scoring import (
    prediction_record,
    read_predictions,
    score_predictions,
    summarize,
    write_summary,
)


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


# --- Session of 2026-12-07: the survivors of `scripts/mutation.sh eval/scoring` (docs/testing.md) ---------------

FIXTURES = Path(__file__).parents[1] / "fixtures" / "benchmarks"
MC = BenchItem("q", "?", ["A. x", "B. y", "C. z"], "B", "multiple choice", "v.mp4", {"k": "v"}, "video-r1")
REG = BenchItem("r", "?", None, "10", "regression", "v.mp4", {"k": "v"}, "video-r1")


def _fixture_item(bench, file, item_id):
    return {i.id: i for i in load_benchmark(bench, FIXTURES / file)}[item_id]


def test_prediction_record_fields_exactly():
    assert prediction_record(MC, "<answer>B</answer>") == {
        "id": "q", "benchmark": "video-r1", "problem_type": "multiple choice", "answer": "B",
        "categories": {"k": "v"}, "output": "<answer>B</answer>", "error": None, "scorer": "video-r1",
        "prediction": "B", "extracted": True, "correct": True, "score": 1.0, "counted": True, "metric": "accuracy",
        "no_rule": False, "lenient_correct": True,
    }  # fmt: skip


def test_a_generation_error_is_wrong_even_with_an_output():
    # an error recorded next to a (partial) output is still a failed generation: wrong, counted, nothing read
    record = prediction_record(MC, "<answer>B</answer>", error="timeout")
    assert (record["error"], record["prediction"], record["extracted"], record["correct"]) == (
        "timeout", None, False, False,
    )  # fmt: skip
    assert (record["counted"], record["lenient_correct"]) == (True, False)
    # a failed regression item keeps its metric: it is averaged with the MRAs (as 0), not with the accuracies
    assert score_item(REG, None, "video-r1") == {
        "prediction": None, "extracted": False, "correct": False, "score": 0.0, "counted": True, "metric": "mra",
        "no_rule": False, "lenient_correct": False,
    }  # fmt: skip


def test_unusable_gold_answer_names_the_item():
    item = BenchItem("n7", "?", None, "n/a", "numerical", "v.mp4", {}, "video-r1")
    with pytest.raises(UserError) as info:
        score_item(item, "<answer>3</answer>", "video-r1")
    assert str(info.value) == (
        "video-r1 item 'n7' cannot be scored: the gold answer 'n/a' of a numerical item is not a number"
    )


def test_video_r1_without_a_rule_keeps_the_answer_but_reads_nothing():
    ocr = BenchItem("o", "?", None, "the red ball", "OCR", "v.mp4", {}, "video-r1")
    fields = score_item(ocr, "<answer> the red ball </answer>", "video-r1")
    # first_answer: the tag content, stripped; Video-R1 has no OCR rule: not extracted, 0, flagged
    assert (fields["prediction"], fields["extracted"], fields["correct"], fields["no_rule"]) == (
        "the red ball", False, False, True,
    )  # fmt: skip


# Hand-written records, each leaving out a field that summarize() must default (metric -> "accuracy",
# counted -> True, categories -> none, benchmark -> "", error -> none, partial_credit -> false).
R1 = {"benchmark": "videommmu", "problem_type": "multiple choice", "answer": "A,C", "categories": {"track": "T1"},
      "correct": True, "score": 1.0, "extracted": True, "error": None, "lenient_correct": True}  # fmt: skip
R2 = {"problem_type": "multiple choice", "answer": "A,B", "categories": {"track": "T1"}, "correct": False,
      "score": 0.25, "extracted": False, "metric": "accuracy", "counted": True, "lenient_correct": True}  # fmt: skip
R3 = {"benchmark": "videommmu", "problem_type": "free-form", "answer": "yes, it does", "categories": {"track": "T2"},
      "correct": False, "score": 0.0, "extracted": False, "error": "OOM", "no_rule": True}  # fmt: skip
R4 = {"benchmark": "videommmu", "problem_type": "multiple choice", "answer": "D", "categories": {"track": "T2"},
      "correct": False, "score": 0.0, "extracted": True, "counted": False}  # fmt: skip
R5 = {"benchmark": "videommmu", "problem_type": "multiple choice", "answer": "C", "correct": True, "score": 1.0,
      "extracted": True}  # fmt: skip
R6 = {"benchmark": "videommmu", "problem_type": "regression", "answer": "10", "metric": "mra", "correct": False,
      "score": 0.4, "extracted": True}  # fmt: skip
R7 = {"benchmark": "videommmu", "problem_type": "regression", "answer": "10", "metric": "mra", "counted": False,
      "correct": False, "score": 0.9, "extracted": True}  # fmt: skip


def test_summary_of_hand_written_records():
    summary = summarize([R1, R2, R3, R4, R5, R6, R7], "official", n_items=9)
    # accuracy records R1-R5; R4 is not counted (dropped) -> counted R1, R2, R3, R5: 2 correct of 4 = 0.5;
    # mean score (1 + 0.25 + 0 + 1) / 4 = 0.5625. Not extracted: R2 (R3 did not extract either, but it failed:
    # an error, counted apart). Only lenient: R2 (lenient_correct, not correct). Regression: R6 only (R7 is not
    # counted): 1 item, MRA 0.4. Categories over the counted records: track/T1 = R1 + R2: 1 of 2 correct, scores
    # 1 + 0.25 = 1.25 -> mean 0.625; track/T2 = R3: 0 of 1; R5 has no categories. Tables: two benchmarks
    # (videommmu and "" for R2) -> none. Notes: VideoMMMU's, then the official scorer's for videommmu, then the
    # no-rule note (R3), then the several-letters note: R1 and R2 (multiple choice with a comma; R3's comma is not
    # a multiple-choice answer, R5 has one letter, R4 is not counted).
    assert summary == {
        "scorer": "official", "accuracy": 0.5, "mean_score": 0.5625, "partial_credit": False, "n_scored": 4,
        "n_correct": 2, "n_dropped": 1, "n_not_extracted": 1, "n_errors": 1, "n_no_rule": 1, "n_only_lenient": 1,
        "n_regression": 1, "mean_mra": 0.4, "n_items": 9,
        "by_category": {"track/T1": 0.5, "track/T2": 0.0},
        "by_category_mean_score": {"track/T1": 0.625, "track/T2": 0.0},
        "category_counts": {"track/T1": 2, "track/T2": 1},
        "tables": {},
        "notes": [
            "lmms-eval reports each VideoMMMU track on its own, with domains and subjects inside (tables "
            "track/...); 'accuracy' and by_category pool the tracks and are not its figures",
            "lmms-eval leaves empty answers out of the denominator (n_dropped)",
            "1 items have a problem type Video-R1's evaluation has no rule for; they score 0 as there (use "
            "--scorer official or lenient to read them)",
            "2 items have several correct letters; scorer 'official' compares them as written: use --scorer "
            "tw-grpo for TW-GRPO's strict accuracy and partial credit",
        ],
    }  # fmt: skip


def test_summary_of_nothing():
    # no record: every rate is 0 (not a division by zero), no regression fields, no note
    assert summarize([], "video-r1") == {
        "scorer": "video-r1", "accuracy": 0.0, "mean_score": 0.0, "partial_credit": False, "n_scored": 0,
        "n_correct": 0, "n_dropped": 0, "n_not_extracted": 0, "n_errors": 0, "n_no_rule": 0, "n_only_lenient": 0,
        "by_category": {}, "by_category_mean_score": {}, "category_counts": {}, "tables": {}, "notes": [],
    }  # fmt: skip


def test_summary_with_partial_credit_has_no_several_letters_note():
    half = {"benchmark": "clevrer", "problem_type": "multiple choice", "answer": "A,C", "correct": False,
            "score": 0.5, "extracted": True, "partial_credit": True}  # fmt: skip
    full = {**half, "correct": True, "score": 1.0}
    summary = summarize([half, full], "tw-grpo")
    # strict accuracy 1/2, partial credit (0.5 + 1) / 2 = 0.75; the tw-grpo scorer already reads several letters
    assert (summary["accuracy"], summary["mean_score"], summary["partial_credit"]) == (0.5, 0.75, True)
    assert summary["notes"] == []


def test_read_predictions_formats_and_errors(tmp_path):
    results = tmp_path / "video_r1.json"  # Video-R1's eval output keeps the records under "results"
    results.write_text('{"results": [{"problem_id": 7, "output": "<answer>A</answer>"}], "accuracy": 1.0}')
    assert read_predictions(results) == {"7": {"problem_id": 7, "output": "<answer>A</answer>"}}
    other = tmp_path / "other.json"
    other.write_text('{"predictions": []}')
    with pytest.raises(UserError) as info:
        read_predictions(other)
    assert str(info.value) == f"{other}: expected JSONL lines or a JSON list of predictions"

    # a videoktr predictions file starts with its run header, which is skipped (only on line 1)
    headed = tmp_path / "headed.jsonl"
    headed.write_text(
        '{"videoktr_eval_run": {"model": "m"}}\n{"id": "a", "output": "A"}\n{"id": "b", "error": "OOM"}\n'
    )
    assert read_predictions(headed) == {"a": {"id": "a", "output": "A"}, "b": {"id": "b", "error": "OOM"}}

    bad = tmp_path / "bad.json"
    for content, message in [
        ('[{"id": "a", "output": "A"}, 3]', "prediction #2 is not a JSON object"),
        ('[{"id": "a"}]', "prediction 'a' needs a string 'output' (or an 'error')"),
        (
            '[{"output": "A"}]',
            "prediction #1 has no id; give each line one of id, problem_id, question_id, Question ID",
        ),
    ]:
        bad.write_text(content)
        with pytest.raises(UserError) as info:
            read_predictions(bad)
        assert str(info.value) == f"{bad}: {message}"


def test_unknown_prediction_ids_are_listed_up_to_five():
    items = load_benchmark("videomme", FIXTURES / "videomme.json")
    predictions = {f"u{k}": {"id": f"u{k}", "output": "A"} for k in range(1, 8)}
    with pytest.raises(UserError) as info:
        score_predictions(items, predictions)
    assert str(info.value) == (
        "7 prediction id(s) are not in the benchmark file (e.g. 'u1', 'u2', 'u3', 'u4', 'u5'); check --data"
    )


def test_write_summary_into_an_existing_folder(tmp_path):
    write_summary({"a": 1}, tmp_path / "out" / "one.json")
    path = write_summary({"b": 2}, tmp_path / "out" / "two.json")  # the folder exists now: no error
    assert path.read_text(encoding="utf-8") == '{\n  "b": 2\n}\n'


def test_check_scorer_messages_list_the_names():
    with pytest.raises(UserError) as info:
        check_scorer("nope", [])
    assert str(info.value) == "unknown scorer 'nope'; valid: lenient, official, tw-grpo, video-r1"
    items = [replace(_mc("A"), benchmark="my-bench"), replace(_mc("A"), benchmark="a-bench")]
    with pytest.raises(UserError) as info:
        check_scorer("official", items)
    assert str(info.value) == (
        "no official scorer for a-bench, my-bench; official scorers exist for clevrer, mmvu, nextgqa, tempcompass, "
        "video-holmes, video-r1, videomme, videommmu: use --scorer video-r1 or lenient"
    )


def test_numbers_with_thousands_separators():
    assert normalize_number("1,234.5") == 1234.5  # commas removed, as Video-R1 does
    assert normalize_number("12 apples") is None
    assert regression("ten", "10")["prediction"] == "ten"  # what was read is kept, even when it is no number


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_mean_relative_accuracy_is_float32_whatever_the_default_dtype(default):
    # Relative errors exactly on a threshold: |0.9 - 1| / 1 = 0.1 = 1 - 0.90; |0.15 - 0.3| / 0.3 = 0.5 = 1 - 0.50;
    # |5.5 - 10| / 10 = 0.45 = 1 - 0.55. "Below" is strict, so in exact arithmetic (and in Video-R1's float32,
    # where both sides round alike: 0.100000024 vs 0.100000024, 0.5 vs 0.5, 0.45 vs 0.45) the threshold on the
    # boundary fails: 8/10 (0.50 ... 0.85), 0/10, 1/10 (0.50). Any one of the three tensors built in float64
    # instead (torch's default dtype here) rounds differently and passes one threshold more.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        assert mean_relative_accuracy(0.9, 1.0) == pytest.approx(0.8, abs=1e-6)
        assert mean_relative_accuracy(0.15, 0.3) == 0.0
        assert mean_relative_accuracy(5.5, 10.0) == pytest.approx(0.1, abs=1e-6)
    finally:
        torch.set_default_dtype(previous)


def test_lenient_yes_no_reads_only_yes_or_no():
    item = _fixture_item("tempcompass", "tempcompass/yes_no.json", "1034419625/action/yes_no/0")  # gold yes
    assert score_item(item, "Yes, he is.", "lenient")["prediction"] == "yes"
    maybe = score_item(item, "Maybe", "lenient")
    assert (maybe["prediction"], maybe["extracted"], maybe["correct"]) == (None, False, False)


# Caption matching with ": " inside a caption and a caption ending in a capital X (the lenient reader splits each
# line at its first ": " and drops only the final full stop of the caption).
CAPTIONS = BenchItem(
    "c", "?", None, "Caption A: The score: 2 to 1.", "free-form", "v.mp4", {}, "tempcompass",
    {"task": "caption_matching", "question": "Which caption?\nCaption A: The score: 2 to 1.\nCaption B: A car, a Model X.",
     "answer": "Caption A: The score: 2 to 1."},
)  # fmt: skip


@pytest.mark.parametrize(
    "answer, prediction, correct",
    [
        ("Caption A", "A", True),  # the label
        ("the score: 2 to 1", "A", True),  # caption A's text (lower case, no full stop) inside the answer
        ("A car, a Model X", "B", False),  # caption B's text without its final full stop
        ("The score", None, False),  # part of caption A, before its inner ": ": not the caption
        ("2 to 1", None, False),  # part of caption A, after its inner ": "
        ("A car, a Model Y", None, False),  # only "X." is dropped from caption B, not the X
    ],
)
def test_lenient_caption_matching_reads_whole_captions(answer, prediction, correct):
    fields = score_item(CAPTIONS, answer, "lenient")
    assert (fields["prediction"], fields["correct"]) == (prediction, correct)


def test_videomme_long_answers_keep_their_letter_and_prefixes_go_in_order():
    # 11 words with a capital C: the > 10 words rule only drops answers with no capital A-D
    assert videomme_extract("C is it the one I trust most for this now") == "C"
    # "The answer is" is removed first; what is left holds the fused prefix "Best answer:Best option:", removed
    # next, so the B of "Best" is gone before the search: C
    assert videomme_extract("Best answer:The answer isBest option: C") == "C"


@pytest.mark.parametrize(
    "prediction, letter",
    [
        ("A", "A"),
        ("D", "D"),
        ("A. cat", "A"),
        ("C. fox", "C"),
        ("A) cat", "A"),
        ("C) fox", "C"),
        ("D) eel", "D"),
    ],
)
def test_tempcompass_reads_every_letter_in_every_form(prediction, letter):
    # gold B: any other letter is read (then judged wrong)
    assert _tc_multi_choice(prediction, "B. dog") == letter


def test_tempcompass_caption_matching_official():
    item = _fixture_item(
        "tempcompass", "tempcompass/caption_matching.json", "1034419625/action/caption_matching/1"
    )  # gold "Caption A: A man is dunking a basketball."
    # the sentence after "X) " is matched (eval_rule's split(') ')[1])
    assert score_item(item, "A) A man is dunking a basketball.", "official")["correct"] is True
    unmatched = score_item(item, "Maybe the first", "official")  # eval_rule's "fail": nothing chosen
    assert (unmatched["prediction"], unmatched["extracted"], unmatched["correct"]) == (None, False, False)


# lmms-eval's parse_videommmu_multi_choice_response on the options A Baroque, B Cubism, C Impressionism, D Surrealism
VMMMU = (["A", "B", "C", "D"], {"A": "Baroque", "B": "Cubism", "C": "Impressionism", "D": "Surrealism"})


@pytest.mark.parametrize(
    "response, parsed",
    [
        ("API Error", "API Error"),  # a failed API call, like an empty response: dropped from the denominator
        ("CX", "No Answer Found."),  # only , . ! ? ; : ' are stripped at the ends: " CX " holds no candidate
        ("C,", "C"),  # "," stripped -> " C " -> "C "
        ("C. Impressionism", "C"),
        ("I think it is Impressionism", "No Answer Found."),  # 5 words: option text is read only beyond 5
        ("I think it is probably Impressionism", "C"),  # 6 words: option text
        ("C is my pick, not the Baroque style", "C"),  # a letter was found: option text is not read
        # several candidates: the kind found decides how they are located; the last one in the response wins
        ("A. Impressionism or C. Baroque", "C"),  # "X." candidates: by the last "X.", not by option text
        ("A. maybe C. no, A. final answer", "A"),  # the last "A." comes after "C."
        ("A: Impressionism or C: Baroque", "C"),  # "X:" candidates
        ("A: maybe C: no, A: final answer", "A"),
        ("(B) or (C)", "C"),  # "(X)" candidates
        ("(A) maybe (C) no, (A) final", "A"),
        ("B C", "C"),  # "X " candidates, located as " X "
        ("A maybe C no, A final", "A"),
        ("typeA or typeB", "A"),  # "A " and "B " but no " A " / " B ": both at -1, np.argmax takes the first
        ("I like Baroque more than Impressionism today", "C"),  # option texts: the one found last
        ("Baroque, then Impressionism, then Baroque again", "A"),
    ],
)
def test_videommmu_multi_choice_candidates(response, parsed):
    assert videommmu_multi_choice(response, *VMMMU) == parsed


@pytest.mark.parametrize(
    "response, parsed",
    [
        ("API Error", "API Error"),
        ("The answer is cat.", ["cat"]),  # the final full stop is stripped before the key phrase is cut
        ("The value is X", [" x", "x "]),  # a single letter must stand alone; only full stops are stripped
        ("x is 5. y is 7", [7.0]),  # lower-cased before splitting on ". " + capital: one sentence, last "is "
        ("x = 5\ny is 7", [7.0]),  # "=" is a key only in the last line
        ("x is 3 and y is 4", [4.0]),  # the text after the *last* "is "
    ],
)
def test_videommmu_open_key_phrases(response, parsed):
    got = videommmu_open(response)
    assert (sorted(got, key=str) if isinstance(got, list) else got) == parsed


@pytest.mark.parametrize("mark", [",", ".", "!", "?", ";", "'"])
def test_videommmu_open_ignores_a_lone_punctuation_key(mark):
    # line 1's shortest key is the mark alone (after "is "): trivial, skipped; line 2 has no key -> no key at all,
    # so the whole (lower-cased) response is the one candidate
    assert videommmu_open(f"The answer is {mark}\nok") == [f"the answer is {mark}\nok"]


def test_lmms_eval_scientific_numbers():
    # scientific (either e): 1.5e3, 2.5E-4; simple numbers: a decimal followed by an exponent is excluded (either
    # e), so "1" (ends at the word boundary before "."), "3" (after e), "2" (before ".5E"), "-4"
    assert _extract_numbers("1.5e3 and 2.5E-4") == ["1.5e3", "2.5E-4", "1", "3", "2", "-4"]


MMVU_CHOICES = {
    "A": "Nucleus",
    "B": "Mitochondrion",
    "C": "Ribosome",
    "D": "Golgi apparatus",
    "E": "Lysosome",
}


@pytest.mark.parametrize(
    "prediction, answer, choices, correct",
    [
        ("a or b", "B", MMVU_CHOICES, True),  # first letter a -> A, but b stands alone (any case)
        ("The golgi body", "D", MMVU_CHOICES, True),  # "D" in "BODY" + the key word "golgi" of option D
        ("the golgi", "D", MMVU_CHOICES, False),  # the key word alone: no D anywhere
        # key words lose their punctuation: "mitochondrion." -> "mitochondrion"
        ("Probably the mitochondrion", "B", {"B": "Mitochondrion."}, True),
        ("Both are the same", "B", {"B": "the mitochondrion"}, True),  # "the" is a key word (3+ letters)
        ("Best of luck", "B", {"B": "Ribosome of cell"}, False),  # "of" is not (2 letters)
    ],
)
def test_mmvu_rule_based_letter_and_key_words(prediction, answer, choices, correct):
    assert mmvu_rule_based(prediction, answer, choices) is correct
