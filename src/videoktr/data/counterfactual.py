"""Counterfactual word labels of the synthetic reasoning: why each word of a chain of thought is there.

The generator fills each reasoning template (:mod:`videoktr.data.synthetic`) with *slots* read off the scene: the
colour of a square, the count, the direction, the colour that appears first, the answer letter. Re-deriving the
slots under counterfactual scenes says what each word depends on:

- ``order``: the word changes when only the frame order changes. Order counterfactuals permute the frames (the
  reversal, every rotation, and the reversal of every rotation: ``2 * num_frames - 1`` permutations), keeping every
  square's colour and place.
- ``content``: the word changes when the colours/objects change, and under no order counterfactual. Content
  counterfactuals keep every square's frames: each other colour assignment (a permutation of the four colours), any
  of the squares removed (one at least kept), one square of an unused colour added beside an existing one (shown
  in the same frames).
- ``filler``: neither (the template's own words: "let me think", "appears first", "so the answer is").

A word that changes under both kinds of counterfactual (the colour in "yellow was first", the answer letter of a
temporal question) is ``order``: the frame order decides it. Both raw dependencies are kept
(:func:`slot_dependencies`). A counterfactual scene that no longer poses the question (two squares for "What color
is the square?", a tie for "which appears first") is skipped; one where nothing comes after the asked colour
answers "nothing", which differs from the original answer. Slots are labelled word by word ("red and blue" gives
three words), and the letter inside ``<answer>...</answer>`` is the ``letter`` slot too.

Records written by :func:`videoktr.data.synthetic.make_synthetic` carry ``counterfactual_spans`` =
[{start, end, label, slot}] on ``process`` (re-derived from the record's own scene). Model completions carry no
scene: :func:`label_completion` parses the text against the templates of the run's kinds and labels each slot by its
role (:func:`slot_roles`, the labels re-derived over sampled scenes; tests check they agree with every scene's own).
A completion that does not follow a template (truncated, a word outside the template, two kinds that label it
differently) is *unlabelled*: it gets no spans and a status saying why, and metrics leave it out and count it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from itertools import combinations, permutations

import numpy as np

from videoktr.data.synthetic import (
    _CHECKS,
    _CLOSERS,
    _LETTERS,
    _OPENERS,
    _WORD_RE,
    COLOR_NAMES,
    COUNT_WORDS,
    QUESTION_KINDS,
    Scene,
    Square,
    SyntheticConfig,
)
from videoktr.data.synthetic_multi import _letters, _names
from videoktr.errors import UserError

__all__ = [
    "COUNTERFACTUAL_LABELS",
    "LabelledText",
    "counterfactual_spans",
    "label_completion",
    "label_completions",
    "slot_dependencies",
    "slot_roles",
]

COUNTERFACTUAL_LABELS = ("order", "content", "filler")
Span = tuple[int, int, str]
Slots = dict[str, str]


# ------------------------------------------------------------------------------ reading slots off a scene


def _first_frame(square: Square) -> int | None:
    return next((t for t, p in enumerate(square.positions) if p is not None), None)


def _appearance(squares: Sequence[Square]) -> list[Square] | None:
    """Squares by the frame they first appear in; None on a tie or a square never shown."""
    firsts = [_first_frame(s) for s in squares]
    if None in firsts or len(set(firsts)) != len(firsts):
        return None
    return [squares[i] for i in sorted(range(len(squares)), key=lambda i: firsts[i])]


def _letter(name: str, values: Sequence[str]) -> str:
    return _LETTERS[values.index(name)]


def _read_color(squares, asked):
    if len(squares) != 1:
        return None
    return {"c": squares[0].color, "letter": _letter(squares[0].color, COLOR_NAMES)}


def _read_count(squares, asked):
    n = len(squares)
    if not 1 <= n <= len(COUNT_WORDS):
        return None
    one = n == 1
    noun, be = ("square", "is") if one else ("squares", "are")
    return {"n": COUNT_WORDS[n - 1], "noun": noun, "be": be, "letter": _LETTERS[n - 1]}


def _read_first_color(squares, asked):
    seen = _appearance(squares)
    if seen is None or len(seen) != 2:
        return None
    return {"a": seen[0].color, "b": seen[1].color, "letter": _letter(seen[0].color, COLOR_NAMES)}


def _read_direction(squares, asked):
    if len(squares) != 1 or None in squares[0].positions:
        return None
    (y0, x0), (y1, x1) = squares[0].positions[0], squares[0].positions[-1]
    if (y1 != y0) == (x1 != x0):
        return None  # still, or diagonal: no single direction
    d = ("left" if x1 < x0 else "right") if x1 != x0 else ("up" if y1 < y0 else "down")
    return {"c": squares[0].color, "d": d, "letter": _LETTERS[("left", "right", "up", "down").index(d)]}


def _read_after(squares, asked):
    seen = _appearance(squares)
    names = [s.color for s in seen or []]
    if len(names) != 3 or asked not in names:
        return None
    ans = (names + [""])[names.index(asked) + 1]  # "": nothing comes after (a counterfactual answer)
    slots = {"c1": names[0], "c2": names[1], "c3": names[2], "x": asked, "ans": ans}
    return {**slots, "letter": _letter(ans, COLOR_NAMES) if ans else ""}


def _read_colors(squares, asked):
    present = sorted({COLOR_NAMES.index(s.color) for s in squares})
    if not present or len(present) != len(squares):
        return None
    count = _read_count(squares, asked)
    return {"cs": _names(present), "n": count["n"], "noun": count["noun"], "be": count["be"],
            "letter": _letters(present)}  # fmt: skip


def _read_colors_after(squares, asked):
    seen = _appearance(squares)
    names = [s.color for s in seen or []]
    if asked not in names or len(set(names)) != len(names):
        return None
    after = [COLOR_NAMES.index(c) for c in names[names.index(asked) + 1 :]]  # empty: a counterfactual answer
    cs, letters = (_names(after), _letters(after)) if after else ("", "")
    return {"x": asked, "cs": cs, "seq": ", ".join(names), "letter": letters}


# kind -> (squares, asked colour or None) -> the slots of its reasoning plus "letter", or None when the scene
# does not pose the question
SLOT_READERS: dict[str, Callable[[list[Square], str | None], Slots | None]] = {
    "color": _read_color,
    "count": _read_count,
    "first_color": _read_first_color,
    "direction": _read_direction,
    "after": _read_after,
    "colors": _read_colors,
    "colors_after": _read_colors_after,
}


def _reader(kind: str) -> Callable[[list[Square], str | None], Slots | None]:
    QUESTION_KINDS.get(kind)  # unknown names fail with the list of valid ones
    if kind not in SLOT_READERS:
        raise UserError(
            f"counterfactual labels: no slot reader for question kind '{kind}'; add one to SLOT_READERS"
        )
    return SLOT_READERS[kind]


def asked_color(scene: Scene) -> str | None:
    """The colour the question names ("right after the X square"), or None."""
    return scene.slots.get("x")


# ------------------------------------------------------------------------------------------ counterfactuals


def _frame_orders(num_frames: int) -> list[list[int]]:
    """Every rotation of the frames, and the reversal of each, except the identity."""
    frames = list(range(num_frames))
    rotations = [frames[k:] + frames[:k] for k in range(num_frames)]
    return [p for p in rotations + [r[::-1] for r in rotations] if p != frames]


def order_counterfactuals(squares: list[Square], asked: str | None):
    """(squares, asked) with the frames permuted and nothing else changed."""
    for perm in _frame_orders(len(squares[0].positions)):
        yield [replace(s, positions=[s.positions[t] for t in perm]) for s in squares], asked


def content_counterfactuals(squares: list[Square], asked: str | None):
    """(squares, asked) with colours reassigned, squares removed (keeping one or more, and the asked one) or a square
    added; the frames of the squares kept are unchanged."""
    for perm in permutations(COLOR_NAMES):
        if perm != COLOR_NAMES:
            recolour = dict(zip(COLOR_NAMES, perm))
            yield [replace(s, color=recolour[s.color]) for s in squares], recolour.get(asked, asked)
    for size in range(1, len(squares)):
        for kept in combinations(squares, size):
            if asked is None or any(s.color == asked for s in kept):
                yield list(kept), asked
    unused = [c for c in COLOR_NAMES if c not in {s.color for s in squares}]
    for square in squares:
        for colour in unused:
            yield [*squares, replace(square, color=colour)], asked


def slot_dependencies(kind: str, scene: Scene) -> dict[str, tuple[bool, bool]]:
    """slot -> (changes under some order counterfactual, changes under some content counterfactual)."""
    read = _reader(kind)
    asked = asked_color(scene)
    base = read(scene.squares, asked)
    if base is None:
        raise ValueError(f"kind '{kind}': the scene does not pose its own question (slots {scene.slots})")

    def changed(variants) -> set[str]:
        out: set[str] = set()
        for squares, new_asked in variants:
            if squares and (slots := read(squares, new_asked)) is not None:
                out |= {k for k, v in base.items() if slots[k] != v}
        return out

    order = changed(order_counterfactuals(scene.squares, asked))
    content = changed(content_counterfactuals(scene.squares, asked))
    return {slot: (slot in order, slot in content) for slot in base}


def _label(order: bool, content: bool) -> str:
    return "order" if order else "content" if content else "filler"


def scene_slot_labels(kind: str, scene: Scene) -> dict[str, str]:
    """slot -> label for this scene."""
    return {slot: _label(*dep) for slot, dep in slot_dependencies(kind, scene).items()}


@cache
def slot_roles(kind: str, n_scenes: int = 24, seed: int = 0) -> dict[str, str]:
    """slot -> label of ``kind``'s slots, re-derived over ``n_scenes`` sampled scenes (a slot that is ``order`` in
    any scene is ``order``, else ``content`` if it is in any). Labels model completions, which carry no scene."""
    spec = QUESTION_KINDS.get(kind)
    cfg = SyntheticConfig(num_frames=max(8, spec.min_frames), kinds=(kind,))
    rng = np.random.default_rng([seed, 7])
    deps: dict[str, tuple[bool, bool]] = {}
    for i in range(n_scenes):
        scene = spec.scene(rng, i % spec.n_answers, cfg)
        for slot, (o, c) in slot_dependencies(kind, scene).items():
            old = deps.get(slot, (False, False))
            deps[slot] = (old[0] or o, old[1] or c)
    return {slot: _label(*dep) for slot, dep in deps.items()}


# ------------------------------------------------------------------------------------------ template parsing

_SLOT_VALUE = {"letter": r"[A-D](?:,[A-D])*"}
_DEFAULT_VALUE = r"[a-z]+(?:(?:, | and )[a-z]+)*"
_TRAIL = r"(?:<\|[a-z_]+\|>|\s)*"


def _pattern(template: str, groups: list[str]) -> str:
    """Regex of one template: literal text escaped, each ``{slot}`` a named group (``g<k>``, slot in ``groups``)."""
    out = []
    for literal, slot, _, _ in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if slot is not None:
            out.append(f"(?P<g{len(groups)}>{_SLOT_VALUE.get(slot, _DEFAULT_VALUE)})")
            groups.append(slot)
    return "".join(out)


def _alternatives(templates: Iterable[str], groups: list[str]) -> str:
    return "(?:" + "|".join(_pattern(t, groups) for t in templates) + ")"


@cache
def _grammar(kind: str) -> list[tuple[re.Pattern, tuple[str, ...]]]:
    """One regex per evidence sentence of ``kind``: the whole completion (``<think>`` opener, evidence, check,
    closer ``</think>``, then optionally ``<answer>letters</answer>`` and end-of-turn tokens)."""
    out = []
    for evidence in QUESTION_KINDS.get(kind).evidence:
        groups: list[str] = []
        regex = (
            "<think>" + _alternatives(_OPENERS, groups) + " " + _pattern(evidence, groups)
            + _alternatives(_CHECKS, groups) + " " + _alternatives(_CLOSERS, groups) + "</think>"
            + "(?:<answer>" + _pattern("{letter}", groups) + "</answer>)?" + _TRAIL
        )  # fmt: skip
        out.append((re.compile(regex), tuple(groups)))
    return out


def _slot_spans(text: str, match: re.Match, groups: Sequence[str], labels: dict[str, str]) -> list[tuple]:
    """(start, end, label, slot) of every word inside the matched slot groups whose label is not filler."""
    spans = []
    for k, slot in enumerate(groups):
        start, end = match.span(f"g{k}")
        if start < 0 or labels[slot] == "filler":
            continue
        for word in _WORD_RE.finditer(text, start, end):
            spans.append((word.start(), word.end(), labels[slot], slot))
    return spans


def _parse(text: str, kind: str) -> tuple[re.Match, tuple[str, ...]] | None:
    for regex, groups in _grammar(kind):
        if (match := regex.fullmatch(text)) is not None:
            return match, groups
    return None


def counterfactual_spans(process: str, kind: str, scene: Scene) -> list[dict]:
    """[{start, end, label, slot}] of the non-filler words of a generated ``process``, re-derived from ``scene``."""
    parsed = _parse(process, kind)
    if parsed is None:
        raise ValueError(f"kind '{kind}': the reasoning {process!r} follows none of its templates")
    spans = _slot_spans(process, *parsed, scene_slot_labels(kind, scene))
    return [{"start": a, "end": b, "label": lab, "slot": slot} for a, b, lab, slot in spans]


@dataclass(frozen=True)
class LabelledText:
    """Counterfactual labels of one completion: ``status`` "template" (``kind`` set, ``spans`` = (start, end,
    label) of its order/content words, every other character filler), "off_template" or "ambiguous" (no spans:
    unlabelled)."""

    status: str
    kind: str | None
    spans: tuple[Span, ...]

    @property
    def labelled(self) -> bool:
        return self.status == "template"


def label_completion(text: str, kinds: Sequence[str]) -> LabelledText:
    """Label a model completion by the template it follows among ``kinds``' (slot roles: :func:`slot_roles`).

    A completion following templates of several kinds is labelled when they agree on every span, else
    "ambiguous". Raises UserError for an unknown kind."""
    found: dict[str, tuple[Span, ...]] = {}
    for kind in kinds:
        parsed = _parse(text, kind)
        if parsed is not None:
            found[kind] = tuple(s[:3] for s in _slot_spans(text, *parsed, slot_roles(kind)))
    if not found:
        return LabelledText("off_template", None, ())
    if len(set(found.values())) > 1:
        return LabelledText("ambiguous", None, ())
    kind, spans = next(iter(found.items()))
    return LabelledText("template", kind, spans)


def label_completions(
    texts: Sequence[str], kinds: Sequence[str]
) -> tuple[list[LabelledText], dict[str, int]]:
    """:func:`label_completion` of each text, and the count of each status."""
    for kind in kinds:
        _reader(kind)
    labelled = [label_completion(t, kinds) for t in texts]
    counts = {s: sum(lt.status == s for lt in labelled) for s in ("template", "off_template", "ambiguous")}
    return labelled, counts
