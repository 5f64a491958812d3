"""Gradient accumulation scales the loss so that 2 micro-batches of 3 rows give the gradient of 1 micro-batch of
the 6 rows (the ``ktr_rollout`` batch: 2 prompts x G = 3, the KTR mask attached), for each loss aggregation that
TRL's accumulation treats differently."""

from __future__ import annotations

import pytest
import torch

from .conftest import batch_rows


def _accumulated(trainer, batch, micro_batches):
    model = trainer.model
    model.zero_grad(set_to_none=True)
    for rows in micro_batches:
        trainer._compute_loss(model, batch_rows(batch, rows)).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("aggregation", ["seq-mean-token-mean", "token-mean-global"])
def test_accumulation_2_gives_the_gradient_of_accumulation_1(ktr_rollout, monkeypatch, aggregation):
    # seq-mean-token-mean: one micro-batch of 6 rows -> mean over 6 rows of each row's token mean; two of 3 rows,
    # each divided by the accumulation steps 2 -> (sum_3 / 3) / 2 + (sum_3' / 3) / 2 = sum_6 / 6: the same gradient.
    # token-mean-global (TRL dapo): token sum / (valid tokens of the generation batch) in both cases; each of the
    # 2 micro-batches is one of steps_per_generation = 2, so its normaliser is num_items * 2 / 2.
    # A loss not divided by the accumulation steps doubles the gradient.
    trainer, batch, _ = ktr_rollout
    monkeypatch.setattr(trainer.args, "aggregation", aggregation)
    trainer.current_gradient_accumulation_steps = 1
    one = _accumulated(trainer, batch, [torch.arange(6)])
    monkeypatch.setattr(trainer.args, "steps_per_generation", 2)
    monkeypatch.setattr(trainer, "current_gradient_accumulation_steps", 2)
    two = _accumulated(trainer, batch, [torch.tensor([0, 4, 2]), torch.tensor([3, 1, 5])])  # as if shuffled
    assert one.keys() == two.keys() and len(one) > 10
    assert all(torch.allclose(two[n], one[n], rtol=1e-4, atol=1e-8) for n in one)
    assert max(one[n].abs().max() for n in one) > 1e-4  # a gradient there is
