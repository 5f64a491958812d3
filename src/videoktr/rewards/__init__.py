"""Reward functions in TRL's shape ``f(completions, **columns) -> list[float | None]``.

Registered names (``REWARDS``): ``accuracy`` (Video-R1 accuracy by problem_type), ``format`` (think/answer
format), and TW-GRPO's multi-answer rewards as its authors compute them: ``tw_soft_mc`` (soft, partial credit),
``tw_exact_mc`` (binary), ``tw_soft_mc_lenient`` (soft on a lenient reading) and ``tw_format`` (their format
check). ``get_reward`` also resolves a user function by dotted path,
``"package.module:function"`` or ``"package.module.function"``. The length-control bonus (``length_bonus``) is
not a per-completion reward: it needs the group and the token lengths, so the trainer applies it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from videoktr.errors import UserError
from videoktr.rewards import accuracy, format, tw_grpo  # noqa: F401  (registers the rewards)
from videoktr.rewards.accuracy import accuracy_reward
from videoktr.rewards.base import REWARDS, RewardError, completion_text
from videoktr.rewards.format import format_reward, tw_format_reward
from videoktr.rewards.length import length_bonus
from videoktr.rewards.tw_grpo import tw_exact_mc_reward, tw_soft_mc_lenient_reward, tw_soft_mc_reward

__all__ = [
    "REWARDS",
    "RewardError",
    "accuracy_reward",
    "completion_text",
    "format_reward",
    "get_reward",
    "length_bonus",
    "tw_exact_mc_reward",
    "tw_format_reward",
    "tw_soft_mc_lenient_reward",
    "tw_soft_mc_reward",
]


def _split_dotted(path: str) -> tuple[str, str]:
    if ":" in path:
        module, _, attr = path.partition(":")
    else:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise UserError(f"reward '{path}': write 'package.module:function' or 'package.module.function'")
    return module, attr


def get_reward(name_or_path: str) -> Callable:
    """A registered reward by name, or a function by dotted path. Unknown names list the registered ones."""
    if name_or_path in REWARDS:
        return REWARDS.get(name_or_path)
    if ":" not in name_or_path and "." not in name_or_path:
        return REWARDS.get(name_or_path)  # raises UnknownNameError listing the valid names
    module_name, attr = _split_dotted(name_or_path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(f"reward '{name_or_path}': cannot import module '{module_name}' ({err})") from err
    func = getattr(module, attr, None)
    if func is None:
        raise UserError(f"reward '{name_or_path}': module '{module_name}' has no attribute '{attr}'")
    if not callable(func):
        raise UserError(f"reward '{name_or_path}': '{attr}' is a {type(func).__name__}, not a function")
    return func
