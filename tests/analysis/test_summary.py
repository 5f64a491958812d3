import pytest

from videoktr.analysis.summary import accuracy_intervals, accuracy_table, demo_sections, wilson_interval

BEFORE = {
    "n_scored": 4, "n_correct": 2, "by_category": {"family/static": 1.0, "family/temporal": 0.0},
    "category_counts": {"family/static": 2, "family/temporal": 2},
}  # fmt: skip
AFTER = {
    "n_scored": 4, "n_correct": 3, "by_category": {"family/static": 1.0, "family/temporal": 0.5},
    "category_counts": {"family/static": 2, "family/temporal": 2},
}  # fmt: skip


def test_wilson_interval_by_hand():
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.71682; half 1.96 / 1.38416 * sqrt(0.016 + 0.009604)
    # = 1.41602 * 0.16001 = 0.22658 -> [0.4902, 0.9434]
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9434, abs=1e-4)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0


def test_accuracy_intervals_and_table():
    groups = accuracy_intervals(AFTER)
    assert groups["all"]["correct"] == 3 and groups["family/temporal"] == {
        "accuracy": 0.5, "n": 2, "correct": 1, "ci": wilson_interval(1, 2)
    }  # fmt: skip
    table = accuracy_table(BEFORE, AFTER)
    assert table.id == "summary-accuracy"
    assert [row[0] for row in table.rows] == ["all questions", "family: static", "family: temporal"]
    assert table.rows[0][1] == 4 and table.rows[0][4] == "+25.0" and table.rows[2][4] == "+50.0"
    low, high = wilson_interval(3, 4)
    assert table.rows[0][3] == f"75.0% [{100 * low:.1f}, {100 * high:.1f}]"


def test_demo_sections_carry_both_tables_and_the_lexicon_appendix():
    entry = {"auroc": 0.8, "precision": 0.3, "base_rate": 0.1, "lift": 3.0,
             "ci": {"auroc": [0.7, 0.9], "precision": [0.2, 0.4], "lift": [2.0, 4.0], "level": 0.95, "n_boot": 9}}  # fmt: skip
    results = {
        "method": "ktr", "rl_steps_done": 5, "rl_stopped_by_time_budget": True,
        "attribution": {"visual": {"content": entry}},
        "attribution_labels": {"template": 7, "off_template": 2, "ambiguous": 0},
        "attribution_precision": {"visual/visual": {"precision": 0.5, "base_rate": 0.25, "n_selected": 4}},
    }  # fmt: skip
    summary, appendix = demo_sections(results, BEFORE, AFTER)
    assert [s.heading for s in summary] == ["Summary", "Which tokens each signal selects"]
    assert "stopped by the time budget" in summary[0].paragraphs[0]
    note = summary[1].paragraphs[0]
    assert "7 labelled, 2 off the template" in note and "9 draws" in note
    (row,) = summary[1].tables[0].rows
    assert row == [
        "visual",
        "content",
        "0.80 [0.70, 0.90]",
        "30.0% [20.0, 40.0]",
        "10.0%",
        "3.00 [2.00, 4.00]",
    ]
    assert appendix[0].tables[0].rows == [["visual", "visual", "50.0%", "25.0%", "2.00", 4]]
    # no attribution (no scored completion): the summary still opens with accuracy
    bare = {k: v for k, v in results.items() if not k.startswith("attribution")}
    summary, appendix = demo_sections(bare, BEFORE, AFTER)
    assert [s.heading for s in summary] == ["Summary"] and appendix == []
