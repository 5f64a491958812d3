"""Multi-answer synthetic question kinds (TW-GRPO): several correct letters, ``"<answer>A,C</answer>"``.

Options are the four colours in a fixed order (``A. red``, ``B. green``, ``C. blue``, ``D. yellow``); the answer is
a non-empty set of them, written as sorted letters joined by commas (the TW-GRPO authors' format). The answer index
of a record picks a set from :data:`ANSWER_SETS` (the 15 non-empty subsets, balanced per kind like the single-answer
kinds' letters), so the sizes 1/2/3/4 occur 4/6/4/1 times in 15.

- ``colors`` (static): "Which colors appear in the video?": one still square per colour of the set, all visible
  in every frame.
- ``colors_after`` (temporal): "Which colors appear after the X square?": squares shown one after another; the
  asked colour X, then the set (1-3 colours), with each remaining colour shown before X or not at all. Any single
  frame shows one square, so only the order answers it. Needs 8 frames (up to 4 squares of >= 2 frames each).
"""

from __future__ import annotations

import numpy as np

from videoktr.data.synthetic import (
    _COLOR_OPTIONS,
    _LETTERS,
    COLOR_NAMES,
    QUESTION_KINDS,
    QuestionKind,
    Scene,
    Square,
    SyntheticConfig,
    _one_after_another,
    _sizes,
    _slot_positions,
)

# the 15 non-empty subsets of the 4 colour indices, by bit mask 1..15
ANSWER_SETS: tuple[tuple[int, ...], ...] = tuple(
    tuple(i for i in range(len(COLOR_NAMES)) if mask >> i & 1) for mask in range(1, 2 ** len(COLOR_NAMES))
)
# the 14 sets that leave at least one colour to ask about (``colors_after``)
PROPER_SETS = tuple(s for s in ANSWER_SETS if len(s) < len(COLOR_NAMES))


def _names(indices) -> str:
    """ "red", "red and blue", "red, blue and yellow"."""
    names = [COLOR_NAMES[i] for i in indices]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _letters(indices) -> str:
    return ",".join(_LETTERS[i] for i in sorted(indices))


def _scene_colors(rng: np.random.Generator, answer: int, cfg: SyntheticConfig) -> Scene:
    chosen = [int(i) for i in rng.permutation(ANSWER_SETS[answer])]
    sizes = _sizes(rng, len(chosen))
    squares = [
        Square(COLOR_NAMES[c], s, [p] * cfg.num_frames)
        for c, s, p in zip(chosen, sizes, _slot_positions(rng, cfg, len(chosen), sizes))
    ]
    one = len(chosen) == 1
    slots = {
        "cs": _names(sorted(chosen)),
        "n": ("one", "two", "three", "four")[len(chosen) - 1],
        "noun": "square" if one else "squares",
        "be": "is" if one else "are",
    }
    return Scene(squares, "Which colors appear in the video?", slots, letters=_letters(chosen))


def _scene_colors_after(rng: np.random.Generator, answer: int, cfg: SyntheticConfig) -> Scene:
    after = [int(i) for i in rng.permutation(PROPER_SETS[answer])]
    rest = [int(i) for i in rng.permutation([i for i in range(len(COLOR_NAMES)) if i not in after])]
    asked, others = rest[0], rest[1:]
    before = [c for c in others if rng.random() < 0.5]
    order = [*before, asked, *after]
    squares = _one_after_another(rng, cfg, order)
    slots = {"x": COLOR_NAMES[asked], "cs": _names(after), "seq": ", ".join(COLOR_NAMES[c] for c in order)}
    question = f"Which colors appear after the {COLOR_NAMES[asked]} square?"
    return Scene(squares, question, slots, letters=_letters(after))


QUESTION_KINDS.add(
    "colors",
    QuestionKind(
        "static",
        _COLOR_OPTIONS,
        _scene_colors,
        ("I see {cs}.", "There {be} {n} {noun}: {cs}.", "I count {n} {noun} in the video, {cs}."),
        n_answers=len(ANSWER_SETS),
    ),
)
QUESTION_KINDS.add(
    "colors_after",
    QuestionKind(
        "temporal",
        _COLOR_OPTIONS,
        _scene_colors_after,
        (
            "First the {x} square appears, then {cs}.",
            "The order is {seq}. So after {x} comes {cs}.",
            "I see the {x} square, then {cs} later.",
        ),
        n_answers=len(PROPER_SETS),
        min_frames=8,
    ),
)
