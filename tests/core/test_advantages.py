import math

import pytest
import torch

from videoktr.core.advantages import ADVANTAGE_SCALES, group_advantages
from videoktr.core.registry import UnknownNameError

REWARDS = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])  # two prompts, G = 4


def test_group_scale_hand_values():
    # prompt 0: mean 0.25, unbiased std sqrt((0.75^2 + 3 * 0.25^2) / 3) = sqrt(0.25) = 0.5
    #   -> 0.75 / 0.5001 = 1.499700, -0.25 / 0.5001 = -0.499900
    # prompt 1: mean 0.5, std sqrt(4 * 0.25 / 3) = 0.577350 -> +-0.5 / 0.577450 = +-0.865876
    got = group_advantages(REWARDS, group_size=4)
    expected = [1.499700, -0.499900, -0.499900, -0.499900, 0.865876, 0.865876, -0.865876, -0.865876]
    assert got.tolist() == pytest.approx(expected, abs=1e-5)


def test_no_scale_is_dr_grpo():
    # R - mean_G: [0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5]
    got = group_advantages(REWARDS, group_size=4, scale="none")
    assert got.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5])


def test_batch_scale():
    # std over all 8 rewards: mean 0.375; 3 * 0.625^2 + 5 * 0.375^2 = 1.171875 + 0.703125 = 1.875;
    # unbiased: sqrt(1.875 / 7) = 0.517549 -> centred / 0.517649
    got = group_advantages(REWARDS, group_size=4, scale="batch")
    centred = torch.tensor([0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5])
    assert got.tolist() == pytest.approx((centred / (math.sqrt(1.875 / 7) + 1e-4)).tolist(), abs=1e-6)


@pytest.mark.parametrize("scale", ADVANTAGE_SCALES.names())
def test_equal_rewards_give_zero_advantages_not_nan(scale):
    got = group_advantages(torch.ones(6), group_size=3, scale=scale)
    assert torch.equal(got, torch.zeros(6))


def test_integer_rewards_and_eps():
    got = group_advantages(torch.tensor([1, 0]), group_size=2, eps=0.0)
    # mean 0.5, unbiased std sqrt(2 * 0.25 / 1) = 0.707107 -> +-0.707107
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx([0.707107, -0.707107], abs=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        group_advantages(REWARDS, group_size=3)
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        group_advantages(REWARDS, group_size=1)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        group_advantages(REWARDS.reshape(2, 4), group_size=4)
    with pytest.raises(UnknownNameError, match="valid: batch, group, none"):
        group_advantages(REWARDS, group_size=4, scale="rank")
