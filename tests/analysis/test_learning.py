"""Training-reward windows and held-out points of the learning summary, by hand on a 3-step log."""

import math

import pytest

from videoktr.analysis.learning import learning_summary, plot_learning, read_points, reward_windows

# per-step accuracy means of 2 prompts x G=2 completions; "reward" = accuracy + format (not a rate)
LOG = [
    {"step": 1, "rewards/accuracy/mean": 0.5, "reward": 1.5},
    {"step": 2, "rewards/accuracy/mean": 0.75, "reward": 1.75},
    {"step": 3, "rewards/accuracy/mean": 1.0, "reward": 2.0},
    {"step": 3, "train_runtime": 9.0},  # the trainer's final entry: no reward, skipped
]


def test_reward_windows_by_hand():
    first, last = reward_windows(LOG, "rewards/accuracy/mean", window=2, prompts=2, generations=2)
    # steps 1-2: mean 0.625, sample sd |0.75 - 0.5| / sqrt(2) = 0.17678, SE = sd / sqrt(2) = 0.125
    assert (first["first_step"], first["last_step"], first["steps"]) == (1, 2, 2)
    assert first["mean"] == 0.625 and first["se_measured"] == pytest.approx(0.125)
    # binomial: sqrt(0.625 * 0.375 / (2 steps x 2 prompts x 2)) and / (2 x 2)
    assert first["se_binomial_completions"] == pytest.approx(math.sqrt(0.234375 / 8))
    assert first["se_binomial_prompts"] == pytest.approx(math.sqrt(0.234375 / 4))
    # the partial last window (step 3 alone) is kept; one step has no measured spread
    assert (last["steps"], last["mean"], last["se_measured"]) == (1, 1.0, None)
    (reward,) = reward_windows(LOG, "reward", window=3, prompts=2, generations=2)
    assert reward["mean"] == 1.75 and reward["se_binomial_prompts"] is None  # not a rate: no binomial SE


def test_summary_points_and_plot(tmp_path):
    points = tmp_path / "heldout_eval.jsonl"
    points.write_text('{"step": 3, "greedy": 0.5, "sampled": 0.25, "n_items": 4}\n{"step": 0, "greedy": 0.25, '
                      '"sampled": 0.0, "n_items": 4}\n')  # fmt: skip
    summary = learning_summary(read_points(points), LOG, "rewards/accuracy/mean", 2, 2, window=2)
    assert [p["step"] for p in summary["points"]] == [0, 3]  # sorted by step
    # greedy 0.5 of 4 items: sqrt(0.25 / 4) = 0.25; sampled 0.0: SE 0
    assert summary["points"][1]["greedy_se"] == 0.25 and summary["points"][0]["sampled_se"] == 0.0
    assert summary["completions_per_step"] == 4 and len(summary["windows"]) == 2
    assert read_points(tmp_path / "missing.jsonl") == []
    assert plot_learning(summary, LOG, tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"
