"""The length bonus as the trainer applies it (on by default): judged on, and added to, the ``accuracy_reward``
column, never another reward's; lengths are the completions' token counts; groups of G contiguous rows."""

from __future__ import annotations

import dataclasses

import pytest

from videoktr.training.config import KTRConfig

from .conftest import G3

# 2 prompts x G = 3. The format reward disagrees with accuracy on every row but one.
ACCURACY = [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
FORMAT = [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
LENGTHS = [5, 9, 5, 5, 5, 5]


def fmt(completions, **kwargs) -> list[float]:
    return FORMAT[: len(completions)]


def acc(completions, **kwargs) -> list[float]:
    return ACCURACY[: len(completions)]


def test_length_bonus_is_on_by_default():
    assert {f.name: f.default for f in dataclasses.fields(KTRConfig)}["length_bonus"] is True


def test_length_bonus_is_judged_on_the_accuracy_column(make_trainer, rows_of):
    # bonus 0.2 for lengths 4..8 when >= 2 of the group are correct (accuracy > 0.1):
    # group 0 accuracy (1, 1, 0): 2 correct -> row 0 (length 5) gets it, row 1 (length 9) is too long;
    # group 1 accuracy (0, 0, 1): 1 correct -> none. Accuracy column + bonus = (1.2, 1, 0, 0, 0, 1), format
    # untouched. Judged on the format column instead (group 1: 3 "correct", all of length 5) the bonus would go to
    # rows 3, 4, 5; with one group of 6 rows (3 correct) row 5 would get it too.
    trainer = make_trainer(
        rewards=[fmt, acc], accuracy_reward="acc", method="grpo", length_bonus=True, num_generations=G3,
        per_device_train_batch_size=2 * G3, length_bonus_min=4, length_bonus_max=8,
    )  # fmt: skip
    trainer.model.train()
    assert trainer.reward_func_names == ["fmt", "acc"]  # accuracy is not the first column
    rows = rows_of(trainer)
    completions = [[{"role": "assistant", "content": "x"}] for _ in rows]
    ids = [[7] * n for n in LENGTHS]
    rewards = trainer._calculate_rewards(rows, [r["prompt"] for r in rows], completions, ids)
    assert rewards[:, 1].tolist() == pytest.approx([1.2, 1.0, 0.0, 0.0, 0.0, 1.0])
    assert rewards[:, 0].tolist() == FORMAT
    assert trainer._metrics["train"]["reward/length_bonus_frac"][-1] == pytest.approx(1 / 6)
