"""``method: tw_grpo`` gives TW-GRPO's loss by default (token-mean, clip 0.2 / 0.28, beta 0, alpha 1.7), each
overridable, and the paper recipes read as their comments say."""

from pathlib import Path

import pytest

from videoktr.training.config import KTRConfig
from videoktr.training.recipe import load_recipe, make_config

CONFIGS = Path(__file__).parents[2] / "configs" / "paper"


def config(**kwargs) -> KTRConfig:
    return KTRConfig(output_dir="unused", use_cpu=True, bf16=False, **kwargs)


def test_tw_grpo_defaults_are_the_authors():
    c = config(method="tw_grpo")
    assert (c.aggregation, c.loss_type, c.epsilon, c.epsilon_high, c.beta, c.tw_alpha) == (
        "token-mean", "bnpo", 0.2, 0.28, 0.0, 1.7,
    )  # fmt: skip
    assert c.effective_loss_settings() == (
        "method=tw_grpo, aggregation=token-mean (method default), epsilon=0.2, epsilon_high=0.28 (method default), "
        "beta=0.0 (method default), tw_alpha=1.7, tw_weight_grad=True"
    )


def test_every_tw_grpo_default_is_overridable():
    c = config(method="tw_grpo", aggregation="seq-mean-token-mean", epsilon_high=0.2, beta=0.04, tw_alpha=1.4)
    assert (c.aggregation, c.epsilon_high, c.beta, c.tw_alpha) == ("seq-mean-token-mean", 0.2, 0.04, 1.4)
    assert "(method default)" not in c.effective_loss_settings()
    assert config(method="tw_grpo", loss_type="grpo").aggregation == "seq-mean-token-mean"


@pytest.mark.parametrize("method", ["grpo", "ktr", "entropy", "t_grpo"])
def test_other_methods_keep_their_defaults(method):
    c = config(method=method)
    assert (c.aggregation, c.beta, c.epsilon_high in (None, 0.2)) == ("seq-mean-token-mean", 0.04, True)


def test_paper_recipes():
    authors = load_recipe(CONFIGS / "tw_grpo.yaml", ["bf16=false", "use_cpu=true"])
    c = make_config(authors.trainer)
    assert authors.rewards == ["tw_soft_mc", "tw_format"] and authors.freeze_vision
    assert (c.method, c.aggregation, c.epsilon_high, c.beta, c.tw_alpha) == (
        "tw_grpo",
        "token-mean",
        0.28,
        0.0,
        1.7,
    )
    assert (c.learning_rate, c.num_generations, c.max_completion_length, c.max_grad_norm) == (
        1e-6,
        8,
        4096,
        20,
    )
    assert (c.video_fps, c.video_frames, c.video_max_frames) == (2.0, None, 16)
    assert (c.video_min_pixels, c.video_max_pixels) == (128 * 28 * 28, 196 * 28 * 28)
    assert (c.prompt_template, c.length_bonus, c.top_k) == ("tw-grpo", False, 50)
    controlled = load_recipe(CONFIGS / "tw_grpo_controlled.yaml", ["bf16=false", "use_cpu=true"])
    k = make_config(controlled.trainer)
    assert controlled.rewards == ["accuracy", "format"]
    assert (k.method, k.aggregation, k.epsilon_high, k.beta, k.learning_rate) == (
        "tw_grpo",
        "token-mean",
        0.28,
        0.0,
        2e-6,
    )


def test_gradient_through_the_weights_needs_whole_groups_per_micro_batch():
    assert config(method="tw_grpo").tw_weight_grad  # the authors' default
    with pytest.raises(
        ValueError, match=r"tw_weight_grad=true.*steps_per_generation=1.*tw_weight_grad=false"
    ):
        config(method="tw_grpo", per_device_train_batch_size=8, gradient_accumulation_steps=2)
    ok = config(
        method="tw_grpo", tw_weight_grad=False, per_device_train_batch_size=8, gradient_accumulation_steps=2
    )
    assert ok.steps_per_generation == 2
    config(
        method="tw_grpo", per_device_train_batch_size=8, gradient_accumulation_steps=2, steps_per_generation=1
    )
    # the option only concerns TW-GRPO
    config(method="grpo", per_device_train_batch_size=8, gradient_accumulation_steps=2)


def _one_step(make_trainer, param_snapshot, tw_weight_grad, capture=False, **fields):
    """One optimiser step of TW-GRPO on 2 prompts x G=4 per micro-batch (TRL shuffles the rows); returns the loss of
    each micro-batch, the parameter update and, with ``capture``, each loss call's (group ids, valid, logits,
    weights) as the loss forward saw them."""
    import torch

    torch.manual_seed(0)
    trainer = make_trainer(
        rewards=[graded],
        method="tw_grpo",
        tw_weight_grad=tw_weight_grad,
        num_generations=4,
        per_device_train_batch_size=8,
        **{"max_steps": 1, "learning_rate": 1e-2, **fields},
    )
    before = param_snapshot(trainer.model)
    losses, calls = [], []
    original_loss, original_pass = trainer._compute_loss, getattr(trainer, "_tw_policy_pass", None)

    def wrapped_loss(model, inputs):
        loss = original_loss(model, inputs)
        losses.append(loss.detach().clone())
        return loss

    def wrapped_pass(
        model, input_ids, attention_mask, completion_ids, valid, video, features, image_kwargs, inputs
    ):
        full_logits, seen = trainer.forwards.full_logits, []

        def keep(*args, **kwargs):
            seen.append(full_logits(*args, **kwargs))
            return seen[-1]

        trainer.forwards.full_logits = keep
        try:
            out = original_pass(
                model, input_ids, attention_mask, completion_ids, valid, video, features, image_kwargs, inputs
            )
        finally:
            trainer.forwards.full_logits = full_logits
        calls.append((inputs["group_ids"].clone(), valid.clone(), seen[0].detach(), out[2].detach()))
        return out

    trainer._compute_loss = wrapped_loss
    if capture:
        trainer._tw_policy_pass = wrapped_pass
    trainer.train()
    after = param_snapshot(trainer.model)
    return losses, {n: after[n] - before[n] for n in before}, calls


def graded(completions, **kwargs) -> list[float]:
    """Rewards 0, 0.3, 1, 0.6, ... by row: distinct within every group (non-zero advantages that do not cancel)."""
    return [(0.0, 0.3, 1.0, 0.6)[i % 4] for i in range(len(completions))]


def test_weights_with_gradient_are_each_groups_own(make_trainer, param_snapshot):
    """The loss forward's weights equal TW-GRPO's formula applied to each prompt's own rows, although TRL shuffled
    the micro-batch (pooling rows by position instead of by group would give other weights)."""
    import torch

    from videoktr import core

    _, _, calls = _one_step(make_trainer, param_snapshot, True, capture=True)
    assert calls
    shuffled = False
    for group_ids, valid, logits, weights in calls:
        shuffled |= not torch.equal(group_ids, torch.sort(group_ids).values)
        assert len(set(group_ids.tolist())) >= 2
        for g in set(group_ids.tolist()):
            rows = (group_ids == g).nonzero().flatten()
            expected = core.tw_token_weights(logits[rows], valid[rows], group_size=len(rows), alpha=1.7)
            torch.testing.assert_close(weights[rows], expected)
    assert shuffled, "TRL's shuffle left the rows in group order: this test would not see a grouping error"


def test_gradient_flows_through_the_weights(make_trainer, monkeypatch):
    """The loss's gradient with the weights' gradient (tw_weight_grad) against the same loss with the weights
    detached, on a micro-batch the trainer really used, evaluated after two SGD steps (the ratio is no longer 1).

    Where the ratio is 1 and every row of a group is valid at a position, the weights' term
    sum_t dw_t * sum_i ratio_i * A_i cancels (group advantages sum to 0); off-policy (here) it does not."""
    import torch

    from videoktr import core

    trainer = make_trainer(
        rewards=[graded],
        method="tw_grpo",
        num_generations=4,
        per_device_train_batch_size=8,
        num_iterations=2,
        max_steps=2,
        optim="sgd",
        learning_rate=1e-1,
    )
    seen, original = [], trainer._compute_loss

    def keep(model, inputs):
        seen.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})
        return original(model, inputs)

    trainer._compute_loss = keep
    trainer.train()
    trainer._compute_loss = original
    assert len(seen) == 2
    trainer.model.train()
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    by_group = core.tw_token_weights_by_group

    def gradient(inputs, detach: bool) -> torch.Tensor:
        weights = (lambda *a, **k: by_group(*a, **k).detach()) if detach else by_group
        monkeypatch.setattr(core, "tw_token_weights_by_group", weights)
        grads = torch.autograd.grad(trainer._compute_loss(trainer.model, inputs), params, allow_unused=True)
        return torch.cat([g.flatten() for g in grads if g is not None])

    with_w, without_w = gradient(seen[-1], False), gradient(seen[-1], True)
    difference = float((with_w - without_w).abs().max()) / float(with_w.abs().max())
    assert difference > 1e-3, difference
