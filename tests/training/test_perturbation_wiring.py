"""The trainer's counterfactual passes against the core functions, on the ``ktr_rollout`` batch (2 prompts x G = 3,
temperature 0.7): the ``drop`` visual perturbation, soft weighting (how the signals are combined) and a
distribution distance at a temperature other than 1."""

from __future__ import annotations

import torch

from videoktr import core

from .conftest import spy_signal_scores


def _select(trainer, batch, monkeypatch, **fields):
    """(batch with the selection of ``fields`` attached, what ``_signal_scores`` returned)."""
    for name, value in {"log_selected_examples": 0, **fields}.items():
        monkeypatch.setattr(trainer.args, name, value)
    monkeypatch.setattr(trainer, "_signal_scores", trainer._signal_scores)  # restored after the test
    captured = spy_signal_scores(trainer)
    out = {k: v for k, v in batch.items() if not k.startswith("ktr_token_")}
    trainer._attach_selection(out, trainer._batch_video(out))
    return out, captured


def _inputs(trainer, batch):
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    video = trainer._batch_video(batch)
    with torch.no_grad():
        features = trainer._video_features(
            trainer.model, video["pixel_values_videos"], video["video_grid_thw"]
        )
    return ids, mask, video, features, batch["completion_mask"].bool()


def test_drop_masks_attention_at_the_video_positions(ktr_rollout, monkeypatch):
    # drop (the authors' code): the same input, with the video positions masked out of attention and the M-RoPE
    # positions of the full input kept. Score = |logp - logp_drop| (core.logprob_shift, unsigned).
    trainer, batch, _ = ktr_rollout
    _, captured = _select(
        trainer,
        batch,
        monkeypatch,
        ktr_signals=["visual"],
        ktr_visual_perturbation="drop",
        ktr_distance="logprob",
    )
    ids, mask, video, features, valid = _inputs(trainer, batch)
    dropped = mask.masked_fill(ids == trainer.forwards.video_token_id, 0)
    assert (dropped != mask).any(dim=1).all()  # every row has video positions
    with torch.no_grad():

        def logps(feats):
            return trainer.forwards.token_logps(
                trainer.model, ids, dropped, valid.size(1), video, features=feats, keep_positions=mask
            )[0]

        logp_drop = logps(features)
        # the video no longer reaches the completion: other pixels (features 0) give the same log-probs
        assert torch.allclose(logp_drop, logps(tuple(torch.zeros_like(f) for f in features)), atol=1e-5)
    expected = core.logprob_shift(batch["_generation_logps"], logp_drop)
    score = captured["scores"]["visual"]
    assert torch.allclose(score[valid], expected[valid], rtol=0, atol=1e-5)
    assert expected[valid].abs().max() > 1e-3  # dropping the video moves the log-probs (the check can fail)


def _row_minmax(scores, valid):
    """Per-row min-max over the valid tokens to [0, 1], 0 on padding (a row of equal scores maps to 0)."""
    lo = torch.where(valid, scores, torch.inf).amin(dim=1, keepdim=True)
    hi = torch.where(valid, scores, -torch.inf).amax(dim=1, keepdim=True)
    span = hi - lo
    out = torch.where(span > 0, (scores - lo) / torch.where(span > 0, span, 1.0), 0.0)
    return torch.where(valid, out, 0.0)


def test_soft_weights_of_the_max_of_normalised_signals(ktr_rollout, monkeypatch):
    # docs/method.md: a soft weight of the combined score = max over signals of the per-row min-max normalised
    # scores, mapped by core.soft_token_weights (mean 1 over a row's valid tokens).
    trainer, batch, _ = ktr_rollout
    out, captured = _select(trainer, batch, monkeypatch, ktr_weighting="softmax")
    valid = batch["completion_mask"].bool()
    scores = captured["scores"]
    assert sorted(scores) == ["entropy", "temporal", "visual"]
    normalised = torch.stack([_row_minmax(scores[s], valid) for s in scores])
    expected = core.soft_token_weights(normalised.amax(dim=0), valid, "softmax")
    weights = out["ktr_token_weights"]
    assert "ktr_token_mask" not in out and torch.allclose(weights, expected.float(), rtol=0, atol=1e-6)
    # the check can fail: the mean (or the sum) of the signals gives other weights
    other = core.soft_token_weights(normalised.mean(dim=0), valid, "softmax")
    assert not torch.allclose(other, expected, atol=1e-3)


def test_distance_at_temperature_0_7_is_core_distribution_shift(ktr_rollout, monkeypatch):
    # the distance between the real and the perturbed next-token distributions, both at the sampling temperature:
    # core.distribution_shift(raw logits, raw perturbed logits, temperature=0.7)
    trainer, batch, _ = ktr_rollout
    assert trainer.temperature == 0.7
    _, captured = _select(
        trainer, batch, monkeypatch, ktr_signals=["visual"], ktr_visual_perturbation="zero", ktr_distance="kl"
    )
    ids, mask, video, features, valid = _inputs(trainer, batch)
    zero = tuple(torch.zeros_like(f) for f in features)
    raw = [
        trainer.forwards.full_logits(trainer.model, ids, mask, valid.size(1), video, f, temperature=1.0)
        for f in (features, zero)
    ]
    expected = core.distribution_shift(*raw, "kl", temperature=0.7)
    score = captured["scores"]["visual"]
    assert torch.allclose(score[valid], expected[valid], rtol=1e-4, atol=1e-6)
    # the check can fail: at temperature 1 (or 0.7 applied twice) the distances differ
    for other in (1.0, 0.49):
        assert not torch.allclose(
            core.distribution_shift(*raw, "kl", temperature=other)[valid], expected[valid]
        )
