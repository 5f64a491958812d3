"""Tests written to kill the mutants that survived `scripts/mutation.sh core` (docs/testing.md).

Each test states the behaviour it pins and, where it is not obvious, the mutant class it catches. Error messages are
matched whole (``exact``): the house rule is that bad input gets an error naming the value and the fix, and a
mutated message (``None``, ``"XX...XX"``, a wrong shape) is a real regression of that rule.
"""

import math
import re

import pytest
import torch

from videoktr.core.attribution import (
    distribution_shift,
    entropy_from_logits,
    logprob_shift,
    selective_log_softmax,
)
from videoktr.core.losses import agg_loss, k3_kl, policy_loss
from videoktr.core.perturbations import (
    TEMPORAL_PERTURBATIONS,
    apply_perturbation,
    random_derangement_like,
    reverse_permutation,
    segment_shuffle_permutation,
    shuffle_permutation,
    temporal_patch_rows,
)
from videoktr.core.registry import Registry, UnknownNameError
from videoktr.core.selection import key_token_mask, selection_metrics, soft_token_weights, top_fraction_mask
from videoktr.core.tw_grpo import _group_divergence, tw_token_weights, tw_token_weights_by_group


def exact(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern that accepts only this message."""
    return "^" + re.escape(message) + "$"


# ---------------------------------------------------------------------------------------------- perturbations


def test_temporal_patch_rows_errors_name_the_shape():
    with pytest.raises(ValueError, match=exact("grid_thw must have shape (V, 3), got (3,)")):
        temporal_patch_rows(torch.tensor([1, 4, 4]), 2)  # 1-D: caught by the ndim test alone
    with pytest.raises(ValueError, match=exact("grid_thw must have shape (V, 3), got (1, 2)")):
        temporal_patch_rows(torch.tensor([[1, 4]]), 2)
    # h divisible, w not: the `or` of the two remainders (an `and` would accept it)
    with pytest.raises(
        ValueError, match=exact("grid (h=4, w=6) is not divisible by the spatial merge size 4")
    ):
        temporal_patch_rows(torch.tensor([[1, 4, 6]]), 4)


def test_feature_count_mismatch_message():
    grid = torch.tensor([[2, 2, 2], [2, 2, 2]])
    with pytest.raises(ValueError, match=exact("1 feature tensors for 2 videos in grid_thw")):
        apply_perturbation(
            TEMPORAL_PERTURBATIONS, "reverse", (torch.zeros(2, 3),), grid, 2, torch.Generator()
        )


def test_derangement_needs_two_elements():
    with pytest.raises(
        ValueError, match=exact("a non-identity permutation needs at least 2 elements, got 1")
    ):
        random_derangement_like(1, torch.Generator())


@pytest.mark.parametrize(
    "draw",
    [
        lambda g: random_derangement_like(8, g),
        lambda g: shuffle_permutation(8, g),
        lambda g: segment_shuffle_permutation(8, g, n_segments=8),
    ],
)
def test_random_permutations_use_the_generator_not_the_global_rng(draw):
    # Same generator seed, different global seeds -> the same permutation. Passing generator=None (or dropping it)
    # draws from the global RNG: 8! orders, so the two global seeds give different permutations (checked: seeds 1, 2).
    torch.manual_seed(1)
    first = draw(torch.Generator().manual_seed(0))
    torch.manual_seed(2)
    second = draw(torch.Generator().manual_seed(0))
    assert torch.equal(first, second)


def test_two_patches_are_reversed_and_shuffled():
    # t = 2 is the smallest video with a temporal order: the only non-identity order is (1, 0).
    assert reverse_permutation(2, torch.Generator()).tolist() == [1, 0]
    assert segment_shuffle_permutation(2, torch.Generator()).tolist() == [1, 0]
    assert segment_shuffle_permutation(6, torch.Generator(), n_segments=2).tolist() == [3, 4, 5, 0, 1, 2]


def test_segment_shuffle_defaults_to_four_segments():
    # t = 8, 4 segments -> blocks [0,1] [2,3] [4,5] [6,7] moved whole; 5 segments would split 2,2,2,1,1.
    for seed in range(5):
        perm = segment_shuffle_permutation(8, torch.Generator().manual_seed(seed)).reshape(4, 2)
        assert (perm[:, 0] % 2 == 0).all() and (perm[:, 1] == perm[:, 0] + 1).all()


def test_apply_perturbation_passes_generator_and_options():
    grid = torch.tensor([[6, 2, 2]])  # 6 temporal patches of 1 row each (merge 2)
    feat = (torch.arange(6.0).unsqueeze(1),)
    (out,) = apply_perturbation(
        TEMPORAL_PERTURBATIONS, "segment_shuffle", feat, grid, 2, torch.Generator(), n_segments=2
    )
    assert out.squeeze(1).tolist() == [
        3.0,
        4.0,
        5.0,
        0.0,
        1.0,
        2.0,
    ]  # 2 segments swapped (default 4 would not)
    torch.manual_seed(1)
    (a,) = apply_perturbation(
        TEMPORAL_PERTURBATIONS, "shuffle", feat, grid, 2, torch.Generator().manual_seed(3)
    )
    torch.manual_seed(2)
    (b,) = apply_perturbation(
        TEMPORAL_PERTURBATIONS, "shuffle", feat, grid, 2, torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b)


def test_temporal_strategy_permutes_each_video_with_its_own_t():
    # Two videos, t = 3 and t = 2; rows per patch h*w/merge^2 with merge 2.
    grid = torch.tensor([[3, 2, 4], [2, 2, 2]])  # rows per patch: 2*4/4 = 2 and 2*2/4 = 1
    feats = (torch.arange(6.0).unsqueeze(1), torch.arange(2.0).unsqueeze(1) + 10)
    out = apply_perturbation(TEMPORAL_PERTURBATIONS, "reverse", feats, grid, 2, torch.Generator())
    assert out[0].squeeze(1).tolist() == [4.0, 5.0, 2.0, 3.0, 0.0, 1.0]
    assert out[1].squeeze(1).tolist() == [11.0, 10.0]
    single = apply_perturbation(
        TEMPORAL_PERTURBATIONS, "reverse", (feats[1][:1],), torch.tensor([[1, 2, 2]]), 2, None
    )
    assert single == (None,)


# ------------------------------------------------------------------------------------------------ attribution


def test_chunk_argument_errors():
    logits = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match=exact("logits must have shape (N, T, V), got (2, 3)")):
        entropy_from_logits(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=exact("temperature must be > 0, got 0.0")):
        entropy_from_logits(logits, temperature=0.0)
    with pytest.raises(ValueError, match=exact("chunk_size must be >= 1, got 0")):
        entropy_from_logits(logits, chunk_size=0)
    with pytest.raises(ValueError, match=exact("index must have shape (1, 2), got (1, 3)")):
        selective_log_softmax(logits, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=exact("logp (1, 2) and logp_perturbed (2, 1) differ")):
        logprob_shift(torch.zeros(1, 2), torch.zeros(2, 1))
    with pytest.raises(ValueError, match=exact("logits_a (1, 2, 3) and logits_b (1, 2, 4) differ")):
        distribution_shift(logits, torch.zeros(1, 2, 4))


def test_distribution_shift_default_metric_is_kl():
    a, b = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0)).unbind(0)
    a, b = a.unsqueeze(0), b.unsqueeze(0)
    assert torch.equal(distribution_shift(a, b), distribution_shift(a, b, metric="kl"))


def test_kl_with_banned_tokens_is_finite():
    # Token 2 banned (-inf) in both: p = 0 there, so its term is 0 (0 * log 0 = 0), not NaN. With the guard p >= 0
    # the term would be 0 * (-inf - -inf) = NaN. KL([1/2, 1/2] || [1/4, 3/4]) = 0.5 ln 2 + 0.5 ln(2/3).
    a = torch.tensor([[[0.0, 0.0, -math.inf]]])
    b = torch.tensor([[[0.0, math.log(3.0), -math.inf]]])
    expected = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    assert distribution_shift(a, b, metric="kl").item() == pytest.approx(expected, abs=1e-6)


# -------------------------------------------------------------------------------------------------- selection


def test_num_kept_uses_float64():
    # 22 valid tokens x 0.5 = 11 kept; the same product in float32 rounded to 9 decimals overshoots 11 and ceil
    # gives 12 (found by brute force over n < 200 and fractions in 0.01 steps).
    scores = torch.arange(22.0).unsqueeze(0)
    mask = top_fraction_mask(scores, torch.ones_like(scores, dtype=torch.bool), 0.5, scope="sequence")
    assert int(mask.sum()) == 11 and mask[0, 11:].all()


def test_integer_scores_are_accepted():
    scores = torch.tensor([[3, 1, 2, 0]])
    mask = top_fraction_mask(scores, torch.tensor([[1, 1, 1, 0]]), 0.5, scope="sequence")
    assert mask.tolist() == [[True, False, True, False]]  # ceil(0.5 * 3) = 2 of the 3 valid tokens


def test_score_shape_errors():
    with pytest.raises(
        ValueError, match=exact("scores must have shape (N, T) equal to valid (1, 2, 2), got (1, 2, 2)")
    ):
        top_fraction_mask(torch.zeros(1, 2, 2), torch.ones(1, 2, 2), 0.5, scope="sequence")
    with pytest.raises(
        ValueError, match=exact("scores must have shape (N, T) equal to valid (2, 2), got (2, 3)")
    ):
        soft_token_weights(torch.zeros(2, 3), torch.ones(2, 2), "linear")


def test_top_fraction_mask_default_scope_is_group():
    scores = torch.tensor([[5.0, 4.0], [1.0, 0.0], [3.0, 2.0], [9.0, 8.0]])
    valid = torch.ones_like(scores, dtype=torch.bool)
    default = top_fraction_mask(scores, valid, 0.5, group_size=2)
    assert torch.equal(default, top_fraction_mask(scores, valid, 0.5, scope="group", group_size=2))
    assert default.tolist() == [[True, True], [False, False], [False, False], [True, True]]


def test_key_token_mask_errors():
    valid = torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(
        ValueError, match=exact("fractions is empty: give at least one signal, e.g. {'entropy': 0.2}")
    ):
        key_token_mask({"entropy": torch.zeros(1, 2)}, valid, {})
    with pytest.raises(
        ValueError,
        match=exact("signal_valid names signal(s) ['visual'] that are not in fractions ['entropy']"),
    ):
        key_token_mask(
            {"entropy": torch.zeros(1, 2)}, valid, {"entropy": 0.5}, signal_valid={"visual": valid}
        )


def test_selection_metrics_with_one_valid_token_and_no_rows():
    # One valid token, selected: every ratio has denominator 1 (a `den > 1` guard would report 0).
    mask = torch.tensor([[True, False]])
    valid = torch.tensor([[True, False]])
    m = selection_metrics(mask, {"entropy": mask}, valid, {"entropy": torch.tensor([[2.0, 7.0]])})
    assert m["ktr/selected_frac/union"] == 1.0 and m["ktr/selected_frac/entropy"] == 1.0
    assert m["ktr/score_mean/entropy"] == 2.0
    empty = torch.zeros(0, 3, dtype=torch.bool)
    m = selection_metrics(empty, {"entropy": empty}, empty, {"entropy": torch.zeros(0, 3)})
    assert m["ktr/selected_per_completion/mean"] == 0.0 and m["ktr/selected_per_completion/min"] == 0.0


def test_soft_weights_errors_and_dtype():
    with pytest.raises(ValueError, match=exact("temperature must be > 0, got 0.0")):
        soft_token_weights(torch.zeros(1, 2), torch.ones(1, 2), "linear", temperature=0.0)
    half = soft_token_weights(
        torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float16), torch.ones(1, 3), "softmax"
    )
    assert half.dtype == torch.float32  # low-precision scores are upcast before exp/normalisation


def test_linear_weights_with_a_small_score_span():
    # Scores 0, 0.25, 0.5 (span 0.5 < 1): min-max -> 0, 0.5, 1; normalised to mean 1 over 3 tokens: 0, 1, 2.
    # Treating every span <= 1 as flat would give 1, 1, 1.
    w = soft_token_weights(torch.tensor([[0.0, 0.25, 0.5]]), torch.ones(1, 3), "linear")
    assert w[0].tolist() == pytest.approx([0.0, 1.0, 2.0])


# --------------------------------------------------------------------------------------------------- TW-GRPO


def _reference_tw_weights(logits, valid, group_size, alpha=1.7, clamp=11.0, temperature=1.0):
    """TW-GRPO weights written out position by position (module docstring of core/tw_grpo.py), float64."""
    n, t, v = logits.shape
    out = torch.zeros(n, t, dtype=torch.float64)
    for start in range(0, n, group_size):
        lg = logits[start : start + group_size].double() / temperature
        val = valid[start : start + group_size].bool()
        logp = torch.log_softmax(lg, dim=-1)
        logp = torch.where(val[..., None], logp, torch.full_like(logp, -math.log(v)))
        d = (logp.mean(dim=0) - logp).clamp(-clamp, clamp)
        divergence = (torch.exp(d) - d - 1).sum(dim=-1).mean(dim=0)  # (T,)
        active = val.any(dim=0)
        low, high = divergence[active].min(), divergence[active].max()
        norm = (divergence - low) / (high - low)
        out[start : start + group_size] = torch.where(val, 1 + (alpha - 1) * norm, torch.zeros_like(norm))
    return out


def test_tw_weights_match_the_formula_with_clamping_and_temperature():
    # Logits of scale 40: log-prob gaps between rows reach far beyond 11 at temperature 0.7, so the clamp is
    # active on both sides; checks the temperature (divide, not multiply), the lower and the upper clamp bound.
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, 6, generator=g, dtype=torch.float64) * 40
    valid = torch.ones(4, 5, dtype=torch.bool)
    valid[1, 4] = False
    d = torch.log_softmax(logits[:2] / 0.7, -1)
    assert ((d.mean(0) - d) < -11).any() and ((d.mean(0) - d) > 11).any()
    got = tw_token_weights(logits, valid, group_size=2, temperature=0.7)
    torch.testing.assert_close(got, _reference_tw_weights(logits, valid, 2, temperature=0.7))
    # the default clamp is 11
    torch.testing.assert_close(
        tw_token_weights(logits, valid, group_size=2), _reference_tw_weights(logits, valid, 2)
    )


def test_tw_weights_low_precision_logits_are_upcast():
    # bf16 logits give the weights of the same values in float32 (the divergence is computed in float32).
    logits = (torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(1)) * 3).to(torch.bfloat16)
    valid = torch.ones(2, 4, dtype=torch.bool)
    got = tw_token_weights(logits, valid, group_size=2)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, tw_token_weights(logits.float(), valid, group_size=2), rtol=0, atol=1e-6)


def test_tw_weights_group_of_one_and_all_invalid_group():
    logits = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(2))
    # G = 1: each row is its own group, every divergence is 0 -> all weights 1 (a `group_size < 2` check refuses it)
    assert tw_token_weights(logits, torch.ones(2, 3), group_size=1).tolist() == [[1.0] * 3] * 2
    # a group without valid tokens gets zeros
    assert tw_token_weights(logits, torch.zeros(2, 3), group_size=2).tolist() == [[0.0] * 3] * 2


@pytest.mark.parametrize(
    "kwargs, shown",
    [
        ({"clamp": 0.0}, "0.0, 1.0, 4"),
        ({"temperature": 0.0}, "11.0, 0.0, 4"),
        ({"chunk_size": 0}, "11.0, 1.0, 0"),
    ],
)
def test_tw_weights_refuse_each_bad_setting(kwargs, shown):
    args = {"clamp": 11.0, "temperature": 1.0, "chunk_size": 4} | kwargs
    message = f"clamp and temperature must be > 0 and chunk_size >= 1; got {shown}"
    with pytest.raises(ValueError, match=exact(message)):
        tw_token_weights(torch.zeros(2, 2, 3), torch.ones(2, 2), group_size=2, **args)


def test_tw_weights_accept_a_clamp_below_one():
    logits = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(3))
    got = tw_token_weights(logits, torch.ones(2, 3), group_size=2, clamp=0.5)
    torch.testing.assert_close(got, _reference_tw_weights(logits, torch.ones(2, 3), 2, clamp=0.5).float())


def test_tw_weights_by_group_checks_and_forwards_options():
    logits = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(4))
    valid = torch.ones(4, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=exact("group_ids must be (N,) with N = 4, got (2, 2)")):
        tw_token_weights_by_group(logits, valid, torch.tensor([[0, 0], [1, 1]]), group_size=2)
    ids = torch.tensor([1, 0, 1, 0])
    got = tw_token_weights_by_group(logits, valid, ids, group_size=2, alpha=3.0)
    order = torch.tensor([1, 3, 0, 2])  # group 0 = rows 1, 3; group 1 = rows 0, 2
    expected = tw_token_weights(logits[order], valid[order], group_size=2, alpha=3.0)[torch.argsort(order)]
    torch.testing.assert_close(got, expected)
    assert got.max().item() == pytest.approx(3.0)  # alpha reached the weights (default 1.7 would cap at 1.7)


# -------------------------------------------------------------------------------------------------- registry


def test_registry_refuses_empty_and_non_string_names():
    reg = Registry("thing")
    with pytest.raises(ValueError, match=exact("thing names must be non-empty strings, got ''")):
        reg.add("", 1)
    with pytest.raises(ValueError, match=exact("thing names must be non-empty strings, got 3")):
        reg.add(3, 1)
    with pytest.raises(UnknownNameError) as info:
        reg.get("nope")
    assert (info.value.kind, info.value.name, info.value.valid) == ("thing", "nope", [])


# ---------------------------------------------------------------------------------------------------- losses


def test_k3_kl_value():
    # x = ref - logp = ln 0.25 - ln 0.5 = -ln 2; exp(x) - x - 1 = 0.5 + ln 2 - 1
    got = k3_kl(torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]]))
    assert got.item() == pytest.approx(math.log(2.0) - 0.5, abs=1e-6)


def test_agg_loss_default_and_shape_errors():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    valid = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert agg_loss(per_token, valid, valid).item() == pytest.approx(
        (6 / 3 + 4 / 1) / 2
    )  # seq-mean-token-mean
    ones = torch.ones(2, 3)
    with pytest.raises(
        ValueError,
        match=exact(
            "per_token, weight_mask and denominator_mask must all be (N, T); got (2, 3), (2, 2), (2, 3)"
        ),
    ):
        agg_loss(per_token, torch.ones(2, 2), ones)
    with pytest.raises(
        ValueError,
        match=exact(
            "per_token, weight_mask and denominator_mask must all be (N, T); got (2, 3), (2, 3), (3,)"
        ),
    ):
        agg_loss(per_token, ones, torch.ones(3))
    with pytest.raises(
        ValueError,
        match=exact("per_token, weight_mask and denominator_mask must all be (N, T); got (3,), (3,), (3,)"),
    ):
        agg_loss(torch.ones(3), torch.ones(3), torch.ones(3))


def test_policy_loss_argument_errors():
    logp = torch.zeros(2, 3)
    adv = torch.zeros(2)
    with pytest.raises(ValueError, match=exact("logp must have shape (N, T), got (3,)")):
        policy_loss(torch.zeros(3), None, torch.zeros(3), torch.ones(3))
    message = exact("logp, old_logp and valid must have the same (N, T) shape")
    with pytest.raises(ValueError, match=message):
        policy_loss(logp, None, adv, torch.ones(2, 2))  # valid alone is wrong
    with pytest.raises(ValueError, match=message):
        policy_loss(logp, torch.zeros(2, 2), adv, torch.ones(2, 3))  # old_logp alone is wrong


def _ratio_logp(ratios):
    """(logp, old_logp) with exp(logp - old_logp) = ratios (float64, so 0.9 stays 0.9 up to 1e-16)."""
    r = torch.tensor(ratios, dtype=torch.float64)
    return torch.log(r), torch.zeros_like(r)


def test_clip_metrics_count_the_side_that_matters():
    # eps 0.2: clipped low = ratio < 0.8 with A < 0; clipped high = ratio > 1.2 with A > 0.
    #   ratio 0.5 A -1: low | 0.5 A 0.5: none | 0.9 A -1: none | 0.5 A 0: none
    #   1.5 A 1: high | 1.1 A 1: none | 1.5 A 0: none
    logp, old = _ratio_logp([[0.5, 0.5, 0.9, 0.5, 1.5, 1.1, 1.5]])
    adv = torch.tensor([[-1.0, 0.5, -1.0, 0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    _, m = policy_loss(logp, old, adv, torch.ones(1, 7), beta=0.0)
    assert (m["clip/ratio_low"], m["clip/ratio_high"], m["clip/region"]) == pytest.approx(
        (1 / 7, 1 / 7, 2 / 7)
    )


def test_clip_metrics_at_the_boundary_and_with_one_valid_token():
    # eps 0 and ratio exactly 1: not clipped on either side (strict inequalities).
    logp = torch.zeros(1, 2)
    _, m = policy_loss(
        logp, logp.clone(), torch.tensor([[-1.0, 1.0]]), torch.ones(1, 2), eps_low=0.0, eps_high=0.0
    )
    assert m["clip/region"] == 0.0
    # One valid token, clipped low: the fraction is 1/1 (a denominator clamped at 2 would give 0.5).
    logp, old = _ratio_logp([[0.5, 0.5]])
    _, m = policy_loss(logp, old, torch.tensor([-1.0]), torch.tensor([[1, 0]]), beta=0.0)
    assert m["clip/ratio_low"] == 1.0 and m["ktr/loss_token_frac"] == 1.0


def test_policy_loss_per_token_advantages():
    # On-policy ratio 1: loss = -mean_i (sum_t A_it * valid / |o_i|): row 0 (1 + 2 + 3) / 3, row 1 (4) / 1.
    logp = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    loss, _ = policy_loss(logp, None, adv, torch.tensor([[1, 1, 1], [1, 0, 0]]), beta=0.0)
    assert loss.item() == pytest.approx(-(2.0 + 4.0) / 2)


def test_policy_loss_aggregation_reaches_every_term():
    # token-mean over 4 valid tokens vs seq-mean-token-mean: differ for ragged rows, on both branches and the metric.
    logp = torch.zeros(2, 3)
    ref = torch.full((2, 3), math.log(0.5))  # k3 per token: 0.5 + ln 2 - 1
    adv = torch.tensor([1.0, -1.0])
    valid = torch.tensor([[1, 1, 1], [1, 0, 0]])
    mask = torch.tensor([[1, 0, 1], [1, 0, 0]])
    k3 = math.log(2.0) - 0.5
    # no KL: policy term -A on valid tokens -> token-mean (-3 + 1) / 4
    loss, m = policy_loss(logp, None, adv, valid, aggregation="token-mean", beta=0.0)
    assert loss.item() == pytest.approx(-0.5) and m["loss/policy"] == pytest.approx(-0.5)
    # selected denominator without mask_kl: policy over 3 selected (-2 + 1) / 3, KL over 4 valid (beta * k3)
    loss, m = policy_loss(
        logp,
        None,
        adv,
        valid,
        token_mask=mask,
        ref_logp=ref,
        beta=0.1,
        aggregation="token-mean",
        denominator="selected",
    )
    assert loss.item() == pytest.approx(-1 / 3 + 0.1 * k3, abs=1e-6)
    assert m["loss/kl"] == pytest.approx(k3, abs=1e-6)


def test_policy_loss_kl_with_beta_one_and_padding():
    # beta = 1 is an ordinary coefficient; loss/kl is the mean k3 over the 2 valid tokens, padding excluded
    # (dividing by the mask would put an inf at the padded position).
    logp = torch.zeros(1, 3)
    ref = torch.tensor([[math.log(0.5), math.log(0.5), 5.0]])
    loss, m = policy_loss(logp, None, torch.tensor([0.0]), torch.tensor([[1, 1, 0]]), ref_logp=ref, beta=1.0)
    k3 = math.log(2.0) - 0.5
    assert m["loss/kl"] == pytest.approx(k3, abs=1e-6) and loss.item() == pytest.approx(k3, abs=1e-6)


def test_policy_loss_keeps_the_logp_dtype_with_float64_mask_or_weights():
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, _ = policy_loss(
        logp, None, torch.tensor([1.0]), torch.ones(1, 2), token_weights=torch.ones(1, 2, dtype=torch.float64)
    )
    assert loss.dtype == torch.float32
    loss, _ = policy_loss(
        logp, None, torch.tensor([1.0]), torch.ones(1, 2), token_mask=torch.ones(1, 2, dtype=torch.float64)
    )
    assert loss.dtype == torch.float32
    # the sampling engine's importance-sampling ratio too: rho = 1, A = 1 -> s = 1; terms -0.5, -2.0 -> mean -1.25
    loss, _ = policy_loss(
        logp,
        None,
        torch.tensor([1.0]),
        torch.ones(1, 2),
        is_ratio=torch.tensor([[0.5, 2.0]], dtype=torch.float64),
    )
    assert loss.dtype == torch.float32 and loss.item() == -1.25


@pytest.mark.parametrize(
    "dtype, computed",
    [(torch.bfloat16, torch.float32), (torch.float32, torch.float32), (torch.float64, torch.float64)],
)
def test_tw_divergence_is_computed_in_float32_unless_the_logits_are_float64(dtype, computed):
    # The (G, c, V) chunk is upcast to float32 only (float64 only for float64 logits): a float64 copy of every
    # chunk would double the memory the chunking bounds, for rounding-level differences in the weights.
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0)).to(dtype)
    d = _group_divergence(logits, torch.ones(2, 3, dtype=torch.bool), 10.0, 1.0, 2)
    assert d.dtype == computed and d.shape == (3,)
