"""Selection details at the rollout: one counterfactual per prompt, exact skipping of zero-advantage groups, the
policy loaded like TRL's reference, bf16 on CPU."""

from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture(scope="module")
def eight_frames(make_trainer, rows_of):
    """(trainer, batch): 2 prompts x G=2 with 8-frame videos (4 temporal patches), alternating rewards."""
    trainer = make_trainer(method="ktr", video_frames=8, ktr_temporal_perturbation="reverse")
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    return trainer, trainer._generate_and_score_completions(rows_of(trainer))


def _features(trainer, batch):
    video = trainer._batch_video(batch)
    with torch.no_grad():
        return video, trainer._video_features(
            trainer.model, video["pixel_values_videos"], video["video_grid_thw"]
        )


@pytest.mark.parametrize("name", ["shuffle", "half"])
def test_one_counterfactual_per_prompt_unless_per_row(eight_frames, name):
    trainer, batch = eight_frames
    video, feats = _features(trainer, batch)
    kind = "visual" if name == "half" else "temporal"
    args = trainer.args
    saved = (args.ktr_visual_perturbation, args.ktr_temporal_perturbation, args.ktr_perturbation_draw)
    try:
        args.ktr_visual_perturbation, args.ktr_temporal_perturbation = "half", "shuffle"
        out = {}
        for draw in ("prompt", "row"):
            args.ktr_perturbation_draw = draw
            trainer._ktr_generator.manual_seed(1)
            out[draw], ok = trainer._perturbed_features(feats, video, kind, group=2)
            assert ok.all()
    finally:
        args.ktr_visual_perturbation, args.ktr_temporal_perturbation, args.ktr_perturbation_draw = saved
    # the G = 2 copies of a prompt share the draw; per-row draws differ for some copy
    assert all(torch.equal(out["prompt"][g], out["prompt"][g + 1]) for g in (0, 2))
    assert any(not torch.equal(out["row"][g], out["row"][g + 1]) for g in (0, 2))
    assert any(not torch.equal(p, f) for p, f in zip(out["prompt"], feats, strict=True))


def _loss_and_grads(trainer, batch):
    model = trainer.model
    model.zero_grad(set_to_none=True)
    loss = trainer._compute_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_skipping_zero_advantage_groups_is_exact(eight_frames, monkeypatch):
    trainer, batch = eight_frames
    batch = {**batch, "advantages": batch["advantages"].clone()}
    batch["advantages"][:2] = 0.0  # the first prompt's group: all-zero advantages
    base = {k: v for k, v in batch.items() if not k.startswith("ktr_token_")}
    skipped = dict(base)
    trainer._attach_selection(skipped, trainer._batch_video(skipped))
    assert trainer._metrics["train"]["ktr/skipped_frac"][-1] == 0.5
    every = dict(base)
    monkeypatch.setattr(trainer, "_rows_to_score", lambda adv, group: torch.ones_like(adv, dtype=torch.bool))
    trainer._attach_selection(every, trainer._batch_video(every))
    assert not skipped["ktr_token_mask"][:2].any() and every["ktr_token_mask"][:2].any()
    assert torch.equal(skipped["ktr_token_mask"][2:], every["ktr_token_mask"][2:])  # same whole-group masks
    loss_skip, grads_skip = _loss_and_grads(trainer, skipped)
    loss_all, grads_all = _loss_and_grads(trainer, every)
    assert torch.equal(loss_skip, loss_all)
    assert all(torch.equal(grads_skip[n], grads_all[n]) for n in grads_all)


@pytest.mark.parametrize(
    "fields, exact",
    [
        ({}, True),
        ({"ktr_scope": "sequence"}, True),
        ({"ktr_scope": "batch"}, False),  # a batch threshold depends on every row
        ({"ktr_mask_kl": True, "beta": 0.04}, False),  # the mask gates the KL of zero-advantage rows too
        ({"ktr_mask_kl": True, "beta": 0.0}, True),
        ({"aggregation": "token-mean", "ktr_denominator": "selected"}, False),
        ({"ktr_skip_zero_advantage": False}, False),
    ],
)
def test_skip_only_where_exact(make_trainer, fields, exact):
    trainer = make_trainer(method="ktr", **fields)
    advantages = torch.tensor([0.0, 0.0, 1.0, -1.0])
    assert trainer._rows_to_score(advantages, 2).tolist() == (
        [False, False, True, True] if exact else [True] * 4
    )


def test_policy_is_loaded_with_model_init_kwargs_like_the_reference(make_trainer):
    trainer = make_trainer(
        method="grpo", beta=0.04, model_init_kwargs={"dtype": "bfloat16", "attn_implementation": "eager"}
    )
    for model in (trainer.model, trainer.ref_model):
        assert model.dtype == torch.bfloat16
        assert model.config._attn_implementation == "eager"


def test_two_bf16_steps_on_cpu(make_trainer, param_snapshot):
    trainer = make_trainer(method="ktr", bf16=True, beta=0.04, model_init_kwargs={"dtype": "bfloat16"})
    assert trainer.model.dtype == torch.bfloat16 and trainer.ref_model.dtype == torch.bfloat16
    before = param_snapshot(trainer.model)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) and h["grad_norm"] > 0 for h in logs)
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


def test_gradient_checkpointing_trains_exactly_as_without(make_trainer):
    params = {}
    for checkpointing in (False, True):
        trainer = make_trainer(method="ktr", beta=0.04, max_steps=1, gradient_checkpointing=checkpointing)
        trainer.train()
        params[checkpointing] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert all(torch.allclose(params[True][n], params[False][n], rtol=0, atol=1e-7) for n in params[False])


def test_lora_trains_the_adapter_only_with_accumulation(make_trainer, param_snapshot):
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    trainer = make_trainer(
        method="ktr",
        beta=0.04,  # the reference is the model with the adapter disabled
        recipe={"lora": lora},
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=2,
    )
    before = param_snapshot(trainer.model)
    trainer.train()
    after = dict(trainer.model.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(before[n], p)}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_B" in n for n in changed)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs[-1]["kl"] > 0  # the adapter moved the policy away from the adapter-free reference


def test_generation_logps_and_entropies_equal_a_teacher_forced_forward(make_trainer, rows_of):
    # ktr_full_logps: generation reads the sampling pass's own logits; they must be the policy's log-probs and
    # entropies of the sampled tokens, as a teacher-forced forward with the video computes them.
    trainer = make_trainer(method="ktr", temperature=0.7)
    trainer.model.train()
    seen, attach = {}, trainer._attach_selection

    def spy(output, video):
        seen.update(output)
        attach(output, video)

    trainer._attach_selection = spy
    batch = trainer._generate_and_score_completions(rows_of(trainer))
    assert torch.equal(seen["_generation_logps"], batch["_generation_logps"])  # carried per row
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        logp, entropy, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, ids.size(1) - batch["prompt_ids"].size(1), compute_entropy=True,
            video=trainer._batch_video(batch),
        )  # fmt: skip
    valid = batch["completion_mask"].bool()
    assert valid.sum() > 10
    assert (seen["_generation_logps"] - logp)[valid].abs().max() < 1e-4
    assert (seen["_generation_entropy"] - entropy)[valid].abs().max() < 1e-4
