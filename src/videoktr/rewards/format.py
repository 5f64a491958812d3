"""Format reward: the completion is exactly a ``<think>`` block followed by an ``<answer>`` block."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from videoktr.rewards.base import completion_text, register_reward

FORMAT_PATTERN = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def is_well_formatted(text: str) -> bool:
    """Whether the whole text (outer whitespace stripped) matches ``<think>.*?</think>\\s*<answer>.*?</answer>``."""
    return FORMAT_PATTERN.fullmatch(text.strip()) is not None


@register_reward("format")
def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 per completion that is exactly ``<think>...</think>`` then ``<answer>...</answer>``, else 0.0."""
    return [1.0 if is_well_formatted(completion_text(c)) else 0.0 for c in completions]
