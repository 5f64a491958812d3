"""Group-relative advantages (METHOD 3).

Rows are B prompts x G completions, the G completions of a prompt being contiguous rows. Standard deviations are
``torch.std``'s default, the unbiased estimator (divisor G - 1), as TRL's GRPOTrainer and the authors' code use.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from videoktr.core.registry import Registry

__all__ = ["ADVANTAGE_SCALES", "group_advantages"]

ADVANTAGE_SCALES: Registry[Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = Registry(
    "advantage scale"
)


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """Advantage of each completion relative to the other completions of its prompt.

    Args:
        rewards: (N,) total reward per completion, N = B * group_size.
        group_size: G, completions per prompt (>= 2: one completion has no group to compare with).
        scale: a name in :data:`ADVANTAGE_SCALES`: ``group`` ``(R - mean_G) / (std_G + eps)`` (GRPO),
            ``none`` ``R - mean_G`` (Dr. GRPO), ``batch`` ``(R - mean_G) / (std over all N rewards + eps)``.
        eps: added to the standard deviation (1e-4 as in the authors' code).

    Returns:
        (N,) advantages, in the rewards' floating dtype (float32 for integer rewards).
    """
    fn = ADVANTAGE_SCALES.get(scale)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must have shape (N,), got {tuple(rewards.shape)}")
    if group_size < 2 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"group_size must be >= 2 and divide the {rewards.numel()} rewards (B prompts x G completions), "
            f"got {group_size}"
        )
    if not rewards.is_floating_point():
        rewards = rewards.float()
    grouped = rewards.reshape(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    return fn(grouped, centred, eps).reshape(-1)


# Each scale: grouped rewards (B, G), centred rewards (B, G), eps -> (B, G) advantages.


@ADVANTAGE_SCALES.register("group")
def _group_scale(grouped: torch.Tensor, centred: torch.Tensor, eps: float) -> torch.Tensor:
    return centred / (grouped.std(dim=1, keepdim=True) + eps)


@ADVANTAGE_SCALES.register("none")
def _no_scale(grouped: torch.Tensor, centred: torch.Tensor, eps: float) -> torch.Tensor:
    return centred


@ADVANTAGE_SCALES.register("batch")
def _batch_scale(grouped: torch.Tensor, centred: torch.Tensor, eps: float) -> torch.Tensor:
    return centred / (grouped.std() + eps)
