"""TW-GRPO benchmarks: each loader reads its fixture (field names of the authors' and lmms-eval's files), and
multi-answer scoring (strict accuracy, mean partial credit, per category) equals a hand computation."""

import json
from pathlib import Path

import pytest

from videoktr.cli import main
from videoktr.errors import UserError
from videoktr.eval.benchmarks import load_benchmark
from videoktr.eval.scoring import score_predictions

FIXTURES = Path(__file__).parents[1] / "fixtures" / "benchmarks"


def test_clevrer_reads_options_from_the_problem_text():
    items = load_benchmark("clevrer", FIXTURES / "clevrer_counterfactual.json")
    assert [i.id for i in items] == ["0", "1", "2"]
    first = items[0]
    assert first.question == "Which of the following will happen if the cylinder is removed?"
    assert first.options[0] == "A. The sphere collides with the cube" and len(first.options) == 4
    assert [i.answer for i in items] == ["A,B", "C", "B,C,D"]  # a bare "B, C, D" is wrapped as the authors do
    assert [i.categories for i in items] == [
        {"answers": "multiple"}, {"answers": "single"}, {"answers": "multiple", "question_type": "counterfactual"},
    ]  # fmt: skip
    assert first.video == "clevrer/video_10000.mp4" and first.benchmark == "clevrer"


def test_nextgqa_mixed_keeps_type_and_negation():
    items = load_benchmark("nextgqa", FIXTURES / "nextgqa_mixed.json")
    assert [i.answer for i in items] == ["A,C", "C", "A,B,D"]
    assert items[0].options == ["A. to sleep", "B. find a toy", "C. dance"]
    assert items[0].categories == {"type": "CW", "answers": "multiple", "negated": "true"}
    assert items[1].categories == {"type": "TN", "answers": "single", "negated": "false"}


def test_mvbench_both_formats():
    authors = load_benchmark("mvbench", FIXTURES / "mvbench_authors.json")
    assert [(i.id, i.answer, i.categories["task"]) for i in authors] == [
        ("1", "C", "ssv2_video"),
        ("2", "A", "ssv2_video"),
    ]
    official = load_benchmark("mvbench", FIXTURES / "action_sequence.json")
    assert [i.answer for i in official] == ["A", "C"]
    assert official[1].options[2] == "C. Took the clothes." and official[1].categories == {
        "task": "action_sequence"
    }


def test_bad_gold_letters_are_refused_with_the_record_id(tmp_path):
    rows = json.loads((FIXTURES / "nextgqa_mixed.json").read_text())
    rows[2]["answer"] = "(A),(F)"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rows))
    with pytest.raises(UserError, match=r"record '2002_3'.*\['F'\] that are not among the options"):
        load_benchmark("nextgqa", bad)
    rows = json.loads((FIXTURES / "clevrer_counterfactual.json").read_text())
    rows[0]["problem"] = "No options here"
    bad.write_text(json.dumps(rows))
    with pytest.raises(UserError, match="record 0: 'problem' should be the question, then option lines"):
        load_benchmark("clevrer", bad)


# CLEVRER fixture: gold {A,B}, {C}, {B,C,D}
OUTPUTS = {
    "0": "<think>...</think><answer>A</answer>",  # subset 1/2: partial 0.5, strict 0
    "1": "<think>...</think><answer>C</answer>",  # exact: 1, 1
    "2": "I think... Answer: B, D",  # no tags: "Answer:" fallback -> {B, D} subset of {B,C,D}: 2/3, strict 0
}


@pytest.mark.parametrize("scorer", ["tw-grpo", "official"])
def test_multi_answer_scoring_by_hand(scorer):
    items = load_benchmark("clevrer", FIXTURES / "clevrer_counterfactual.json")
    records, summary = score_predictions(items, {k: {"output": v} for k, v in OUTPUTS.items()}, scorer=scorer)
    assert [r["score"] for r in records] == [0.5, 1.0, pytest.approx(2 / 3)]
    assert [r["correct"] for r in records] == [False, True, False]
    assert summary["accuracy"] == pytest.approx(1 / 3)  # strict
    assert summary["mean_score"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)  # partial credit
    assert summary["partial_credit"]
    assert summary["by_category"] == {
        "answers/multiple": 0.0,
        "answers/single": 1.0,
        "question_type/counterfactual": 0.0,
    }
    assert summary["by_category_mean_score"] == pytest.approx(
        {"answers/multiple": (0.5 + 2 / 3) / 2, "answers/single": 1.0, "question_type/counterfactual": 2 / 3}
    )


def test_video_r1_scorer_on_multi_gold_is_an_exact_string_match():
    items = load_benchmark("clevrer", FIXTURES / "clevrer_counterfactual.json")
    outputs = {"0": "<answer>A,B</answer>", "1": "<answer>C</answer>", "2": "<answer>B, C, D</answer>"}
    records, summary = score_predictions(
        items, {k: {"output": v} for k, v in outputs.items()}, scorer="video-r1"
    )
    assert [r["correct"] for r in records] == [True, True, False]  # "B, C, D" != "B,C,D" for Video-R1's rule
    assert not summary["partial_credit"] and summary["mean_score"] == summary["accuracy"]
    assert any("2 items have several correct letters" in note for note in summary["notes"])


def test_eval_score_cli_prints_partial_credit(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": k, "output": v}) + "\n" for k, v in OUTPUTS.items()))
    args = ["eval", "score", "--bench", "clevrer", "--data", str(FIXTURES / "clevrer_counterfactual.json")]
    assert main([*args, "--predictions", str(preds), "--scorer", "tw-grpo"]) == 0
    out = capsys.readouterr().out
    assert "partial credit" in out and "33.33%" in out and "72.22%" in out
    summary = json.loads((tmp_path / "p.summary.json").read_text())
    assert summary["scorer"] == "tw-grpo" and summary["mean_score"] == pytest.approx(0.7222, abs=1e-4)
