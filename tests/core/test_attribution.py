import math

import pytest
import torch

from videoktr.core.attribution import (
    DISTRIBUTION_METRICS,
    distribution_shift,
    entropy_from_logits,
    logprob_shift,
    selective_log_softmax,
)
from videoktr.core.registry import UnknownNameError

LN3 = math.log(3.0)


def _pair_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """p_a = softmax([0, ln 3]) = [1/4, 3/4], p_b = softmax([0, 0]) = [1/2, 1/2]; shape (1, 1, 2)."""
    return torch.tensor([[[0.0, LN3]]]), torch.zeros(1, 1, 2)


# ---- selective_log_softmax -------------------------------------------------------------------------------------


def test_selective_log_softmax_hand_value():
    logits, _ = _pair_logits()
    # log p(1) = log(3/4) = -0.287682; log p(0) = log(1/4) = -1.386294
    out = selective_log_softmax(logits, torch.tensor([[1]]))
    assert out.shape == (1, 1)
    assert out.item() == pytest.approx(math.log(0.75), abs=1e-6)
    assert selective_log_softmax(logits, torch.tensor([[0]])).item() == pytest.approx(
        math.log(0.25), abs=1e-6
    )


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1000])
def test_selective_log_softmax_matches_plain_and_gradients(chunk_size):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 11, (3, 5))
    expected = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, index[..., None]).squeeze(-1)
    got = selective_log_softmax(logits, index, temperature=0.7, chunk_size=chunk_size)
    torch.testing.assert_close(got, expected)
    (grad_got,) = torch.autograd.grad(got.sum(), logits)
    (grad_expected,) = torch.autograd.grad(expected.sum(), logits)
    torch.testing.assert_close(grad_got, grad_expected)


def test_selective_log_softmax_upcasts_bf16():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 9).to(torch.bfloat16)
    index = torch.randint(0, 9, (2, 4))
    got = selective_log_softmax(logits, index, chunk_size=3)
    assert got.dtype == torch.float32
    expected = torch.log_softmax(logits.float(), -1).gather(-1, index[..., None]).squeeze(-1)
    torch.testing.assert_close(got, expected)


def test_selective_log_softmax_rejects_bad_shapes():
    with pytest.raises(ValueError, match="index must have shape"):
        selective_log_softmax(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


# ---- logprob_shift ---------------------------------------------------------------------------------------------


def test_logprob_shift_abs_and_signed():
    logp = torch.tensor([[-1.0, -2.0]])
    masked = torch.tensor([[-3.0, -1.0]])
    # logp - masked = [-1 + 3, -2 + 1] = [2, -1]
    assert torch.equal(logprob_shift(logp, masked), torch.tensor([[2.0, 1.0]]))
    assert torch.equal(logprob_shift(logp, masked, signed=True), torch.tensor([[2.0, -1.0]]))


# ---- entropy ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab", [2, 7, 1000])
def test_entropy_of_uniform_is_log_v(vocab):
    h = entropy_from_logits(torch.zeros(2, 3, vocab))
    torch.testing.assert_close(h, torch.full((2, 3), math.log(vocab)))


def test_entropy_hand_value_temperature_and_masked_vocab():
    logits, _ = _pair_logits()
    # H([1/4, 3/4]) = -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.346574 + 0.215762 = 0.562335
    assert entropy_from_logits(logits).item() == pytest.approx(0.562335, abs=1e-5)
    # temperature 2 on doubled logits gives the same distribution
    assert entropy_from_logits(2 * logits, temperature=2.0).item() == pytest.approx(0.562335, abs=1e-5)
    # a banned token (-inf logit) has p = 0 and contributes 0: H([1/2, 1/2, 0]) = ln 2
    banned = torch.tensor([[[0.0, 0.0, float("-inf")]]])
    assert entropy_from_logits(banned).item() == pytest.approx(math.log(2), abs=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 64])
def test_chunked_entropy_equals_plain(chunk_size):
    torch.manual_seed(1)
    logits = 3 * torch.randn(4, 5, 13, dtype=torch.float64)
    probs = torch.softmax(logits, dim=-1)
    plain = -(probs * torch.log_softmax(logits, dim=-1)).sum(-1)
    torch.testing.assert_close(entropy_from_logits(logits, chunk_size=chunk_size), plain)


# ---- distribution_shift ----------------------------------------------------------------------------------------


def test_metric_registry_has_the_six_distances():
    assert DISTRIBUTION_METRICS.names() == ["cosine", "hellinger", "jsd", "kl", "l1", "l2"]


@pytest.mark.parametrize("metric", DISTRIBUTION_METRICS.names())
def test_every_metric_is_zero_on_identical_and_positive_otherwise(metric):
    torch.manual_seed(2)
    a = torch.randn(2, 3, 17)
    b = a + torch.randn(2, 3, 17)
    same = distribution_shift(a, a.clone(), metric)
    assert same.shape == (2, 3)
    torch.testing.assert_close(same, torch.zeros(2, 3), atol=1e-6, rtol=0)
    assert (distribution_shift(a, b, metric) > 1e-4).all()


def test_distribution_shift_hand_values():
    a, b = _pair_logits()
    # p_a = [0.25, 0.75], p_b = [0.5, 0.5]
    # kl = 0.25 ln(0.25/0.5) + 0.75 ln(0.75/0.5) = -0.173287 + 0.304099 = 0.130812
    assert distribution_shift(a, b, "kl").item() == pytest.approx(0.130812, abs=1e-5)
    # l1 = |0.25 - 0.5| + |0.75 - 0.5| = 0.5
    assert distribution_shift(a, b, "l1").item() == pytest.approx(0.5, abs=1e-6)
    # l2 = sqrt(0.25^2 + 0.25^2) = 0.353553
    assert distribution_shift(a, b, "l2").item() == pytest.approx(0.353553, abs=1e-6)
    # cosine: p_a.p_b = 0.5, |p_a| = sqrt(0.625) = 0.790569, |p_b| = 0.707107 -> 1 - 0.5/0.559017 = 0.105573
    assert distribution_shift(a, b, "cosine").item() == pytest.approx(0.105573, abs=1e-5)
    # hellinger: sqrt(0.5 * ((0.5 - 0.707107)^2 + (0.866025 - 0.707107)^2)) = sqrt(0.5 * 0.068148) = 0.184592
    assert distribution_shift(a, b, "hellinger").item() == pytest.approx(0.184592, abs=1e-5)
    # jsd: m = [0.375, 0.625]; KL(a||m) = 0.25 ln(2/3) + 0.75 ln(1.2) = 0.035377;
    #      KL(b||m) = 0.5 ln(4/3) + 0.5 ln(0.8) = 0.032261 -> 0.5 * (0.035377 + 0.032261) = 0.033819
    assert distribution_shift(a, b, "jsd").item() == pytest.approx(0.033819, abs=1e-5)
    # kl is not symmetric: KL(b||a) = 0.5 ln 2 + 0.5 ln(2/3) = 0.143841
    assert distribution_shift(b, a, "kl").item() == pytest.approx(0.143841, abs=1e-5)


@pytest.mark.parametrize("metric", DISTRIBUTION_METRICS.names())
def test_chunked_distribution_shift_equals_one_chunk(metric):
    torch.manual_seed(3)
    a, b = torch.randn(3, 4, 9, dtype=torch.float64), torch.randn(3, 4, 9, dtype=torch.float64)
    torch.testing.assert_close(
        distribution_shift(a, b, metric, chunk_size=5), distribution_shift(a, b, metric, chunk_size=100)
    )


def test_unknown_metric_lists_valid_ones():
    a, b = _pair_logits()
    with pytest.raises(UnknownNameError, match="valid: cosine, hellinger, jsd, kl, l1, l2"):
        distribution_shift(a, b, "wasserstein")
