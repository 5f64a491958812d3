import math

import pytest
import torch

from videoktr.core.tw_grpo import tw_token_weights


def _d(p_rows: list[list[float]]) -> float:
    """Reference D for one position: mean_i sum_v f(mean_l - l_i), f(d) = exp(d) - d - 1 (no clamp needed)."""
    logs = [[math.log(p) for p in row] for row in p_rows]
    mean = [sum(col) / len(col) for col in zip(*logs)]
    terms = [sum(math.exp(mu - li) - (mu - li) - 1 for mu, li in zip(mean, row)) for row in logs]
    return sum(terms) / len(terms)


def _logits(p_rows: list[list[list[float]]]) -> torch.Tensor:
    """(G, T, V) logits whose softmax is the given probabilities."""
    return torch.tensor(p_rows, dtype=torch.float64).log()


def test_hand_computed_weights():
    # G = 2, V = 2, T = 3. Position 0: both rows [0.5, 0.5] -> D = 0.
    # Position 1: [0.5, 0.5] vs [0.25, 0.75]: l = [-0.6931, -0.6931], [-1.3863, -0.2877], mean [-1.0397, -0.4904];
    #   d_0 = [-0.3466, 0.2027] -> f = 0.0537 + 0.0220; d_1 = [0.3466, -0.2027] -> f = 0.0676 + 0.0192;
    #   D_1 = (0.0757 + 0.0868) / 2 = 0.0813
    # Position 2: [0.5, 0.5] vs [0.1, 0.9] -> D_2 (larger) = max. min-max: n = [0, D_1 / D_2, 1].
    probs = [
        [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]],
        [[0.5, 0.5], [0.25, 0.75], [0.1, 0.9]],
    ]
    d1, d2 = _d([[0.5, 0.5], [0.25, 0.75]]), _d([[0.5, 0.5], [0.1, 0.9]])
    assert d1 == pytest.approx(0.0813, abs=1e-4)
    w = tw_token_weights(_logits(probs), torch.ones(2, 3, dtype=torch.bool), group_size=2, alpha=1.7)
    expected_row = [1.0, 1 + 0.7 * d1 / d2, 1.7]
    torch.testing.assert_close(w, torch.tensor([expected_row, expected_row], dtype=torch.float64))


def test_identical_rows_give_weight_one_everywhere():
    torch.manual_seed(0)
    row = torch.randn(1, 5, 7)
    logits = row.expand(3, 5, 7).clone()
    w = tw_token_weights(logits, torch.ones(3, 5, dtype=torch.bool), group_size=3)
    assert torch.equal(w, torch.ones(3, 5))


def test_past_the_end_positions_use_the_uniform_distribution():
    # Row 1 ends after position 0. At position 1 row 0 is uniform too -> identical to the padding's uniform
    # -> D_1 = 0; at position 2 row 0 is peaked -> D_2 > 0. Position 0 differs a little.
    probs = [
        [[0.3, 0.7], [0.5, 0.5], [0.05, 0.95]],
        [[0.4, 0.6], [0.9, 0.1], [0.9, 0.1]],  # positions 1 and 2 are padding: their logits are ignored
    ]
    valid = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    w = tw_token_weights(_logits(probs), valid, group_size=2, alpha=2.0)
    d0, d2 = _d([[0.3, 0.7], [0.4, 0.6]]), _d([[0.05, 0.95], [0.5, 0.5]])
    # D = [d0, 0, d2] -> n = [d0 / d2, 0, 1]; weights zero on padding
    expected = torch.tensor([[1 + d0 / d2, 1.0, 2.0], [1 + d0 / d2, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(w, expected)


def test_range_padding_groups_and_chunking():
    torch.manual_seed(1)
    logits = 4 * torch.randn(6, 7, 11)
    valid = torch.rand(6, 7) > 0.25
    valid[:, 0] = True
    w = tw_token_weights(logits, valid, group_size=3, alpha=1.7)
    assert (w[~valid] == 0).all()
    assert (w[valid] >= 1.0).all() and (w[valid] <= 1.7 + 1e-6).all()
    # each group reaches both ends of the range
    for rows in (slice(0, 3), slice(3, 6)):
        assert w[rows][valid[rows]].max().item() == pytest.approx(1.7, abs=1e-6)
        assert w[rows][valid[rows]].min().item() == pytest.approx(1.0, abs=1e-6)
    # chunking does not change anything
    torch.testing.assert_close(tw_token_weights(logits, valid, 3, chunk_size=1), w)
    # groups are independent: changing group 1 leaves group 0's weights alone
    other = logits.clone()
    other[3:] = torch.randn(3, 7, 11)
    assert torch.equal(tw_token_weights(other, valid, 3)[:3], w[:3])


def test_extreme_logits_are_clamped_and_finite():
    logits = torch.zeros(2, 2, 3)
    logits[0, 1, 0] = 1e4  # one-hot vs uniform: log-prob differences of ~1e4 are clamped to 11
    w = tw_token_weights(logits, torch.ones(2, 2, dtype=torch.bool), group_size=2)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w, torch.tensor([[1.0, 1.7], [1.0, 1.7]]))


def test_gradient_only_when_the_logits_carry_it_and_errors():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    assert tw_token_weights(logits, torch.ones(2, 3), group_size=2).requires_grad  # the authors' gradient
    with torch.no_grad():
        assert not tw_token_weights(logits, torch.ones(2, 3), group_size=2).requires_grad
    with pytest.raises(ValueError, match="group_size"):
        tw_token_weights(logits, torch.ones(2, 3), group_size=3)
    with pytest.raises(ValueError, match=r"valid \(N, T\)"):
        tw_token_weights(logits, torch.ones(2, 4), group_size=2)


def test_weights_by_group_follow_the_rows_in_any_order_with_gradient():
    """Rows shuffled as a trainer does: each row's weights (and their gradient) are those of its own group."""
    from videoktr.core import tw_token_weights, tw_token_weights_by_group

    torch.manual_seed(0)
    g, t, v = 3, 5, 7
    logits = torch.randn(2 * g, t, v, dtype=torch.float64, requires_grad=True)
    valid = torch.ones(2 * g, t, dtype=torch.bool)
    valid[1, 3:] = False  # a finished completion among unfinished ones
    perm = torch.tensor([4, 0, 5, 2, 1, 3])
    group_ids = torch.tensor([0, 0, 0, 1, 1, 1])[perm]
    shuffled = tw_token_weights_by_group(logits[perm], valid[perm], group_ids, g, alpha=1.7)
    reference = tw_token_weights(logits, valid, group_size=g, alpha=1.7)
    torch.testing.assert_close(shuffled, reference[perm])
    probe = torch.randn(2 * g, t, dtype=torch.float64)
    (grad_shuffled,) = torch.autograd.grad((shuffled * probe[perm]).sum(), logits)
    (grad_reference,) = torch.autograd.grad((reference * probe).sum(), logits)
    torch.testing.assert_close(grad_shuffled, grad_reference)
    assert grad_reference.abs().sum() > 0  # the gradient does flow through the weights
    with pytest.raises(ValueError, match="3 rows together"):
        tw_token_weights_by_group(logits[:4], valid[:4], torch.tensor([0, 0, 0, 1]), g)
