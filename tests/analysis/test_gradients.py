"""B.1 gradient decomposition: hand arithmetic on a linear log-prob model, and separate backward passes."""

from __future__ import annotations

import math

import pytest
import torch

from videoktr.analysis.gradients import gradient_decomposition, summarise


def test_decomposition_equals_hand_arithmetic():
    # logp_it = C_it . theta with theta in R^2, so d logp_it / d theta = C_it.
    # 2 rows x 3 tokens; row 1's last token is padding. A = (1, -2). Z = 5 valid tokens.
    theta = torch.zeros(2, requires_grad=True)
    c = torch.tensor(
        [[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
         [[2.0, 0.0], [0.0, 3.0], [9.0, 9.0]]]
    )  # fmt: skip
    logp = c @ theta
    valid = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    selected = torch.tensor([[1, 0, 0], [0, 1, 1]], dtype=torch.bool)  # (1, 2) is padding: not counted
    out = gradient_decomposition(logp, torch.tensor([1.0, -2.0]), valid, selected, [theta])
    # g_S = -(1/5) [1*(1,0) + (-2)*(0,3)] = -(1/5)(1, -6) = (-0.2, 1.2)
    # g_R = -(1/5) [1*((0,1)+(1,1)) + (-2)*(2,0)] = -(1/5)(1-4, 2) = (0.6, -0.4)
    # g = (0.4, 0.8)
    g_s, g_r, g = (-0.2, 1.2), (0.6, -0.4), (0.4, 0.8)
    norm = math.hypot
    assert out["norm_selected"] == pytest.approx(norm(*g_s))
    assert out["norm_rest"] == pytest.approx(norm(*g_r))
    assert out["norm_full"] == pytest.approx(norm(*g))
    dot = lambda a, b: a[0] * b[0] + a[1] * b[1]  # noqa: E731
    assert out["cos_selected_full"] == pytest.approx(dot(g_s, g) / (norm(*g_s) * norm(*g)))
    assert out["cos_rest_full"] == pytest.approx(dot(g_r, g) / (norm(*g_r) * norm(*g)))
    assert out["cos_selected_rest"] == pytest.approx(dot(g_s, g_r) / (norm(*g_s) * norm(*g_r)))
    assert out["selected_frac"] == pytest.approx(2 / 5)


def test_seq_mean_aggregation_by_hand():
    # the same linear model with GRPO's seq-mean-token-mean: row i's tokens weigh 1 / (N * valid_i), N = 2
    theta = torch.zeros(2, requires_grad=True)
    c = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[2.0, 0.0], [0.0, 3.0], [9.0, 9.0]]])
    valid = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    selected = torch.tensor([[1, 0, 0], [0, 1, 1]], dtype=torch.bool)
    out = gradient_decomposition(
        c @ theta, torch.tensor([1.0, -2.0]), valid, selected, [theta], "seq-mean-token-mean"
    )
    # g_S = -(1/2) [(1/3) (1,0) + (1/2)(-2)(0,3)] = (-1/6, 3/2)
    # g_R = -(1/2) [(1/3) ((0,1) + (1,1)) + (1/2)(-2)(2,0)] = (5/6, -1/3);  g = (2/3, 7/6)
    assert out["norm_selected"] == pytest.approx(math.hypot(-1 / 6, 3 / 2))
    assert out["norm_rest"] == pytest.approx(math.hypot(5 / 6, -1 / 3))
    assert out["norm_full"] == pytest.approx(math.hypot(2 / 3, 7 / 6))
    expected = (-1 / 6 * 2 / 3 + 3 / 2 * 7 / 6) / (math.hypot(-1 / 6, 3 / 2) * math.hypot(2 / 3, 7 / 6))
    assert out["cos_selected_full"] == pytest.approx(expected)


def test_decomposition_matches_separate_backward_passes():
    # a tiny softmax policy: the same numbers from .grad of independent backward passes
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 7)
    x = torch.randn(3, 5, 4)
    tokens = torch.randint(0, 7, (3, 5))
    valid = torch.rand(3, 5) > 0.2
    selected = torch.rand(3, 5) > 0.5
    adv = torch.randn(3)

    def logp():
        return torch.log_softmax(layer(x), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)

    out = gradient_decomposition(logp(), adv, valid, selected, list(layer.parameters()))
    grads = {}
    for name, mask in {"sel": selected & valid, "full": valid}.items():
        layer.zero_grad()
        (-(adv[:, None] * logp() * mask).sum() / valid.sum()).backward()
        grads[name] = torch.cat([p.grad.reshape(-1) for p in layer.parameters()]).double()
    assert out["norm_full"] == pytest.approx(float(grads["full"].norm()), rel=1e-5)
    assert out["norm_selected"] == pytest.approx(float(grads["sel"].norm()), rel=1e-5)
    cos = torch.nn.functional.cosine_similarity(grads["sel"], grads["full"], dim=0)
    assert out["cos_selected_full"] == pytest.approx(float(cos), rel=1e-5)


def test_nothing_selected_gives_none_cosine_and_summary_skips_it():
    theta = torch.ones(2, requires_grad=True)
    logp = torch.stack([theta.sum(), theta[0]]).unsqueeze(0)
    out = gradient_decomposition(logp, torch.ones(1), torch.ones(1, 2, dtype=torch.bool),
                                 torch.zeros(1, 2, dtype=torch.bool), [theta])  # fmt: skip
    assert out["norm_selected"] == 0.0 and out["cos_selected_full"] is None
    mean = summarise([{"step": 0, "rows": 1, **out}, {"step": 1, "rows": 1, **out, "cos_selected_full": 0.5}])
    assert mean["cos_selected_full"] == 0.5 and mean["norm_full"] == pytest.approx(out["norm_full"])
