"""Format rewards: the completion is a ``<think>`` block followed by an ``<answer>`` block.

- ``format`` (Video-R1, METHOD section 4): the whole completion (outer whitespace stripped) matches
  ``<think>.*?</think>\\s*<answer>.*?</answer>``.
- ``tw_format`` (TW-GRPO's ``format_reward`` in ``src/open_r1/grpo.py`` at aa529ff): at most one ``<think>`` and one
  ``<answer>`` opening tag, and ``re.search`` of ``<think>.*?</think>\\s*<answer>.*?</answer>[\\s!]*$`` in the
  stripped text, so text *before* ``<think>`` is allowed and trailing ``!`` or spaces after ``</answer>`` too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from videoktr.rewards.base import completion_text, register_reward

FORMAT_PATTERN = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
TW_FORMAT_PATTERN = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>[\s!]*$", re.DOTALL)


def is_well_formatted(text: str) -> bool:
    """Whether the whole text (outer whitespace stripped) matches ``<think>.*?</think>\\s*<answer>.*?</answer>``."""
    return FORMAT_PATTERN.fullmatch(text.strip()) is not None


def is_tw_formatted(text: str) -> bool:
    """The TW-GRPO authors' check: one ``<think>`` and one ``<answer>`` at most, then the pattern searched."""
    if text.count("<think>") > 1 or text.count("<answer>") > 1:
        return False
    return TW_FORMAT_PATTERN.search(text.strip()) is not None


@register_reward("format")
def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 per completion that is exactly ``<think>...</think>`` then ``<answer>...</answer>``, else 0.0."""
    return [1.0 if is_well_formatted(completion_text(c)) else 0.0 for c in completions]


@register_reward("tw_format")
def tw_format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 per completion passing the TW-GRPO authors' format check (:func:`is_tw_formatted`), else 0.0."""
    return [1.0 if is_tw_formatted(completion_text(c)) else 0.0 for c in completions]
