import itertools
import math

import pytest
import torch

from videoktr.core.losses import AGGREGATIONS, agg_loss, k3_kl, policy_loss
from videoktr.core.registry import UnknownNameError
from videoktr.core.selection import key_token_mask

T = torch.tensor
LN15 = math.log(1.5)


# ---- agg_loss --------------------------------------------------------------------------------------------------

PER_TOKEN = T([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
VALID = T([[1, 1, 1], [1, 0, 0]])


def test_aggregations_hand_values():
    # seq-mean-token-mean: (6 / 3 + 4 / 1) / 2 = 3
    assert agg_loss(PER_TOKEN, VALID, VALID, "seq-mean-token-mean").item() == pytest.approx(3.0)
    # token-mean: (1 + 2 + 3 + 4) / 4 = 2.5
    assert agg_loss(PER_TOKEN, VALID, VALID, "token-mean").item() == pytest.approx(2.5)
    # seq-mean-token-sum-norm: 10 / (N * L) = 10 / (2 * 4) = 1.25
    got = agg_loss(PER_TOKEN, VALID, VALID, "seq-mean-token-sum-norm", max_completion_length=4)
    assert got.item() == pytest.approx(1.25)


def test_selected_denominator_and_empty_rows():
    selected = T([[1, 0, 0], [0, 0, 0]])
    # rows: 6 / 1 and 4 / max(1, 0) = 4 -> mean 5
    assert agg_loss(PER_TOKEN, VALID, selected, "seq-mean-token-mean").item() == pytest.approx(5.0)
    # 10 / 1
    assert agg_loss(PER_TOKEN, VALID, selected, "token-mean").item() == pytest.approx(10.0)
    nothing = torch.zeros(2, 3)
    assert agg_loss(torch.zeros(2, 3), nothing, nothing, "seq-mean-token-mean").item() == 0.0
    assert agg_loss(torch.zeros(2, 3), nothing, nothing, "token-mean").item() == 0.0


def test_aggregation_errors():
    assert AGGREGATIONS.names() == ["seq-mean-token-mean", "seq-mean-token-sum-norm", "token-mean"]
    with pytest.raises(ValueError, match="max_completion_length"):
        agg_loss(PER_TOKEN, VALID, VALID, "seq-mean-token-sum-norm")
    with pytest.raises(
        UnknownNameError, match="valid: seq-mean-token-mean, seq-mean-token-sum-norm, token-mean"
    ):
        agg_loss(PER_TOKEN, VALID, VALID, "sum")


# ---- policy_loss: hand values ----------------------------------------------------------------------------------


def test_clipped_surrogate_hand_values_and_clip_metrics():
    old = torch.zeros(1, 2)
    logp = T([[LN15, math.log(0.5)]]).requires_grad_()  # rho = [1.5, 0.5]
    valid = torch.ones(1, 2)
    # A = +1: s = [min(1.5, 1.2), min(0.5, 0.8)] = [1.2, 0.5] -> loss = -(1.2 + 0.5) / 2 = -0.85
    loss, m = policy_loss(logp, old, T([1.0]), valid, beta=0.0)
    assert loss.item() == pytest.approx(-0.85)
    assert m["clip/ratio_high"] == pytest.approx(0.5)  # rho 1.5 > 1.2 with A > 0
    assert m["clip/ratio_low"] == 0.0  # rho 0.5 < 0.8 but A > 0: the unclipped branch is taken
    assert m["clip/region"] == pytest.approx(0.5)
    # A = -1: s = [min(-1.5, -1.2), min(-0.5, -0.8)] = [-1.5, -0.8] -> loss = (1.5 + 0.8) / 2 = 1.15
    loss, m = policy_loss(logp, old, T([-1.0]), valid, beta=0.0)
    assert loss.item() == pytest.approx(1.15)
    assert (m["clip/ratio_low"], m["clip/ratio_high"]) == (pytest.approx(0.5), 0.0)
    # eps_high = 0.6: s = [min(1.5, 1.5), 0.5] -> -(1.5 + 0.5) / 2 = -1
    assert policy_loss(logp, old, T([1.0]), valid, beta=0.0, eps_high=0.6)[0].item() == pytest.approx(-1.0)


def test_kl_term_hand_value():
    logp = torch.zeros(1, 2)
    ref = torch.full((1, 2), math.log(2.0))
    # x = ln 2: exp(x) - x - 1 = 2 - 0.693147 - 1 = 0.306853 per token
    assert k3_kl(logp, ref)[0].tolist() == pytest.approx([0.306853, 0.306853], abs=1e-6)
    # A = 0 -> policy term 0; loss = beta * mean kl = 0.04 * 0.306853 = 0.012274
    loss, m = policy_loss(logp, logp, T([0.0]), torch.ones(1, 2), ref_logp=ref)
    assert loss.item() == pytest.approx(0.012274, abs=1e-6)
    assert m["loss/kl"] == pytest.approx(0.306853, abs=1e-6)
    assert m["loss/policy"] == 0.0
    # beta 0 or no reference -> no KL
    assert policy_loss(logp, logp, T([0.0]), torch.ones(1, 2), ref_logp=ref, beta=0.0)[0].item() == 0.0
    assert policy_loss(logp, logp, T([0.0]), torch.ones(1, 2))[1]["loss/kl"] == 0.0


def test_paper_and_code_denominators():
    # one row, 4 valid tokens, rho = 1 (old = logp), A = 2 -> s = 2 on every token; only token 0 selected
    logp = torch.zeros(1, 4)
    mask = T([[1, 0, 0, 0]])
    valid = torch.ones(1, 4)
    # paper (eq. 2): -(2) / |o_i| = -2 / 4 = -0.5
    loss, m = policy_loss(logp, logp, T([2.0]), valid, token_mask=mask, beta=0.0)
    assert loss.item() == pytest.approx(-0.5)
    assert m["ktr/loss_token_frac"] == pytest.approx(0.25)
    # authors' code: -(2) / (selected = 1) = -2
    loss, _ = policy_loss(logp, logp, T([2.0]), valid, token_mask=mask, beta=0.0, denominator="selected")
    assert loss.item() == pytest.approx(-2.0)


def test_mask_kl_gates_the_kl_term():
    logp = torch.zeros(1, 4)
    ref = torch.full((1, 4), math.log(2.0))  # kl = 0.306853 per token
    mask = T([[1, 0, 0, 0]])
    # A = 0: only the KL remains. Paper: on every valid token -> 0.04 * 4 * 0.306853 / 4 = 0.012274
    loss, _ = policy_loss(logp, logp, T([0.0]), torch.ones(1, 4), token_mask=mask, ref_logp=ref)
    assert loss.item() == pytest.approx(0.012274, abs=1e-6)
    # mask_kl: only token 0 -> 0.04 * 0.306853 / 4 (valid denominator) = 0.003069
    loss, _ = policy_loss(logp, logp, T([0.0]), torch.ones(1, 4), token_mask=mask, ref_logp=ref, mask_kl=True)
    assert loss.item() == pytest.approx(0.003069, abs=1e-6)
    # mask_kl + selected denominator (authors' code): 0.04 * 0.306853 / 1 = 0.012274
    loss, _ = policy_loss(
        logp,
        logp,
        T([0.0]),
        torch.ones(1, 4),
        token_mask=mask,
        ref_logp=ref,
        mask_kl=True,
        denominator="selected",
    )
    assert loss.item() == pytest.approx(0.012274, abs=1e-6)
    # selected denominator without mask_kl: the KL stays a mean over valid tokens -> 0.012274
    loss, _ = policy_loss(
        logp, logp, T([0.0]), torch.ones(1, 4), token_mask=mask, ref_logp=ref, denominator="selected"
    )
    assert loss.item() == pytest.approx(0.012274, abs=1e-6)


def test_token_weights_multiply_the_policy_term():
    logp = torch.zeros(1, 2)
    # rho = 1, A = 1 -> s = 1; weights [1.7, 1.0] -> token-mean: -(1.7 + 1.0) / 2 = -1.35
    loss, _ = policy_loss(
        logp,
        logp,
        T([1.0]),
        torch.ones(1, 2),
        token_weights=T([[1.7, 1.0]]),
        beta=0.0,
        aggregation="token-mean",
    )
    assert loss.item() == pytest.approx(-1.35)


def test_is_ratio_multiplies_the_policy_term_not_the_kl():
    logp = torch.zeros(1, 2)
    ref = torch.full((1, 2), math.log(2.0))
    # rho = 1, A = 1 -> s = 1; is_ratio [0.5, 2.0] -> policy terms -0.5, -2.0, token-mean -1.25;
    # KL k3 = 0.306853 per token (not multiplied), beta 0.04 -> +0.012274
    loss, m = policy_loss(
        logp,
        logp,
        T([1.0]),
        torch.ones(1, 2),
        ref_logp=ref,
        is_ratio=T([[0.5, 2.0]]),
        aggregation="token-mean",
    )
    assert loss.item() == pytest.approx(-1.25 + 0.012274, abs=1e-6)
    assert m["loss/policy"] == pytest.approx(-1.25)
    # a per-sequence ratio (N, 1) (TRL's sequence_* modes) broadcasts over the tokens: 3 * -1 = -3
    seq, _ = policy_loss(logp, logp, T([1.0]), torch.ones(1, 2), beta=0.0, is_ratio=T([[3.0]]))
    assert seq.item() == pytest.approx(-3.0)


def test_old_logp_none_means_on_policy():
    logp = torch.randn(2, 3, requires_grad=True)
    adv = T([1.0, -1.0])
    a, _ = policy_loss(logp, None, adv, torch.ones(2, 3), beta=0.0)
    b, _ = policy_loss(logp, logp.detach(), adv, torch.ones(2, 3), beta=0.0)
    assert torch.equal(a, b)
    # rho = 1 -> loss = -mean(A) = 0 here, gradient = -A / T per token
    (grad,) = torch.autograd.grad(a, logp)
    torch.testing.assert_close(grad, T([[-1 / 6] * 3, [1 / 6] * 3]))


# ---- policy_loss: invariants -----------------------------------------------------------------------------------


def _batch(seed: int = 0):
    """4 rows (2 prompts x G = 2), 6 positions, ragged lengths, off-policy ratios, a reference model."""
    g = torch.Generator().manual_seed(seed)
    valid = torch.ones(4, 6, dtype=torch.bool)
    valid[0, 4:] = False
    valid[2, 2:] = False
    logp = (-torch.rand(4, 6, generator=g) * 3).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(4, 6, generator=g)
    ref = logp.detach() + 0.2 * torch.randn(4, 6, generator=g)
    adv = torch.randn(4, generator=g)
    scores = {name: torch.rand(4, 6, generator=g) for name in ("visual", "temporal", "entropy")}
    return logp, old, ref, adv, valid, scores


OPTIONS = list(
    itertools.product(
        ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"], ["valid", "selected"], [False, True]
    )
)


def _loss_and_grad(logp, *args, **kwargs):
    loss, metrics = policy_loss(logp, *args, **kwargs)
    (grad,) = torch.autograd.grad(loss, logp)
    return loss, grad, metrics


@pytest.mark.parametrize("aggregation,denominator,mask_kl", OPTIONS)
def test_fraction_one_equals_vanilla_bit_for_bit(aggregation, denominator, mask_kl):
    logp, old, ref, adv, valid, scores = _batch()
    mask, _ = key_token_mask(scores, valid, {"visual": 1.0, "temporal": 0.2, "entropy": 0.2}, group_size=2)
    assert torch.equal(mask, valid)
    kw = dict(
        ref_logp=ref,
        aggregation=aggregation,
        denominator=denominator,
        mask_kl=mask_kl,
        max_completion_length=6,
    )
    vanilla_loss, vanilla_grad, vanilla_metrics = _loss_and_grad(logp, old, adv, valid, **kw)
    for token_mask in (mask, torch.ones(4, 6)):
        loss, grad, metrics = _loss_and_grad(logp, old, adv, valid, token_mask=token_mask, **kw)
        assert torch.equal(loss, vanilla_loss)
        assert torch.equal(grad, vanilla_grad)
        assert metrics == vanilla_metrics


@pytest.mark.parametrize("aggregation,denominator,mask_kl", OPTIONS)
def test_all_fractions_zero_leave_only_the_kl_term(aggregation, denominator, mask_kl):
    logp, old, ref, adv, valid, scores = _batch(1)
    mask, _ = key_token_mask(scores, valid, {"visual": 0.0, "temporal": 0.0, "entropy": 0.0}, group_size=2)
    assert not mask.any()
    kw = dict(aggregation=aggregation, denominator=denominator, mask_kl=mask_kl, max_completion_length=6)
    loss, grad, metrics = _loss_and_grad(logp, old, adv, valid, token_mask=mask, ref_logp=ref, **kw)
    assert metrics["loss/policy"] == 0.0 and metrics["ktr/loss_token_frac"] == 0.0
    assert torch.isfinite(grad).all()
    kl_only = 0.0 if mask_kl else 0.04 * agg_loss(k3_kl(logp, ref), valid, valid, aggregation, 6)
    torch.testing.assert_close(loss, torch.as_tensor(kl_only, dtype=loss.dtype), rtol=1e-6, atol=0)
    # beta = 0: exactly zero, zero gradient
    loss, grad, _ = _loss_and_grad(logp, old, adv, valid, token_mask=mask, ref_logp=ref, beta=0.0, **kw)
    assert loss.item() == 0.0
    assert (grad == 0).all()


@pytest.mark.parametrize("denominator", ["valid", "selected"])
def test_row_without_selected_token_gives_no_nan(denominator):
    logp = torch.zeros(2, 3, requires_grad=True)
    valid = torch.ones(2, 3)
    mask = T([[0, 0, 0], [1, 0, 0]])
    # rho = 1, A = [3, 2]: row 0 contributes 0; row 1 contributes -2 / 3 (valid) or -2 / 1 (selected)
    loss, grad, metrics = _loss_and_grad(
        logp, logp.detach(), T([3.0, 2.0]), valid, token_mask=mask, beta=0.0, denominator=denominator
    )
    expected = -2.0 / 3 / 2 if denominator == "valid" else -2.0 / 2
    assert loss.item() == pytest.approx(expected)
    assert torch.isfinite(grad).all() and (grad[0] == 0).all()
    assert all(math.isfinite(v) for v in metrics.values())


def test_metrics_are_detached_floats():
    logp, old, ref, adv, valid, _ = _batch(2)
    _, metrics = policy_loss(logp, old, adv, valid, ref_logp=ref)
    assert set(metrics) == {
        "loss/policy",
        "loss/kl",
        "clip/ratio_low",
        "clip/ratio_high",
        "clip/region",
        "ktr/loss_token_frac",
    }
    assert all(type(v) is float for v in metrics.values())


def test_policy_loss_argument_errors():
    logp = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="valid: valid, selected"):
        policy_loss(logp, logp, torch.zeros(2), torch.ones(2, 3), denominator="all")
    with pytest.raises(ValueError, match="advantages must be"):
        policy_loss(logp, logp, torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(UnknownNameError):
        policy_loss(logp, logp, torch.zeros(2), torch.ones(2, 3), aggregation="mean")
