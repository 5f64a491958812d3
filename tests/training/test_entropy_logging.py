"""The logged ``entropy``: the mean policy entropy over the valid completion tokens of the micro-batch, padding
excluded (the ``ktr_rollout`` batch, temperature 0.7)."""

from __future__ import annotations

import pytest
import torch

from videoktr import core


def test_logged_entropy_is_the_mean_over_valid_tokens(ktr_rollout, monkeypatch):
    # The tiny random model's entropy is close to log(V) at every position, padding included, so the padding's
    # entropy is raised by 1000 in the policy pass the loss reads: a mean that counted padded positions would be
    # off by about 1000 * (padded / all positions), a mean of per-row means too, by other amounts.
    trainer, batch, _ = ktr_rollout
    padded = dict(batch)
    mask = batch["completion_mask"].clone()
    mask[0, 3:] = (
        0  # row 0 ends after 3 tokens: the rest is padding, with the model's (non-zero) entropy there
    )
    mask[3, 5:] = 0
    padded["completion_mask"] = mask
    original = trainer._get_per_token_logps_and_entropies

    def padding_garbage(*args, **kwargs):
        logp, entropy, aux = original(*args, **kwargs)
        return logp, entropy + 1000.0 * (mask == 0), aux

    monkeypatch.setattr(trainer, "_get_per_token_logps_and_entropies", padding_garbage)
    trainer._compute_loss(trainer.model, padded)
    logged = trainer._metrics["train"]["entropy"][-1]
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], mask], dim=1)
    logits = trainer.forwards.full_logits(
        trainer.model, ids, attention, mask.size(1), trainer._batch_video(batch), None, temperature=0.7
    )
    entropy = core.entropy_from_logits(logits)  # (6, T) at the sampling temperature
    valid = mask.bool()
    # hand: sum of the entropies of the valid tokens / their number
    expected = (entropy * valid).sum() / valid.sum()
    assert logged == pytest.approx(expected.item(), rel=1e-5)
    assert (~valid).sum() >= 8  # padding there is (the check can fail)
