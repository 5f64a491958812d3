"""Ablation helpers used by the TW-GRPO soft vs binary comparison: variant rewards, intervals, paired tables."""

import pytest

from videoktr.ablate import _load, interval, partial_credit_tables
from videoktr.errors import UserError


def test_interval_is_a_t_interval_over_seeds():
    # mean 0.5, sample std 0.1, n = 3: half-width 4.303 * 0.1 / sqrt(3) = 0.2484
    assert interval([0.4, 0.5, 0.6]) == "+50.0 [+25.2, +74.8]"
    assert interval([0.3]) == "30.0" and interval([]) == "n/a"


def test_variant_rewards_and_unknown_keys(tmp_path):
    good = tmp_path / "a.yaml"
    good.write_text("variants:\n  - {name: soft, method: tw_grpo, rewards: [tw_soft_mc, tw_format]}\n")
    _, variants = _load(str(good))
    assert variants[0]["rewards"] == ["tw_soft_mc", "tw_format"]
    bad = tmp_path / "b.yaml"
    bad.write_text("variants:\n  - {name: soft, method: tw_grpo, reward: [tw_soft_mc]}\n")
    with pytest.raises(UserError, match=r"variant 'soft' has unknown keys \['reward'\]"):
        _load(str(bad))


def test_paired_differences_by_seed():
    rows = [
        {"variant": "a", "seed": s, "accuracy": acc, "score": sc, "score_static": sc, "score_temporal": sc}
        for s, acc, sc in ((0, 0.5, 0.6), (1, 0.4, 0.5), (2, 0.6, 0.7))
    ] + [
        {"variant": "b", "seed": s, "accuracy": acc, "score": sc, "score_static": sc, "score_temporal": sc}
        for s, acc, sc in ((0, 0.6, 0.6), (1, 0.5, 0.5), (2, 0.7, 0.7))
    ]
    sft = {"mean_score": 0.3, "by_category_mean_score": {"family/static": 0.4, "family/temporal": 0.2}}
    text = partial_credit_tables(rows, ["a", "b"], sft)
    assert "| SFT checkpoint (no RL) | - | 30.0 | 40.0 | 20.0 |" in text
    assert "| a | 3 | 60.0 +- 10.0 |" in text
    # b - a: accuracy +10 on every seed (std 0), partial credit 0 on every seed
    assert "| b | 3 | +10.0 [+10.0, +10.0] | +0.0 [+0.0, +0.0] |" in text


def test_variants_with_one_seed_draw_the_same_prompts_in_the_same_order(tmp_path):
    """The paired comparison needs it: every variant of the shipped ablation, at the same seed, feeds TRL's
    RepeatSampler the same arguments, so the RL prompts come in the same order (a different seed changes it)."""
    import dataclasses

    from trl.trainer.utils import RepeatSampler

    from videoktr.ablate import _load
    from videoktr.demo import rl_recipe
    from videoktr.training.recipe import make_config

    base, variants = _load("configs/ablations/synthetic.yaml")
    paths = {"train": tmp_path / "train.json", "root": tmp_path}

    def order(variant, seed):
        cfg = dataclasses.replace(
            base, method=variant["method"], seed=seed,
            trainer_overrides={**base.trainer_overrides, **variant.get("trainer", {})},
        )  # fmt: skip
        args = make_config(rl_recipe(cfg, tmp_path / variant["name"], paths, tmp_path).trainer)
        sampler = RepeatSampler(
            data_source=range(1536), mini_repeat_count=args.num_generations,
            batch_size=args.generation_batch_size // args.num_generations,
            repeat_count=args.num_iterations * args.steps_per_generation, shuffle=args.shuffle_dataset, seed=args.seed,
        )  # fmt: skip
        return list(sampler)[:3200]  # the prompts of 100 steps x 4 prompts x G=8

    first = order(variants[0], 0)
    assert all(order(v, 0) == first for v in variants[1:])
    assert order(variants[0], 1) != first
