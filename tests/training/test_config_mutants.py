"""KTRConfig, pinned where mutation testing (docs/testing.md, module training/setup) found nothing checking it:
the whole text of every refusal (a message is the user's only guide to the fix), every accepted value of every
choice, the boundaries of the numeric checks, the derived views the trainer reads and the method presets."""

from __future__ import annotations

import pytest

from videoktr.errors import UserError
from videoktr.training.config import KTRConfig
from videoktr.training.recipe import make_config


def config(tmp_path, **fields) -> KTRConfig:
    return make_config({"output_dir": str(tmp_path), "use_cpu": True, **fields})


def refusal(tmp_path, **fields) -> str:
    """The whole message make_config gives for ``fields`` (it prefixes KTRConfig's ValueError with 'trainer: ')."""
    with pytest.raises(UserError) as err:
        config(tmp_path, **fields)
    return str(err.value)


# ------------------------------------------------------------------------------------------------ choices
CHOICES = {
    "method": ("grpo", "ktr", "entropy", "t_grpo", "tw_grpo"),
    "ktr_scope": ("group", "sequence", "batch"),
    "ktr_combine": ("union", "intersection"),
    "ktr_visual_perturbation": ("zero", "half", "replace", "drop"),
    "ktr_temporal_perturbation": ("shuffle", "reverse", "segment_shuffle"),
    "ktr_temporal_level": ("feature", "frame"),
    "ktr_distance": ("logprob", "l1", "l2", "kl", "jsd", "cosine", "hellinger"),
    "ktr_weighting": ("binary", "softmax", "sigmoid", "linear", "exponential"),
    "ktr_denominator": ("valid", "selected"),
    "ktr_perturbation_draw": ("prompt", "row"),
    "ktr_full_logps": ("generation", "forward"),
}


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_every_choice_is_accepted_and_a_bad_one_lists_them_all(tmp_path, name):
    for value in CHOICES[name]:
        assert getattr(config(tmp_path, **{name: value}), name) == value
    expected = f"trainer: {name}='nope' is not valid; choose one of: {', '.join(CHOICES[name])}"
    assert refusal(tmp_path, **{name: "nope"}) == expected


def test_a_bad_signal_and_an_empty_signal_list(tmp_path):
    assert refusal(tmp_path, ktr_signals=["visual", "audio"]) == (
        "trainer: ktr_signals entry='audio' is not valid; choose one of: visual, temporal, entropy"
    )
    assert refusal(tmp_path, ktr_signals=[]) == (
        "trainer: method='ktr' needs at least one of ktr_signals: visual, temporal, entropy"
    )
    # only method ktr reads the signals: another method with none is fine
    assert config(tmp_path, method="grpo", ktr_signals=[]).selection_signals == []
    # " visual,, entropy ": empty entries and spaces dropped
    assert config(tmp_path, ktr_signals=" visual,, entropy ").ktr_signals == ["visual", "entropy"]


# ------------------------------------------------------------------------------------------- numeric checks
@pytest.mark.parametrize("name", ["ktr_visual_fraction", "ktr_temporal_fraction", "ktr_entropy_fraction"])
def test_fractions_are_checked_inclusive_of_0_and_1(tmp_path, name):
    assert getattr(config(tmp_path, **{name: 0.0}), name) == 0.0
    assert getattr(config(tmp_path, **{name: 1.0}), name) == 1.0
    for bad in (1.5, -0.5):
        assert refusal(tmp_path, **{name: bad}) == (
            f"trainer: {name}={bad} is outside [0, 1]; it is the fraction of valid tokens kept"
        )


def test_segments_video_frames_and_fps(tmp_path):
    assert config(tmp_path, ktr_segments=2).ktr_segments == 2
    assert refusal(tmp_path, ktr_segments=1) == (
        "trainer: ktr_segments=1: segment_shuffle needs at least 2 segments"
    )
    assert config(tmp_path, video_frames=2).video_frames == 2
    for bad in (0, 5):  # 0 < 2; 5 is odd
        assert refusal(tmp_path, video_frames=bad) == (
            f"trainer: video_frames={bad} must be even and >= 2 (Qwen2.5-VL pairs frames)"
        )
    by_fps = config(tmp_path, video_frames=None, video_fps=2.0)
    assert (by_fps.video_frames, by_fps.video_fps) == (None, 2.0)
    assert refusal(tmp_path, video_fps=2.0) == (
        "trainer: set either video_frames or video_fps, not both (set video_frames: null to use fps)"
    )
    assert refusal(tmp_path, video_frames=None) == "trainer: set video_frames (e.g. 16) or video_fps"


def test_length_bonus_bounds_may_be_equal(tmp_path):
    assert config(tmp_path, length_bonus_min=400, length_bonus_max=400).length_bonus_min == 400
    assert refusal(tmp_path, length_bonus_min=401, length_bonus_max=400) == (
        "trainer: length_bonus_min must be <= length_bonus_max"
    )


def test_score_batch_size_and_tw_alpha(tmp_path):
    assert config(tmp_path, ktr_score_batch_size=1).ktr_score_batch_size == 1
    assert config(tmp_path, ktr_score_batch_size=None).ktr_score_batch_size is None
    assert refusal(tmp_path, ktr_score_batch_size=0) == (
        "trainer: ktr_score_batch_size=0 must be >= 1 (or null: all rows)"
    )
    assert config(tmp_path, tw_alpha=1.0).tw_alpha == 1.0
    assert (
        refusal(tmp_path, tw_alpha=0.9) == "trainer: tw_alpha=0.9 must be >= 1 (weights run from 1 to alpha)"
    )


def test_bias_correction_is_refused_only_with_a_kl_term(tmp_path):
    # beta 0: there is no KL term to correct, so the flag changes nothing and is accepted
    assert config(tmp_path, beta=0.0, use_bias_correction_kl=True).use_bias_correction_kl is True
    assert refusal(tmp_path, beta=0.04, use_bias_correction_kl=True) == (
        "trainer: use_bias_correction_kl=True is not implemented by KTRTrainer (it uses the plain k3 KL); "
        "set use_bias_correction_kl: false"
    )


@pytest.mark.parametrize(
    "name, value, default",
    [
        ("importance_sampling_level", "sequence", "'token'"),
        ("top_entropy_quantile", 0.2, "1.0"),
        ("delta", 2.0, "None"),
        ("off_policy_mask_threshold", 0.5, "None"),
        ("entropy_coef", 0.01, "0.0"),
        ("use_adaptive_entropy", True, "False"),
    ],
)
def test_trl_loss_options_our_loss_ignores_are_refused(tmp_path, name, value, default):
    assert refusal(tmp_path, **{name: value}) == (
        f"trainer: {name}={value!r} is a TRL GRPO loss option KTRTrainer's loss does not implement; "
        f"leave it at {default} (for the 80/20 entropy baseline use method: entropy)"
    )


@pytest.mark.parametrize(
    "name, why",
    [
        (
            "use_transformers_continuous_batching",
            "continuous batching generates from token ids only, without the video; set it to false",
        ),
        ("use_liger_kernel", "the Liger GRPO loss replaces KTRTrainer's masked loss; set it to false"),
        ("sync_ref_model", "not implemented by KTRTrainer; set it to false"),
    ],
)
def test_trl_options_ktr_trainer_cannot_honour_are_refused(tmp_path, name, why):
    assert refusal(tmp_path, **{name: True}) == f"trainer: {name}=True is refused: {why}"


def test_dapo_with_the_selected_denominator(tmp_path):
    assert config(tmp_path, aggregation="token-mean-global").ktr_denominator == "valid"
    assert config(tmp_path, ktr_denominator="selected").aggregation == "seq-mean-token-mean"
    assert refusal(tmp_path, aggregation="token-mean-global", ktr_denominator="selected") == (
        "trainer: aggregation token-mean-global (TRL dapo) normalises by the valid tokens of the accumulated "
        "batch; with ktr_denominator: selected use aggregation: token-mean or seq-mean-token-mean"
    )


def test_loss_type_and_aggregation_messages(tmp_path):
    assert refusal(tmp_path, loss_type="cispo") == (
        "trainer: loss_type='cispo' is not implemented by KTRTrainer's loss; choose one of grpo, bnpo, dapo, "
        "dr_grpo (or set aggregation: seq-mean-token-mean, token-mean, token-mean-global, seq-mean-token-sum-norm)"
    )
    assert refusal(tmp_path, loss_type="dapo", aggregation="token-mean") == (
        "trainer: aggregation='token-mean' and loss_type='dapo' disagree (aggregation token-mean is TRL's bnpo); "
        "set only one of them"
    )
    assert refusal(tmp_path, aggregation="sum") == (
        "trainer: aggregation='sum' is not valid; choose one of: seq-mean-token-mean, token-mean, "
        "token-mean-global, seq-mean-token-sum-norm"
    )


def test_t_grpo_with_two_generations_is_accepted(tmp_path):
    # TRL refuses num_generations < 2 itself (before our check); 2 is the smallest T-GRPO can split (1 shuffled)
    assert (
        config(tmp_path, method="t_grpo", num_generations=2, per_device_train_batch_size=2).method == "t_grpo"
    )


# ------------------------------------------------------------------------------------ whole groups per process
@pytest.mark.parametrize("method", ["ktr", "entropy", "tw_grpo"])
def test_each_process_batch_holds_whole_groups(tmp_path, monkeypatch, method):
    # 2 processes x 3 rows = 6 rows, divisible by G = 2 (TRL's check of the global batch passes), but each
    # process holds 3 rows = 1.5 groups: the per-process check must refuse it
    monkeypatch.setattr(KTRConfig, "world_size", property(lambda self: 2))
    fields = dict(method=method, num_generations=2, per_device_train_batch_size=3)
    assert refusal(tmp_path, **fields) == (
        "trainer: each process's generation batch (per_device_train_batch_size * steps_per_generation = 3 rows) "
        "must hold whole groups of num_generations=2: key tokens and TW-GRPO weights are computed on whole "
        "groups; change per_device_train_batch_size or steps_per_generation"
    )
    # 2 processes x 1 row x 2 steps per generation: each process's generation batch is 1 * 2 = 2 rows (one
    # group), although each micro-batch holds 1 row; tw_grpo needs whole groups per micro-batch only with
    # tw_weight_grad
    ok = config(
        tmp_path, method=method, num_generations=2, per_device_train_batch_size=1, steps_per_generation=2,
        tw_weight_grad=False,
    )  # fmt: skip
    assert ok.steps_per_generation == 2
    # grpo and t_grpo group rows across processes as TRL does: no per-process rule
    assert config(tmp_path, method="grpo", num_generations=2, per_device_train_batch_size=3).method == "grpo"


def test_tw_weight_grad_needs_one_step_per_generation(tmp_path):
    fields = dict(method="tw_grpo", num_generations=2, per_device_train_batch_size=2, steps_per_generation=2)
    assert refusal(tmp_path, **fields) == (
        "trainer: tw_weight_grad=true (gradient through TW-GRPO's weights, as the authors) computes the weights in "
        "the loss forward, so every micro-batch must hold whole groups; with steps_per_generation=2 TRL splits "
        "each group over micro-batches. Set steps_per_generation=1 (generate at every micro-step), or "
        "tw_weight_grad=false (weights without gradient, computed on whole groups at the rollout)"
    )
    assert config(tmp_path, **fields, tw_weight_grad=False).steps_per_generation == 2
    assert config(tmp_path, **{**fields, "steps_per_generation": 1}).tw_weight_grad is True
    assert config(tmp_path, **{**fields, "method": "ktr"}).steps_per_generation == 2


def test_use_vllm_is_checked_against_the_config(tmp_path, monkeypatch):
    # vLLM is not installed here: its absence is the refusal
    assert refusal(tmp_path, use_vllm=True).startswith("trainer: use_vllm=True is refused: vLLM ")
    # with the supported release present, the config itself is checked (ktr scores need forward log-probs)
    monkeypatch.setattr("videoktr.vllm.install.vllm_problem", lambda: None)
    assert refusal(tmp_path, use_vllm=True, vllm_mode="colocate") == (
        "trainer: ktr_full_logps='generation' records the logits of transformers' generate, which vLLM rollouts "
        "do not run; with use_vllm: true set ktr_full_logps: forward"
    )


# ------------------------------------------------------------------------------------- presets and views
def test_method_defaults_fill_only_what_is_unset(tmp_path):
    ktr = config(tmp_path)
    assert ktr.method_defaults == {"aggregation": "seq-mean-token-mean", "beta": 0.04, "ktr_scope": "group"}
    assert (ktr.aggregation, ktr.beta, ktr.ktr_scope, ktr.epsilon_high) == (
        "seq-mean-token-mean",
        0.04,
        "group",
        None,
    )
    tw = config(tmp_path, method="tw_grpo")
    assert tw.method_defaults == {
        "aggregation": "token-mean", "epsilon_high": 0.28, "beta": 0.0, "ktr_scope": "group",
    }  # fmt: skip
    entropy = config(tmp_path, method="entropy", beta=0.01, loss_type="dapo")
    assert entropy.method_defaults == {"ktr_scope": "batch"}
    assert (entropy.aggregation, entropy.beta) == ("token-mean-global", 0.01)


def test_effective_loss_settings_line(tmp_path):
    # ktr: the scope is listed (a selection method); epsilon_high unset reads as epsilon
    assert config(tmp_path).effective_loss_settings() == (
        "method=ktr, aggregation=seq-mean-token-mean (method default), epsilon=0.2, epsilon_high=0.2, "
        "beta=0.04 (method default), ktr_scope=group (method default)"
    )
    # grpo: no selection, no scope; values the user set carry no mark
    assert config(
        tmp_path, method="grpo", beta=0.0, aggregation="token-mean", epsilon_high=0.3
    ).effective_loss_settings() == (
        "method=grpo, aggregation=token-mean, epsilon=0.2, epsilon_high=0.3, beta=0.0"
    )


def test_video_sampling_carries_every_field(tmp_path):
    cfg = config(
        tmp_path, video_frames=None, video_fps=1.5, video_max_frames=24, video_min_frames=6,
        video_min_pixels=4 * 28 * 28, video_max_pixels=64 * 28 * 28,
    )  # fmt: skip
    s = cfg.video_sampling()
    assert (s.num_frames, s.fps, s.max_frames, s.min_frames, s.min_pixels, s.max_pixels) == (
        None, 1.5, 24, 6, 4 * 28 * 28, 64 * 28 * 28,
    )  # fmt: skip
    assert config(tmp_path, video_frames=8).video_sampling().num_frames == 8


def test_selection_views(tmp_path):
    ktr = config(tmp_path, ktr_signals=["temporal"], ktr_temporal_fraction=0.3, ktr_entropy_fraction=0.4)
    assert ktr.selection_signals == ["temporal"]
    assert ktr.selection_fractions == {"visual": 0.2, "temporal": 0.3, "entropy": 0.4}
    assert config(tmp_path, method="entropy").selection_signals == ["entropy"]
    assert config(tmp_path, method="t_grpo").selection_signals == []


def test_tw_grpo_settings_line_lists_its_own_options(tmp_path):
    # tw_grpo: alpha and the weight-gradient switch are part of the loss; no scope (no selection)
    assert config(
        tmp_path, method="tw_grpo", tw_alpha=1.5, tw_weight_grad=False
    ).effective_loss_settings() == (
        "method=tw_grpo, aggregation=token-mean (method default), epsilon=0.2, epsilon_high=0.28 (method default), "
        "beta=0.0 (method default), tw_alpha=1.5, tw_weight_grad=False"
    )
