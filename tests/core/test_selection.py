import math

import pytest
import torch

from videoktr.core.attribution import logprob_shift
from videoktr.core.registry import UnknownNameError
from videoktr.core.selection import (
    SELECTION_SCOPES,
    SOFT_WEIGHT_SCHEMES,
    key_token_mask,
    selection_metrics,
    soft_token_weights,
    top_fraction_mask,
)

T = torch.tensor


def _ones(*shape) -> torch.Tensor:
    return torch.ones(*shape, dtype=torch.bool)


# ---- top_fraction_mask: the rule -------------------------------------------------------------------------------


def test_k_is_ceil_of_fraction_times_n():
    scores = torch.arange(10, 0, -1, dtype=torch.float32).unsqueeze(0)  # [10, 9, ..., 1]
    # n = 10: 0.2 -> k = 2; 0.25 -> ceil(2.5) = 3; 0.01 -> ceil(0.1) = 1
    for fraction, k in [(0.2, 2), (0.25, 3), (0.01, 1)]:
        mask = top_fraction_mask(scores, _ones(1, 10), fraction, scope="sequence")
        assert mask.sum().item() == k
        assert mask[0, :k].all()


def test_k_is_robust_to_float_error():
    # 0.07 * 100 = 7.000000000000001 and 0.28 * 25 = 7.000000000000001 in floating point: a naive ceil gives 8
    for fraction, n in [(0.07, 100), (0.28, 25)]:
        assert fraction * n > 7
        scores = torch.arange(n, dtype=torch.float32).unsqueeze(0)
        assert top_fraction_mask(scores, _ones(1, n), fraction, scope="sequence").sum().item() == 7


def test_ties_at_the_threshold_are_all_kept():
    scores = T([[3.0, 2.0, 2.0, 2.0, 1.0]])
    # n = 5, 0.2 -> k = 1, threshold 3 -> one token
    assert top_fraction_mask(scores, _ones(1, 5), 0.2, "sequence").tolist() == [
        [True, False, False, False, False]
    ]
    # 0.4 -> k = 2, threshold = 2nd largest = 2 -> 3, 2, 2, 2 kept (4 > k tokens)
    assert top_fraction_mask(scores, _ones(1, 5), 0.4, "sequence").tolist() == [
        [True, True, True, True, False]
    ]


@pytest.mark.parametrize("scope", ["sequence", "group", "batch"])
def test_padding_is_never_selected(scope):
    scores = T([[1.0, 2.0, 100.0, 100.0], [4.0, 3.0, 2.0, 100.0]])
    valid = T([[1, 1, 0, 0], [1, 1, 1, 0]])
    for fraction in (0.2, 0.5, 1.0):
        mask = top_fraction_mask(scores, valid, fraction, scope=scope, group_size=2)
        assert not (mask & ~valid.bool()).any()
    assert torch.equal(top_fraction_mask(scores, valid, 1.0, scope=scope, group_size=2), valid.bool())


@pytest.mark.parametrize("scope", ["sequence", "group", "batch"])
def test_fraction_zero_keeps_nothing_one_keeps_every_valid_token(scope):
    torch.manual_seed(0)
    scores = torch.randn(4, 6)
    valid = torch.rand(4, 6) > 0.3
    assert not top_fraction_mask(scores, valid, 0.0, scope, group_size=2).any()
    assert torch.equal(top_fraction_mask(scores, valid, 1.0, scope, group_size=2), valid)


@pytest.mark.parametrize("scope", ["sequence", "group", "batch"])
def test_scope_with_no_valid_token_keeps_nothing(scope):
    scores = T([[1.0, 2.0], [3.0, 4.0]])
    valid = T([[False, False], [True, True]])
    mask = top_fraction_mask(scores, valid, 0.5, scope, group_size=1)
    assert not mask[0].any()
    assert mask[1].tolist() == [False, True]
    assert not top_fraction_mask(scores, torch.zeros(2, 2, dtype=torch.bool), 0.5, scope, group_size=2).any()


def test_scopes_differ_on_a_crafted_case():
    # two prompts x G = 2 rows, 4 valid tokens each, fraction 0.25 -> k = 1 per row, 2 per group, 4 per batch
    scores = T(
        [
            [9.0, 1.0, 1.0, 1.0],  # prompt 0
            [8.0, 7.0, 1.0, 1.0],
            [3.0, 2.0, 1.0, 1.0],  # prompt 1
            [1.0, 1.0, 1.0, 0.5],
        ]
    )
    valid = _ones(4, 4)
    seq = top_fraction_mask(scores, valid, 0.25, "sequence")
    # per row: the top token; row 3's top is the tie 1, 1, 1 -> all three kept
    assert seq.tolist() == [
        [True, False, False, False],
        [True, False, False, False],
        [True, False, False, False],
        [True, True, True, False],
    ]
    grp = top_fraction_mask(scores, valid, 0.25, "group", group_size=2)
    # prompt 0: n = 8, k = 2 -> 9, 8; prompt 1: k = 2 -> 3, 2
    assert grp.tolist() == [
        [True, False, False, False],
        [True, False, False, False],
        [True, True, False, False],
        [False, False, False, False],
    ]
    bat = top_fraction_mask(scores, valid, 0.25, "batch")
    # n = 16, k = 4 -> threshold = 4th largest of (9, 8, 7, 3, ...) = 3
    assert bat.tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [True, False, False, False],
        [False, False, False, False],
    ]


def test_group_scope_needs_a_dividing_group_size():
    with pytest.raises(ValueError, match="group_size"):
        top_fraction_mask(torch.zeros(3, 2), _ones(3, 2), 0.2, "group", group_size=2)
    with pytest.raises(ValueError, match="group_size"):
        top_fraction_mask(torch.zeros(3, 2), _ones(3, 2), 0.2, "group")


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_fraction_outside_unit_interval_raises_with_range(fraction):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        top_fraction_mask(torch.zeros(1, 2), _ones(1, 2), fraction, "sequence")


def test_unknown_scope_lists_valid_ones():
    assert SELECTION_SCOPES.names() == ["batch", "group", "sequence"]
    with pytest.raises(UnknownNameError, match="valid: batch, group, sequence"):
        top_fraction_mask(torch.zeros(1, 2), _ones(1, 2), 0.2, "prompt")


def test_nan_scores_raise_only_on_valid_positions():
    scores = T([[1.0, float("nan")]])
    assert top_fraction_mask(scores, T([[True, False]]), 1.0, "sequence").tolist() == [[True, False]]
    with pytest.raises(ValueError, match="NaN"):
        top_fraction_mask(scores, _ones(1, 2), 0.5, "sequence")


def test_signed_and_absolute_scores_select_different_tokens():
    logp = T([[-1.0, -6.0, -2.0, -1.5]])
    perturbed = T([[-4.0, -1.0, -3.0, -1.0]])
    # logp - perturbed = [3, -5, 1, -0.5]; top 1 of 4 (fraction 0.25):
    absolute = top_fraction_mask(logprob_shift(logp, perturbed), _ones(1, 4), 0.25, "sequence")
    signed = top_fraction_mask(logprob_shift(logp, perturbed, signed=True), _ones(1, 4), 0.25, "sequence")
    assert absolute.tolist() == [[False, True, False, False]]  # |-5| is the largest shift
    assert signed.tolist() == [[True, False, False, False]]  # +3: the token the real video makes most likely


# ---- key_token_mask --------------------------------------------------------------------------------------------


def _signals():
    scores = {
        "visual": T([[4.0, 3.0, 2.0, 1.0, 0.0]]),
        "temporal": T([[0.0, 1.0, 2.0, 3.0, 4.0]]),
        "entropy": T([[0.0, 4.0, 3.0, 1.0, 2.0]]),
    }
    return scores, T([[1, 1, 1, 1, 0]])  # last token is padding


def test_key_token_mask_union_and_intersection():
    scores, valid = _signals()
    fractions = {"visual": 0.5, "temporal": 0.5, "entropy": 0.5}
    # n = 4 valid, k = 2 per signal: visual {0, 1}, temporal {3, 2} (4.0 is padding), entropy {1, 2}
    mask, per = key_token_mask(scores, valid, fractions, scope="sequence")
    assert per["visual"].tolist() == [[True, True, False, False, False]]
    assert per["temporal"].tolist() == [[False, False, True, True, False]]
    assert per["entropy"].tolist() == [[False, True, True, False, False]]
    assert mask.tolist() == [[True, True, True, True, False]]
    assert list(per) == ["visual", "temporal", "entropy"]
    inter, _ = key_token_mask(
        scores, valid, {"visual": 0.5, "entropy": 0.5}, "sequence", combine="intersection"
    )
    assert inter.tolist() == [[False, True, False, False, False]]  # {0, 1} & {1, 2}


def test_key_token_mask_one_fraction_at_one_selects_every_valid_token():
    scores, valid = _signals()
    mask, _ = key_token_mask(scores, valid, {"visual": 1.0, "temporal": 0.2, "entropy": 0.0}, "sequence")
    assert torch.equal(mask, valid.bool())
    none, _ = key_token_mask(scores, valid, {"visual": 0.0, "temporal": 0.0, "entropy": 0.0}, "sequence")
    assert not none.any()


def test_key_token_mask_errors():
    scores, valid = _signals()
    with pytest.raises(ValueError, match=r"\['audio'\] that have no score"):
        key_token_mask(scores, valid, {"visual": 0.2, "audio": 0.2}, "sequence")
    with pytest.raises(ValueError, match="fractions is empty"):
        key_token_mask(scores, valid, {}, "sequence")
    with pytest.raises(ValueError, match="valid: union, intersection"):
        key_token_mask(scores, valid, {"visual": 0.2}, "sequence", combine="xor")


def test_signal_valid_restricts_one_signal():
    scores, valid = _signals()
    # temporal may only score tokens 0 and 1 (e.g. the rest comes from an image sample)
    only_first = T([[True, True, False, False, False]])
    _, per = key_token_mask(
        scores, valid, {"temporal": 0.5}, "sequence", signal_valid={"temporal": only_first}
    )
    # n = 2 eligible, k = 1 -> token 1 (score 1.0 > 0.0)
    assert per["temporal"].tolist() == [[False, True, False, False, False]]


# ---- selection_metrics -----------------------------------------------------------------------------------------


def test_selection_metrics_hand_values():
    valid = T([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()  # 6 valid tokens
    a = T([[1, 1, 0, 0], [0, 0, 0, 0]]).bool()
    b = T([[0, 1, 1, 0], [1, 0, 0, 0]]).bool()
    union = a | b
    scores = {"a": T([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 99.0, 99.0]])}
    m = selection_metrics(union, {"a": a, "b": b}, valid, scores)
    assert m["ktr/selected_frac/a"] == pytest.approx(2 / 6)
    assert m["ktr/selected_frac/b"] == pytest.approx(3 / 6)
    assert m["ktr/selected_frac/union"] == pytest.approx(4 / 6)  # {00, 01, 02, 10}
    assert m["ktr/overlap/a_b"] == pytest.approx(1 / 4)  # |{01}| / |{00, 01, 02, 10}|
    assert m["ktr/score_mean/a"] == pytest.approx(21 / 6)  # (1 + 2 + 3 + 4 + 5 + 6) / 6, padding 99 ignored
    assert m["ktr/selected_per_completion/mean"] == pytest.approx(2.0)  # rows: 3 and 1 -> (3 + 1) / 2
    assert m["ktr/selected_per_completion/min"] == pytest.approx(1.0)
    assert all(isinstance(v, float) for v in m.values())


def test_selection_metrics_with_nothing_selected_or_valid_are_finite():
    valid = torch.zeros(2, 3, dtype=torch.bool)
    empty = torch.zeros(2, 3, dtype=torch.bool)
    m = selection_metrics(empty, {"a": empty, "b": empty}, valid, {"a": torch.zeros(2, 3)})
    assert all(math.isfinite(v) for v in m.values())
    assert m["ktr/overlap/a_b"] == 0.0


# ---- soft_token_weights ----------------------------------------------------------------------------------------


def test_soft_weight_hand_values():
    two = _ones(1, 2)
    # softmax([0, ln 3]) = [1/4, 3/4]; times n = 2 -> [0.5, 1.5]
    got = soft_token_weights(T([[0.0, math.log(3)]]), two, "softmax")
    torch.testing.assert_close(got, T([[0.5, 1.5]]))
    # sigmoid: z = standardised [1, 3] = [-1, 1]; sigmoid -> [0.268941, 0.731059] (sum 1); times 2
    got = soft_token_weights(T([[1.0, 3.0]]), two, "sigmoid")
    torch.testing.assert_close(got, T([[0.537883, 1.462117]]))
    # linear: [1, 2, 3] -> [0, 0.5, 1] (sum 1.5); times 3 / 1.5 -> [0, 1, 2]
    got = soft_token_weights(T([[1.0, 2.0, 3.0]]), _ones(1, 3), "linear")
    torch.testing.assert_close(got, T([[0.0, 1.0, 2.0]]))
    # exponential: exp([0, 0.5, 1]) = [1, 1.648721, 2.718282] (sum 5.367003); times 3 / 5.367003
    got = soft_token_weights(T([[1.0, 2.0, 3.0]]), _ones(1, 3), "exponential")
    torch.testing.assert_close(got, T([[0.558971, 0.921588, 1.519441]]))


@pytest.mark.parametrize("scheme", SOFT_WEIGHT_SCHEMES.names())
def test_soft_weights_mean_one_per_row_zero_on_padding(scheme):
    torch.manual_seed(0)
    scores = torch.randn(4, 7)
    valid = torch.rand(4, 7) > 0.3
    valid[:, 0] = True
    valid[3] = False  # a row with no valid token
    scores[2] = 0.5  # a row with all-equal scores
    w = soft_token_weights(scores, valid, scheme, temperature=0.5)
    assert torch.isfinite(w).all()
    assert (w[~valid] == 0).all()
    assert (w >= 0).all()
    for row in range(3):
        assert w[row][valid[row]].mean().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(w[2][valid[2]], torch.ones(int(valid[2].sum())))
    assert (w[3] == 0).all()
    # order preserving: a higher score never gets a lower weight
    for row in range(2):
        s, ww = scores[row][valid[row]], w[row][valid[row]]
        order = s.argsort()
        assert (ww[order].diff() >= -1e-6).all()


def test_unknown_soft_scheme_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="valid: exponential, linear, sigmoid, softmax"):
        soft_token_weights(torch.zeros(1, 2), _ones(1, 2), "rank")


@pytest.mark.parametrize("shape", [(2, 4), (0, 4), (2, 0)])
def test_batch_scope_with_no_eligible_token_selects_nothing(shape):
    scores = torch.randn(shape)
    assert not top_fraction_mask(scores, torch.zeros(shape, dtype=torch.bool), 0.2, "batch").any()
