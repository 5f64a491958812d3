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
        "beta=0.0 (method default), tw_alpha=1.7"
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
