"""Paired ablation summary on hand-made predictions: 4 questions (2 static, 2 temporal), 2 seeds."""

import json

import pytest

from videoktr.ablate import paired_comparison, reference_variant, run_dir_of
from videoktr.analysis.ablation import paired_table, plot_paired

FAMILY = {"q0": "static", "q1": "static", "q2": "temporal", "q3": "temporal"}
# correct (1) / wrong (0) per question q0..q3
OUTCOMES = {
    ("Vanilla GRPO", 0): [1, 0, 0, 0],
    ("Vanilla GRPO", 1): [1, 1, 0, 0],
    ("KTR", 0): [1, 0, 1, 0],
    ("KTR", 1): [1, 1, 1, 1],
}
SFT = [1, 0, 0, 0]


def _write(path, correct):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {"id": q, "output": "<answer>A</answer>", "correct": bool(c), "categories": {"family": FAMILY[q]}}
        for q, c in zip(FAMILY, correct)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.fixture()
def summary(tmp_path):
    for (name, seed), correct in OUTCOMES.items():
        _write(run_dir_of(tmp_path, name, seed) / "predictions.jsonl", correct)
    _write(tmp_path / "predictions_sft.jsonl", SFT)
    rows = [{"variant": name, "seed": seed} for name, seed in OUTCOMES]
    variants = [{"name": "KTR", "method": "ktr"}, {"name": "Vanilla GRPO", "method": "grpo"}]
    assert reference_variant(variants) == "Vanilla GRPO"
    # the reference can be given (`ablate --only KTR` still compares with the config's GRPO runs)
    only = paired_comparison(tmp_path, rows, variants[:1], 500, reference="Vanilla GRPO")
    assert list(only["variants"]) == ["KTR", "Vanilla GRPO"] and only["variants"]["KTR"]["diff"]["overall"]["mean"] == 37.5
    return paired_comparison(tmp_path, rows, variants, n_boot=2000)


def test_means_and_paired_differences_by_hand(summary):
    assert summary["reference"] == "Vanilla GRPO" and summary["n_questions"] == 4
    assert summary["families"] == ["static", "temporal"]
    ktr, grpo = summary["variants"]["KTR"], summary["variants"]["Vanilla GRPO"]
    # KTR: 2/4 and 4/4 correct -> 75%; GRPO: 1/4 and 2/4 -> 37.5%; SFT 25%
    assert ktr["accuracy"]["overall"]["mean"] == 75.0 and grpo["accuracy"]["overall"]["mean"] == 37.5
    assert summary["sft"]["overall"]["mean"] == 25.0
    # per question, KTR - GRPO averaged over seeds: q0 0, q1 0, q2 1, q3 0.5 -> mean 37.5 points
    assert ktr["diff"]["overall"]["mean"] == 37.5 and ktr["paired_seeds"] == [0, 1]
    # static questions q0, q1: differences 0 and 0 -> the paired interval is [0, 0]
    assert (ktr["diff"]["static"]["low"], ktr["diff"]["static"]["high"]) == (0.0, 0.0)
    # temporal q2, q3: differences 1 and 0.5 -> mean 75, replicates in {50, 75, 100} -> interval [50, 100]
    assert ktr["diff"]["temporal"]["mean"] == 75.0
    assert (ktr["diff"]["temporal"]["low"], ktr["diff"]["temporal"]["high"]) == (50.0, 100.0)
    assert grpo["diff"] is None and grpo["diff_seeds"] is None
    # resampling seeds too: seed 0 differences (0, 0, 1, 0), seed 1 (0, 0, 1, 1) -> wider than seeds fixed
    assert ktr["diff_seeds"]["overall"]["half_width"] >= ktr["diff"]["overall"]["half_width"]


def test_table_and_plot(summary, tmp_path):
    text = paired_table(summary)
    assert "| KTR | 2 | 75.0 [" in text and "| +37.5 [" in text
    assert "| SFT checkpoint (no RL) | - | 25.0 [" in text
    png = plot_paired(summary, tmp_path / "ablation.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
