from pathlib import Path

import pytest

from videoktr.errors import UserError
from videoktr.eval.benchmarks import BenchItem, load_benchmark
from videoktr.eval.scoring import read_predictions, score_output, score_predictions

FIXTURES = Path(__file__).parents[1] / "fixtures" / "benchmarks"
MC = BenchItem("q", "?", ["A. x", "B. y", "C. z"], "B", "multiple choice", "v.mp4", {"k": "v"})
NUM = BenchItem("n", "?", None, "3", "numerical", "v.mp4")


@pytest.mark.parametrize(
    "output, extracted, source, correct",
    [
        ("<think>..</think><answer>B</answer>", True, "tag", True),
        ("<answer>(B) y</answer>", True, "tag", True),
        ("<answer>C</answer>", True, "tag", False),
        ("B", True, "text", True),  # no tags: fall back to the whole text
        ("<answer>D</answer>", False, "tag", False),  # D is not an option
        ("I am not sure", False, "text", False),
    ],
)
def test_multiple_choice_scoring(output, extracted, source, correct):
    scored = score_output(MC, output)
    assert (scored["extracted"], scored["answer_source"], scored["correct"]) == (extracted, source, correct)


def test_numerical_scoring_uses_the_video_r1_rule():
    assert score_output(NUM, "<answer>3</answer>")["correct"]
    assert not score_output(NUM, "<answer>3.0</answer>")["correct"]  # decimal point on one side only
    unreadable = score_output(NUM, "<answer>three</answer>")
    assert not unreadable["extracted"] and not unreadable["correct"]


def test_score_external_predictions_per_category():
    items = load_benchmark("video-holmes", FIXTURES / "video_holmes_official.json")
    records, summary = score_predictions(items, read_predictions(FIXTURES / "video_holmes_predictions.jsonl"))
    # vh001_1 SR: B == B correct; vh001_2 TA: A != C; vh002_1 TA: no tags, text "She leaves. A" has no leading
    # letter -> not extracted; vh002_2 PAR: "Time stops" is not a letter -> not extracted; vh003_1 has no prediction.
    # overall 1 correct / 4 scored = 0.25; SR 1/1; TA 0/2; PAR 0/1
    assert summary["accuracy"] == 0.25 and summary["n_scored"] == 4 and summary["n_correct"] == 1
    assert summary["by_category"] == {
        "question_type/PAR": 0.0,
        "question_type/SR": 1.0,
        "question_type/TA": 0.0,
    }
    assert summary["category_counts"]["question_type/TA"] == 2
    assert (
        summary["n_not_extracted"] == 2 and summary["n_missing_predictions"] == 1 and summary["n_items"] == 5
    )
    assert [r["extracted"] for r in records] == [True, True, False, False]


def test_score_multi_category_benchmark(tmp_path):
    items = load_benchmark("videomme", FIXTURES / "videomme.json")
    preds = tmp_path / "p.json"  # a JSON list (Video-R1 style ids under problem_id) also works
    preds.write_text(
        '[{"problem_id": "001-1", "output": "<answer>C</answer>"}, {"problem_id": "001-2", "output": "<answer>B</answer>"},'
        ' {"problem_id": "301-1", "output": "<answer>B</answer>"}, {"problem_id": "601-1", "error": "OOM"}]'
    )
    records, summary = score_predictions(items, read_predictions(preds))
    # correct: 001-1 (short, Knowledge, Counting), 301-1 (medium, Sports, Counting); wrong: 001-2; error: 601-1
    assert summary["accuracy"] == 0.5 and summary["n_errors"] == 1
    assert summary["by_category"]["duration/short"] == 0.5  # 1 of 2
    assert summary["by_category"]["duration/long"] == 0.0
    assert summary["by_category"]["domain/Knowledge"] == pytest.approx(
        1 / 3
    )  # 001-1 of {001-1, 001-2, 601-1}
    assert summary["by_category"]["task_type/Counting Problem"] == 1.0
    assert records[-1]["error"] == "OOM"


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
