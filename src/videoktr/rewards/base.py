"""Shared pieces of the reward functions: the error type, the registry and completion-text access.

Reward functions follow TRL's shape ``f(completions, **columns) -> list[float | None]``: ``completions`` holds one
entry per row (B*G rows, the G completions of a prompt contiguous), each a plain string or a conversation (a list
of ``{"role", "content"}`` dicts, whose last assistant message is scored); dataset columns arrive as keyword lists
of the same length (``solution``, ``problem_type``, ``problem_id``, ``options``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from videoktr.core.registry import Registry
from videoktr.errors import UserError

REWARDS = Registry("reward")


class RewardError(UserError):
    """A reward that cannot be computed for a sample (bad data, unknown problem type): never a silent 0.

    The message names the reward and the sample (``problem_id`` when the dataset has it, else the row index).
    """

    def __init__(self, reward: str, sample: str, problem: str):
        super().__init__(f"reward '{reward}' cannot score sample {sample}: {problem}")
        self.reward = reward
        self.sample = sample


def sample_name(index: int, problem_id: Sequence[Any] | None) -> str:
    """How an error names row ``index``: its ``problem_id`` when the column exists, plus the row index."""
    if problem_id is not None and index < len(problem_id) and problem_id[index] is not None:
        return f"problem_id={problem_id[index]!r} (row {index})"
    return f"row {index}"


def _content_text(content: Any) -> str:
    """Text of a message content: a string, or TRL's multimodal list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    raise TypeError(f"message content must be a string or a list of parts, got {type(content).__name__}")


def completion_text(completion: Any) -> str:
    """The text a reward scores: the string itself, or the content of the last assistant message.

    Raises ``TypeError`` for a conversation without an assistant message (a caller bug, not a model error).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role") == "assistant":
                return _content_text(message.get("content", ""))
        raise TypeError("conversational completion has no assistant message to score")
    raise TypeError(f"completion must be a string or a list of messages, got {type(completion).__name__}")


def check_column(reward: str, name: str, values: Sequence[Any] | None, n_rows: int) -> Sequence[Any]:
    """Return dataset column ``name`` after checking it exists and has one value per completion."""
    if values is None:
        raise RewardError(reward, "(all rows)", f"the dataset has no '{name}' column; add it to every record")
    if len(values) != n_rows:
        raise RewardError(
            reward, "(all rows)", f"column '{name}' has {len(values)} values for {n_rows} completions"
        )
    return values


def register_reward(name: str):
    """Register a reward function under ``name`` and give it that ``__name__`` (TRL logs rewards/<name>/mean)."""

    def wrap(func):
        func.__name__ = name
        REWARDS.register(name)(func)
        return func

    return wrap
