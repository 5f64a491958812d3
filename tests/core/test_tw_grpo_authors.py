"""TW-GRPO token weights equal a hand computation of the authors' ``compute_token_importance_kl_logs_uniform``
(github longmalongma/TW-GRPO, src/open_r1/trainer/grpo_trainer.py at aa529ff), with a finished completion among
unfinished ones: past its end a row's distribution is the uniform one, and its own weights there are 0."""

import math

import torch

from videoktr.core.tw_grpo import tw_token_weights


def f(x: float) -> float:
    return math.exp(x) - x - 1


def divergence(rows: list[list[float]]) -> float:
    """D_t = mean_i sum_v f(clamp(mean_l - l_i, -11, 11)) over the group's log-prob vectors ``rows`` at t."""
    logs = [[math.log(p) for p in row] for row in rows]
    mean = [sum(col) / len(logs) for col in zip(*logs)]
    return sum(sum(f(max(-11.0, min(11.0, m - v))) for m, v in zip(mean, row)) for row in logs) / len(logs)


def test_weights_equal_the_authors_formula_with_a_finished_row():
    # G = 2, V = 2, T = 3. Row 0 runs to t = 2; row 1 finished at t = 0 (its EOS), so it is uniform after.
    probs = [
        [[0.5, 0.5], [0.8, 0.2], [0.6, 0.4]],
        [[0.9, 0.1], [0.3, 0.7], [0.99, 0.01]],  # positions 1, 2 of row 1 are past its end: never read
    ]
    valid = torch.tensor([[True, True, True], [True, False, False]])
    uniform = [0.5, 0.5]
    d = [
        divergence([probs[0][0], probs[1][0]]),  # both rows valid
        divergence([probs[0][1], uniform]),  # row 1 replaced by the uniform distribution
        divergence([probs[0][2], uniform]),
    ]
    # by hand: D0 = 0.5 * (f(a) + f(-a) + f(b) + f(-b)), a = 0.5 ln(0.9/0.5), b = 0.5 ln(0.1/0.5)
    a, b = 0.5 * math.log(1.8), 0.5 * math.log(0.2)
    assert math.isclose(d[0], 0.5 * (f(a) + f(-a) + f(b) + f(-b)), rel_tol=1e-12)
    low, high = min(d), max(d)
    alpha = 1.7
    expected_row = [1 + (alpha - 1) * (x - low) / (high - low + 1e-8) for x in d]  # the authors' +1e-8
    expected = torch.tensor([expected_row, [expected_row[0], 0.0, 0.0]])  # times the completion mask

    logits = torch.tensor(probs, dtype=torch.float64).log()
    weights = tw_token_weights(logits, valid, group_size=2, alpha=alpha)
    torch.testing.assert_close(weights, expected.to(weights.dtype), atol=1e-6, rtol=0)
    # the middle position is strictly between 1 and alpha: the normalisation is really over positions
    assert 1.0 < weights[0, 1] < alpha or 1.0 < weights[0, 2] < alpha


def test_two_groups_are_normalised_separately():
    torch.manual_seed(0)
    logits = torch.randn(4, 5, 7, dtype=torch.float64)
    valid = torch.ones(4, 5, dtype=torch.bool)
    valid[1, 3:] = False  # a finished row in the first group
    both = tw_token_weights(logits, valid, group_size=2)
    first = tw_token_weights(logits[:2], valid[:2], group_size=2)
    second = tw_token_weights(logits[2:], valid[2:], group_size=2)
    torch.testing.assert_close(both, torch.cat([first, second]))
    for group in (both[:2], both[2:]):  # each group's weights span exactly [1, alpha] on its valid tokens
        kept = group[group > 0]
        assert math.isclose(kept.min().item(), 1.0) and math.isclose(kept.max().item(), 1.7)
