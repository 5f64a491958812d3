"""Prediction records and summaries (the scorers' rules themselves: test_scorers.py)."""

from pathlib import Path

import pytest

from videoktr.errors import UserError
from videoktr.eval.benchmarks import BenchItem, load_benchmark
from videoktr.eval.scoring import prediction_record, read_predictions, score_predictions, summarize

FIXTURES = Path(__file__).parents[1] / "fixtures" / "benchmarks"
MC = BenchItem("q", "?", ["A. x", "B. y", "C. z"], "B", "multiple choice", "v.mp4", {"k": "v"}, "video-r1")
REG = BenchItem("r", "?", None, "10", "regression", "v.mp4", {"k": "v"}, "video-r1")


def test_record_fields_and_error():
    record = prediction_record(MC, "<answer>B</answer>")
    assert (
        record["correct"]
        and record["counted"]
        and record["scorer"] == "video-r1"
        and record["prediction"] == "B"
    )
    failed = prediction_record(MC, None, error="OOM")
    assert (failed["correct"], failed["counted"], failed["error"]) == (False, True, "OOM")


def test_score_external_predictions_per_category():
    items = load_benchmark("video-holmes", FIXTURES / "video_holmes_official.json")
    predictions = read_predictions(FIXTURES / "video_holmes_predictions.jsonl")
    # vh001_1 SR "<answer>B</answer>" gold B: correct for all three scorers.
    # vh001_2 TA "<answer>A</answer>" gold C: wrong everywhere.
    # vh002_1 TA "She leaves. A" (no tags) gold A: video-r1 compares the whole text -> wrong; Holmes' cascade
    #   finds "A" nowhere as "A "/"A:"/"[A", then the first capital of A-F anywhere: "A" -> correct;
    #   lenient reads no leading letter ("She") -> wrong.
    # vh002_2 PAR "<answer>Time stops</answer>" gold E: no capital A-F in "Time stops" -> wrong everywhere.
    # vh003_1 has no prediction.
    _, r1 = score_predictions(items, predictions, "video-r1")
    assert (r1["accuracy"], r1["n_scored"], r1["n_correct"]) == (0.25, 4, 1)
    assert r1["by_category"] == {"question_type/PAR": 0.0, "question_type/SR": 1.0, "question_type/TA": 0.0}
    assert r1["category_counts"]["question_type/TA"] == 2
    assert r1["n_missing_predictions"] == 1 and r1["n_items"] == 5 and r1["scorer"] == "video-r1"
    # not extracted by video-r1: "She leaves. A" and "Time stops" are not option letters
    assert r1["n_not_extracted"] == 2 and r1["n_only_lenient"] == 0
    _, official = score_predictions(items, predictions, "official")
    assert official["accuracy"] == 0.5 and official["by_category"]["question_type/TA"] == 0.5


def test_denominator_rule_and_only_lenient(tmp_path):
    items = load_benchmark("videomme", FIXTURES / "videomme.json")  # golds C, A, B, D
    preds = tmp_path / "p.json"  # a JSON list (Video-R1 style ids under problem_id) also works
    preds.write_text(
        '[{"problem_id": "001-1", "output": "<answer>C</answer>"}, {"problem_id": "001-2", "output": "<answer>(A)</answer>"},'
        ' {"problem_id": "301-1", "output": "<answer>none of them fits</answer>"}, {"problem_id": "601-1", "error": "OOM"}]'
    )
    records, r1 = score_predictions(items, read_predictions(preds), "video-r1")
    # video-r1: only the bare "C" is right; "(A)" is only accepted by the lenient reader; the error counts
    assert (r1["accuracy"], r1["n_scored"], r1["n_only_lenient"], r1["n_errors"]) == (0.25, 4, 1, 1)
    assert r1["by_category"]["duration/short"] == 0.5 and r1["by_category"]["sub_category/Astronomy"] == 0.0
    _, official = score_predictions(items, read_predictions(preds), "official")
    # official Video-MME: "C" -> C, "(A)" -> A, "none of them fits" has no capital A-D -> dropped; the error is kept
    assert (official["n_scored"], official["n_dropped"], official["n_correct"]) == (3, 1, 2)
    assert official["accuracy"] == pytest.approx(2 / 3) and any("denominator" in n for n in official["notes"])
    assert records[-1]["error"] == "OOM"


def test_regression_is_reported_apart():
    records = [prediction_record(MC, "<answer>B</answer>"), prediction_record(REG, "<answer>10</answer>"),
               prediction_record(REG, "<answer>7</answer>")]  # fmt: skip
    summary = summarize(records, "video-r1")
    # accuracy over the one multiple-choice item; MRA: exact 10 -> 1.0, 7 vs 10 -> relative error 0.3 < 1 - t
    # for t = 0.50, 0.55, 0.60, 0.65 (0.3 < 0.30 is false) -> 4/10 -> mean (1.0 + 0.4) / 2 = 0.7
    assert summary["accuracy"] == 1.0 and summary["n_scored"] == 1
    assert summary["n_regression"] == 2 and summary["mean_mra"] == pytest.approx(0.7)


def test_prediction_file_errors(tmp_path):
    items = load_benchmark("videomme", FIXTURES / "videomme.json")
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"output": "A"}\n')
    with pytest.raises(UserError, match="#1 has no id"):
        read_predictions(preds)
    preds.write_text('{"id": "zzz", "output": "A"}\n')
    with pytest.raises(UserError, match="not in the benchmark file"):
        score_predictions(items, read_predictions(preds))
    preds.write_text('{"id": "001-1", "output": "A"}\n{"id": "001-1", "output": "C"}\n')
    assert read_predictions(preds)["001-1"]["output"] == "C"  # the later line wins


def test_official_scorer_refused_for_a_benchmark_without_one():
    item = BenchItem("x", "?", ["A. a", "B. b"], "A", "multiple choice", "v.mp4", {}, "somebench")
    with pytest.raises(UserError, match="no official scorer for somebench"):
        score_predictions([item], {"x": {"id": "x", "output": "A"}}, "official")
    with pytest.raises(UserError, match="unknown scorer 'strict'"):
        score_predictions([item], {"x": {"id": "x", "output": "A"}}, "strict")


# Partial scores are never "correct" (issue 15): a mutant that counts score > 0 (or >= some fraction) as correct
# would turn each row below into a correct answer and the summary's accuracy into 1.
OCR = BenchItem("o", "?", None, "the red ball rolls", "OCR", "v.mp4", {"k": "v"}, "video-r1")
FREE = BenchItem("f", "?", None, "a dog runs in the park", "free-form", "v.mp4", {"k": "v"}, "video-r1")
MULTI = BenchItem(
    "m", "?", ["A. x", "B. y", "C. z"], "A,C", "multiple choice", "v.mp4", {"k": "v"}, "video-r1"
)
PARTIAL = [
    # OCR: one word of four substituted -> WER 1/4 -> score 1 - 0.25 = 0.75
    ("lenient", OCR, "<answer>the red ball stops</answer>", 0.75),
    # free-form, ROUGE F (stemmed, "runs" -> "run"): gold 6 words, pred "a dog runs" 3 words all in gold.
    # R1: P 1, R 3/6 -> F 2/3; R2: pred bigrams 2, gold 5, both match -> P 1, R 2/5 -> F 4/7; RL: LCS 3 -> F 2/3
    # -> mean (2/3 + 4/7 + 2/3) / 3 = 40/63
    ("lenient", FREE, "<answer>a dog runs</answer>", 40 / 63),
    # TW-GRPO multi-answer: gold {A, C}, answer {A} is a subset -> partial credit 1/2
    ("tw-grpo", MULTI, "<answer>A</answer>", 0.5),
]


@pytest.mark.parametrize("scorer, item, output, score", PARTIAL)
def test_partial_score_is_not_correct(scorer, item, output, score):
    record = prediction_record(item, output, scorer=scorer)
    assert record["score"] == pytest.approx(score) and not record["correct"]
    summary = summarize([record], scorer)
    assert summary["accuracy"] == 0.0 and summary["n_correct"] == 0
    assert summary["mean_score"] == pytest.approx(score) and summary["by_category"] == {"k/v": 0.0}
    # the same item answered exactly is correct (so the test is not passing because nothing ever is)
    exact = prediction_record(item, f"<answer>{item.answer}</answer>", scorer=scorer)
    assert exact["correct"] and exact["score"] == 1.0


@pytest.mark.parametrize("scorer", ["video-r1", "official", "lenient", "tw-grpo"])
def test_partial_regression_is_not_correct(scorer):
    # 7 for gold 10: MRA 0.4 (see test_regression_is_reported_apart); correct only at MRA 1
    record = prediction_record(REG, "<answer>7</answer>", scorer=scorer)
    assert record["score"] == pytest.approx(0.4) and not record["correct"] and record["metric"] == "mra"


@pytest.mark.parametrize("item", [OCR, FREE])
def test_video_r1_has_no_rule_for_ocr_and_free_form(item):
    # Video-R1's eval_bench.py scores these 0 even when exact (its `else: return 0.0`)
    record = prediction_record(item, f"<answer>{item.answer}</answer>", scorer="video-r1")
    assert not record["correct"] and record["score"] == 0.0 and record["no_rule"]
