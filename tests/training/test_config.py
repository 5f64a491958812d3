"""KTRConfig validation: impossible combinations are refused with a message saying what to change."""

from __future__ import annotations

import pytest

from videoktr.errors import UserError
from videoktr.training.config import METHODS, KTRConfig
from videoktr.training.recipe import make_config


def config(tmp_path, **fields):
    return make_config({"output_dir": str(tmp_path), "use_cpu": True, **fields})


def test_defaults_are_valid_and_derive_the_trl_loss_type(tmp_path):
    cfg = config(tmp_path)
    assert isinstance(cfg, KTRConfig)
    assert cfg.method == "ktr" and cfg.selection_signals == ["visual", "temporal", "entropy"]
    assert cfg.loss_type == "grpo"  # aggregation seq-mean-token-mean -> TRL's per-sequence mean
    assert config(tmp_path, aggregation="token-mean").loss_type == "bnpo"
    assert config(tmp_path, aggregation="token-mean-global").loss_type == "dapo"
    assert config(tmp_path, aggregation="seq-mean-token-sum-norm").loss_type == "dr_grpo"


@pytest.mark.parametrize(
    "loss_type, aggregation",
    [
        ("grpo", "seq-mean-token-mean"),
        ("bnpo", "token-mean"),
        ("dapo", "token-mean-global"),
        ("dr_grpo", "seq-mean-token-sum-norm"),
    ],
)
def test_loss_type_alone_sets_the_aggregation(tmp_path, loss_type, aggregation):
    # one source of truth: TRL's loss_type is honoured, never overwritten by the aggregation default
    cfg = config(tmp_path, loss_type=loss_type)
    assert (cfg.aggregation, cfg.loss_type) == (aggregation, loss_type)
    both = config(tmp_path, loss_type=loss_type, aggregation=aggregation)
    assert (both.aggregation, both.loss_type) == (aggregation, loss_type)
    assert cfg.use_bias_correction_kl is False  # plain k3 KL (METHOD 3), unlike TRL's default


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"ktr_visual_fraction": 1.5}, r"ktr_visual_fraction=1.5 is outside \[0, 1\]"),
        ({"ktr_entropy_fraction": -0.1}, r"ktr_entropy_fraction=-0.1 is outside \[0, 1\]"),
        ({"video_frames": 5}, r"video_frames=5 must be even"),
        ({"video_frames": 8, "video_fps": 2.0}, r"set either video_frames or video_fps.*video_frames: null"),
        ({"video_frames": None}, r"set video_frames \(e.g. 16\) or video_fps"),
        ({"method": "ppo"}, r"method='ppo' is not valid; choose one of: " + ", ".join(METHODS)),
        (
            {"ktr_signals": ["visual", "audio"]},
            r"ktr_signals entry='audio' is not valid; choose one of: visual",
        ),
        ({"ktr_signals": []}, r"method='ktr' needs at least one of ktr_signals"),
        ({"ktr_scope": "global"}, r"ktr_scope='global'.*group, sequence, batch"),
        ({"aggregation": "sum"}, r"aggregation='sum'.*seq-mean-token-mean"),
        ({"ktr_segments": 1}, r"ktr_segments=1.*at least 2"),
        ({"tw_alpha": 0.5}, r"tw_alpha=0.5 must be >= 1"),
        ({"length_bonus_min": 600}, r"length_bonus_min must be <= length_bonus_max"),
        ({"beta": 0.04, "use_bias_correction_kl": True}, r"use_bias_correction_kl: false"),
        ({"lerning_rate": 1e-5}, r"unknown KTRConfig fields \['lerning_rate'\]"),
        # TRL loss options KTRTrainer's own loss would silently ignore
        ({"top_entropy_quantile": 0.2}, r"top_entropy_quantile=0.2 .*leave it at 1.0.*method: entropy"),
        (
            {"importance_sampling_level": "sequence"},
            r"importance_sampling_level='sequence' .*leave it at 'token'",
        ),
        ({"entropy_coef": 0.01}, r"entropy_coef=0.01 .*does not implement"),
        # loss_type and aggregation are one setting; TRL loss types our loss does not implement are refused
        ({"loss_type": "cispo"}, r"loss_type='cispo' is not implemented.*grpo, bnpo, dapo, dr_grpo"),
        (
            {"loss_type": "dapo", "aggregation": "seq-mean-token-mean"},
            r"aggregation='seq-mean-token-mean' and loss_type='dapo' disagree",
        ),
        (
            {"use_transformers_continuous_batching": True},
            r"use_transformers_continuous_batching=True is refused",
        ),
        (
            {"aggregation": "token-mean-global", "ktr_denominator": "selected"},
            r"token-mean-global.*ktr_denominator: selected",
        ),
        ({"ktr_perturbation_draw": "batch"}, r"ktr_perturbation_draw='batch'.*prompt, row"),
    ],
)
def test_impossible_combinations_are_refused(tmp_path, fields, message):
    with pytest.raises(UserError, match=message):
        config(tmp_path, **fields)


def test_signal_list_accepts_a_comma_separated_string(tmp_path):
    # what a command-line override `ktr_signals=visual,entropy` gives (a YAML string, not a list)
    assert config(tmp_path, ktr_signals="visual, entropy").selection_signals == ["visual", "entropy"]


def test_method_presets(tmp_path):
    entropy = config(tmp_path, method="entropy")
    assert entropy.selection_signals == ["entropy"] and entropy.selection_scope == "batch"  # 80/20 default
    assert "ktr_scope=batch (method default)" in entropy.effective_loss_settings()
    # a scope the user sets is honoured, never silently replaced by the method's default
    assert config(tmp_path, method="entropy", ktr_scope="group").selection_scope == "group"
    assert config(tmp_path, method="ktr").selection_scope == "group"
    assert config(tmp_path, method="grpo").selection_signals == []
    assert config(tmp_path, method="tw_grpo").selection_signals == []
    ktr = config(tmp_path, ktr_visual_fraction=0.1, ktr_scope="sequence")
    assert ktr.selection_fractions == {"visual": 0.1, "temporal": 0.2, "entropy": 0.2}
    assert ktr.selection_scope == "sequence"
