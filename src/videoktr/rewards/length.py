"""Length-control bonus (authors' default on, METHOD.md section 4).

A completion gets ``bonus`` when it is correct (accuracy reward > ``correct_threshold``), its length is within
``[min_len, max_len]`` tokens (both ends included), and at least ``min_correct`` completions of its group are
correct. Length is the completion length in tokens (through EOS), not the number of selected tokens.
Defaults are the authors' code: 0.2 for 320..512 tokens when more than one of the group is correct (> 0.1).
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_CORRECT_THRESHOLD = 0.1


def length_bonus(
    accuracy: Sequence[float],
    lengths: Sequence[int],
    group_size: int,
    min_len: int = 320,
    max_len: int = 512,
    bonus: float = 0.2,
    min_correct: int = 2,
    correct_threshold: float = DEFAULT_CORRECT_THRESHOLD,
) -> list[float]:
    """Bonus per completion. ``accuracy``, ``lengths``: (B*G,), groups of ``group_size`` contiguous rows.

    Returns a list of (B*G,) floats, each 0.0 or ``bonus``; add it to the summed reward before advantages.
    """
    if len(accuracy) != len(lengths):
        raise ValueError(f"accuracy has {len(accuracy)} rows but lengths has {len(lengths)}")
    if group_size < 1 or len(accuracy) % group_size:
        raise ValueError(f"{len(accuracy)} rows do not split into groups of group_size={group_size}")
    if min_len > max_len:
        raise ValueError(f"min_len={min_len} is above max_len={max_len}; swap them")
    correct = [a > correct_threshold for a in accuracy]
    bonuses = []
    for start in range(0, len(accuracy), group_size):
        group = range(start, start + group_size)
        enough_correct = sum(correct[i] for i in group) >= min_correct
        for i in group:
            in_range = min_len <= lengths[i] <= max_len
            bonuses.append(bonus if enough_correct and correct[i] and in_range else 0.0)
    return bonuses
