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


def _record_completions(trainer) -> list[torch.Tensor]:
    """The completion ids of every micro-batch ``trainer`` computes a loss on."""
    calls, original = [], trainer._compute_loss

    def record(model, inputs):
        calls.append(inputs["completion_ids"])
        return original(model, inputs)

    trainer._compute_loss = record
    return calls


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


def test_one_step_with_accumulation_2_equals_accumulation_1(make_trainer, param_snapshot):
    # The same 4 rows (2 prompts x G = 2, one generation) trained as 1 micro-batch of 4 or 2 micro-batches of 2
    # (steps_per_generation = 2, rows shuffled by TRL): plain SGD without clipping turns the gradient into the
    # update (lr * grad), so equal updates mean equal accumulated gradients; the logged grad_norm too. A loss not
    # divided by the accumulation steps doubles both. (Adam would hide a constant factor.)
    updates, norms, seen = {}, {}, {}
    for steps in (1, 2):
        trainer = make_trainer(
            method="grpo", beta=0.04, max_steps=1, optim="sgd", max_grad_norm=0.0,
            per_device_train_batch_size=4 // steps, gradient_accumulation_steps=steps,
        )  # fmt: skip
        before = param_snapshot(trainer.model)
        calls = _record_completions(trainer)
        trainer.train()
        updates[steps] = {n: p.detach() - before[n] for n, p in trainer.model.named_parameters()}
        norms[steps] = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
        seen[steps] = sorted(tuple(row.tolist()) for ids in calls for row in ids)
        assert len(calls) == steps
    assert seen[1] == seen[2]  # the same completions were trained on
    assert norms[2] == pytest.approx(norms[1], rel=1e-4) and norms[1][0] > 0
    # updates equal up to float32 rounding (seen: largest update ~9e-5, largest difference ~4e-9); a doubled
    # gradient would make the difference as large as the update
    diff = max((updates[2][n] - updates[1][n]).abs().max().item() for n in updates[1])
    size = max(updates[1][n].abs().max().item() for n in updates[1])
    assert size > 1e-5 and diff < 1e-3 * size
