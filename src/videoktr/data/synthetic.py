"""Procedurally generated video reasoning tasks, small enough for a tiny model to learn on a CPU.

Each video shows solid coloured squares on a background at the vision processor's mean colour (the CLIP mean, so
the background normalises to ~0). Every question is multiple choice with four options in a fixed order per
question kind, and belongs to a family by the evidence it needs:

- ``static``: answerable from any single frame.
  ``color`` ("What color is the square?", the square drifts) and ``count`` ("How many squares are in the video?").
- ``temporal``: needs the order of the frames (shuffled frames make it unanswerable).
  ``first_color`` (two squares, one after the other), ``direction`` (one square moving left/right/up/down) and
  ``after`` (three squares one after the other, "which color appears right after the X square?").
- multi-answer kinds (several correct letters, ``"<answer>A,C</answer>"``, for TW-GRPO's soft reward), defined in
  :mod:`videoktr.data.synthetic_multi`: ``colors`` (static) and ``colors_after`` (temporal).

Each record carries ``family``, ``question_kind``, and for its templated chain of thought ``process`` the
character spans of its evidence words twice: ``evidence_spans`` = [{start, end, kind: "visual"|"temporal"}] from
:data:`EVIDENCE_LEXICON` (:func:`label_evidence_words`, which labels model completions too), and
``counterfactual_spans`` = [{start, end, label: "order"|"content", slot}] re-derived under counterfactual scenes
(:mod:`videoktr.data.counterfactual`). The reasoning mixes evidence with low-information filler ("let me think",
"hmm, wait", "so the answer is"), so that selecting key tokens is meaningful, in 15-35 words.

Output of :func:`make_synthetic` (same seed -> same JSON bytes and same decoded frames): ``videos/*.mp4``,
``train.json`` (RL records), ``train_sft.json`` (the same records with the fields of :data:`_SFT_ONLY`),
``test.json`` (with them, as ground truth), and ``synthetic_config.json`` (the arguments, to regenerate).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from videoktr.core.registry import Registry
from videoktr.data.prompts import build_question
from videoktr.data.video import write_video
from videoktr.errors import UserError

__all__ = [
    "BACKGROUND", "COLORS", "DIRECTIONS", "EVIDENCE_LEXICON", "FILLER_WORDS", "QUESTION_KINDS",
    "SyntheticConfig", "label_evidence_words", "make_synthetic", "synthetic_corpus",
]  # fmt: skip

BACKGROUND = (122, 116, 104)  # OPENAI_CLIP_MEAN * 255, rounded down
COLORS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 210, 30)}
COLOR_NAMES = tuple(COLORS)
DIRECTIONS = ("left", "right", "up", "down")
COUNT_WORDS = ("one", "two", "three", "four")
SQUARE_SIZES = (14, 16, 18, 20)  # even, so edges fall on even pixels (yuv420p chroma is 2x2)
_CELL = max(SQUARE_SIZES) + 4  # placement grid for squares that must not overlap
_LETTERS = "ABCD"

EVIDENCE_LEXICON: dict[str, frozenset[str]] = {
    "visual": frozenset(
        {*COLOR_NAMES, "square", "squares", *COUNT_WORDS, "1", "2", "3", "4"},
    ),
    "temporal": frozenset(
        {
            "first", "then", "later", "after", "before", "earlier", "next", "last", "start", "order",
            "appear", "appears", "appeared", "come", "comes", "follow", "follows",
            "move", "moves", "moving", "moved", *DIRECTIONS, "top", "bottom",
        }
    ),
}  # fmt: skip
# every other word the reasoning templates use; disjoint from the lexicon (tests check both)
FILLER_WORDS = frozenset(
    "okay let me think hmm look at the video see watch closely wait check again yes oh i so answer is must be "
    "that means a there in looks it count here total are keeps frame was by and".split()
)
_WORD_RE = re.compile(r"[A-Za-z]+|\d+")
_SFT_ONLY = ("process", "evidence_spans", "counterfactual_spans")  # reasoning + labels: not in train.json


def label_evidence_words(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) character spans of the words of ``text`` found in :data:`EVIDENCE_LEXICON`."""
    spans = []
    for match in _WORD_RE.finditer(text):
        word = match.group(0).lower()
        for kind, words in EVIDENCE_LEXICON.items():
            if word in words:
                spans.append((match.start(), match.end(), kind))
    return spans


@dataclass
class SyntheticConfig:
    """Size and content of the synthetic videos."""

    num_frames: int = field(
        default=8, metadata={"help": "Frames per video (even, >= 6 for the 'after' kind)."}
    )
    height: int = field(default=56, metadata={"help": "Frame height in pixels (even)."})
    width: int = field(default=112, metadata={"help": "Frame width in pixels (even)."})
    fps: float = field(default=4.0, metadata={"help": "Frame rate written into the mp4 files."})
    kinds: tuple[str, ...] = field(
        default=("color", "count", "first_color", "direction"),
        metadata={"help": "Question kinds, cycled over the records (see QUESTION_KINDS; also 'after')."},
    )

    def __post_init__(self) -> None:
        self.kinds = tuple(self.kinds)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`UserError` naming the bad field and how to fix it."""
        if not self.kinds:
            raise UserError("synthetic: kinds is empty; pick some of " + ", ".join(QUESTION_KINDS.names()))
        unknown = [kind for kind in self.kinds if kind not in QUESTION_KINDS]
        if unknown:
            raise UserError(
                f"synthetic: unknown question kind(s) {unknown}; valid: {', '.join(QUESTION_KINDS.names())}"
            )
        need = max(QUESTION_KINDS.get(kind).min_frames for kind in self.kinds)
        if self.num_frames < need or self.num_frames % 2:
            raise UserError(
                f"synthetic: num_frames={self.num_frames} must be even and >= {need} for {self.kinds}"
            )
        if self.height % 2 or self.width % 2:
            raise UserError(f"synthetic: height={self.height} and width={self.width} must both be even")
        if (self.height // _CELL) * (self.width // _CELL) < 4:
            raise UserError(
                f"synthetic: {self.height}x{self.width} frames hold fewer than 4 squares of up to "
                f"{max(SQUARE_SIZES)} px; use at least height=48, width=96"
            )
        if _max_step(self.height, self.num_frames) < 2:
            raise UserError(
                f"synthetic: a square cannot move up/down by 2 px per frame over {self.num_frames} frames in "
                f"height={self.height}; raise height to >= {max(SQUARE_SIZES) + 2 * (self.num_frames - 1)}"
            )
        if not self.fps > 0:
            raise UserError(f"synthetic: fps={self.fps} must be > 0")


# ---------------------------------------------------------------------------------------------------- scenes


@dataclass
class Square:
    """A square of ``color`` and side ``size``; ``positions[t]`` = (y, x) of its top-left corner or None."""

    color: str
    size: int
    positions: list[tuple[int, int] | None]


@dataclass
class Scene:
    """What one video shows, the question about it, and the words that fill its reasoning template."""

    squares: list[Square]
    question: str
    slots: dict[str, str]
    letters: str | None = None  # the answer's letters when not the one letter of the answer index ("A,C")


def _max_step(extent: int, num_frames: int) -> int:
    """Largest even per-frame step that moves the biggest square across ``extent`` pixels in num_frames - 1 steps."""
    return (extent - max(SQUARE_SIZES)) // (num_frames - 1) // 2 * 2


def _even(rng: np.random.Generator, low: int, high: int) -> int:
    """A random even integer in [low, high] (low even)."""
    return low + 2 * int(rng.integers(0, (high - low) // 2 + 1))


def _slot_positions(rng: np.random.Generator, cfg: SyntheticConfig, count: int, sizes: list[int]) -> list:
    """Top-left corners of ``count`` squares in distinct grid cells (so they never overlap)."""
    cols = cfg.width // _CELL
    cells = rng.permutation((cfg.height // _CELL) * cols)[:count]
    return [
        (int(c // cols) * _CELL + _even(rng, 0, _CELL - s), int(c % cols) * _CELL + _even(rng, 0, _CELL - s))
        for c, s in zip(cells, sizes)
    ]


def _sizes(rng: np.random.Generator, count: int) -> list[int]:
    return [int(s) for s in rng.choice(SQUARE_SIZES, size=count)]


def _others(rng: np.random.Generator, exclude: int, count: int) -> list[int]:
    """``count`` distinct colour indices other than ``exclude``, in random order."""
    return [int(i) for i in rng.permutation([i for i in range(len(COLOR_NAMES)) if i != exclude])[:count]]


def _segments(rng: np.random.Generator, num_frames: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive frame ranges [a, b) covering the video, each of even length >= 2."""
    cuts = sorted(int(c) for c in rng.choice(np.arange(2, num_frames - 1, 2), size=parts - 1, replace=False))
    bounds = [0, *cuts, num_frames]
    return list(zip(bounds[:-1], bounds[1:]))


def _shown(position: tuple[int, int], segment: tuple[int, int], num_frames: int) -> list:
    return [position if segment[0] <= t < segment[1] else None for t in range(num_frames)]


def _scene_color(rng: np.random.Generator, answer: int, cfg: SyntheticConfig) -> Scene:
    (size,) = _sizes(rng, 1)
    start = (_even(rng, 0, cfg.height - size), _even(rng, 0, cfg.width - size))
    end = (_even(rng, 0, cfg.height - size), _even(rng, 0, cfg.width - size))
    steps = cfg.num_frames - 1
    path = [
        tuple(int(round((a + (b - a) * t / steps) / 2)) * 2 for a, b in zip(start, end))
        for t in range(cfg.num_frames)
    ]
    color = COLOR_NAMES[answer]
    return Scene([Square(color, size, path)], "What color is the square?", {"c": color})


def _scene_count(rng: np.random.Generator, answer: int, cfg: SyntheticConfig) -> Scene:
    count = answer + 1
    colors = rng.permutation(len(COLOR_NAMES))[:count]
    sizes = _sizes(rng, count)
    squares = [
        Square(COLOR_NAMES[c], s, [p] * cfg.num_frames)
        for c, s, p in zip(colors, sizes, _slot_positions(rng, cfg, count, sizes))
    ]
    slots = {
        "n": COUNT_WORDS[answer],
        "noun": "square" if count == 1 else "squares",
        "be": "is" if count == 1 else "are",
    }
    return Scene(squares, "How many squares are in the video?", slots)


def _one_after_another(rng: np.random.Generator, cfg: SyntheticConfig, order: list[int]) -> list[Square]:
    """Squares of the colours in ``order``, each shown in its own frame range, one after another."""
    sizes = _sizes(rng, len(order))
    positions = _slot_positions(rng, cfg, len(order), sizes)
    segments = _segments(rng, cfg.num_frames, len(order))
    return [
        Square(COLOR_NAMES[c], s, _shown(p, seg, cfg.num_frames))
        for c, s, p, seg in zip(order, sizes, positions, segments)
    ]


def _scene_first_color(rng: np.random.Generator, answer: int, cfg: SyntheticConfig) -> Scene:
    order = [answer, *_others(rng, answer, 1)]
    squares = _one_after_another(rng, cfg, order)
    slots = {"a": COLOR_NAMES[order[0]], "b": COLOR_NAMES[order[1]]}
    return Scene(squares, "Which color appears first?", slots)


def _scene_direction(rng: np.random.Generator, answer: int, cfg: SyntheticConfig) -> Scene:
    (size,) = _sizes(rng, 1)
    horizontal = DIRECTIONS[answer] in ("left", "right")
    extent, across = (cfg.width, cfg.height) if horizontal else (cfg.height, cfg.width)
    step = _even(rng, 2, min(12, _max_step(extent, cfg.num_frames)))
    travel = step * (cfg.num_frames - 1)
    lead = _even(rng, 0, extent - size - travel)
    along = [lead + step * t for t in range(cfg.num_frames)]
    if DIRECTIONS[answer] in ("left", "up"):
        along = along[::-1]  # same set of positions, visited backwards: no single-frame cue to the direction
    other = _even(rng, 0, across - size)
    path = [(other, a) if horizontal else (a, other) for a in along]
    color = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
    return Scene(
        [Square(color, size, path)], "Which way does the square move?", {"c": color, "d": DIRECTIONS[answer]}
    )


def _scene_after(rng: np.random.Generator, answer: int, cfg: SyntheticConfig) -> Scene:
    asked, third = _others(rng, answer, 2)
    order = [asked, answer, third] if rng.random() < 0.5 else [third, asked, answer]
    squares = _one_after_another(rng, cfg, order)
    names = [COLOR_NAMES[c] for c in order]
    slots = {
        "c1": names[0],
        "c2": names[1],
        "c3": names[2],
        "x": COLOR_NAMES[asked],
        "ans": COLOR_NAMES[answer],
    }
    return Scene(squares, f"Which color appears right after the {COLOR_NAMES[asked]} square?", slots)


def render(squares: list[Square], cfg: SyntheticConfig) -> np.ndarray:
    """Frames (T, H, W, 3) uint8: the background with each square drawn where it is visible."""
    frames = np.empty((cfg.num_frames, cfg.height, cfg.width, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    for square in squares:
        for t, position in enumerate(square.positions):
            if position is not None:
                y, x = position
                frames[t, y : y + square.size, x : x + square.size] = COLORS[square.color]
    return frames


# ------------------------------------------------------------------------------------------- question kinds

_COLOR_OPTIONS = tuple(f"{letter}. {name}" for letter, name in zip(_LETTERS, COLOR_NAMES))


@dataclass(frozen=True)
class QuestionKind:
    """A family of questions: how to draw a scene for answer index ``i`` and how to reason about it."""

    family: str  # "static" | "temporal"
    options: tuple[str, ...]  # fixed order; the answer index picks the letter
    scene: Callable[[np.random.Generator, int, SyntheticConfig], Scene]
    evidence: tuple[str, ...]  # reasoning sentences, str.format-ed with the scene's slots
    n_answers: int = 4  # answer indices 0..n_answers-1, balanced per kind
    min_frames: int = 4


QUESTION_KINDS: Registry[QuestionKind] = Registry("synthetic question kind")
QUESTION_KINDS.add(
    "color",
    QuestionKind(
        "static",
        _COLOR_OPTIONS,
        _scene_color,
        ("I see a {c} square.", "The square looks {c}.", "There is one {c} square, so it is {c}."),
    ),
)
QUESTION_KINDS.add(
    "count",
    QuestionKind(
        "static",
        tuple(f"{letter}. {n}" for letter, n in zip(_LETTERS, range(1, 5))),
        _scene_count,
        (
            "I count {n} {noun}.",
            "There {be} {n} {noun} in the video.",
            "I see {n} {noun} here, {n} in total.",
        ),
    ),
)
QUESTION_KINDS.add(
    "first_color",
    QuestionKind(
        "temporal",
        _COLOR_OPTIONS,
        _scene_first_color,
        (
            "The {a} square appears first, then the {b} square appears later.",
            "First I see the {a} square. After it the {b} square appears.",
            "The {b} square comes after the {a} square, so {a} was first.",
        ),
    ),
)
QUESTION_KINDS.add(
    "direction",
    QuestionKind(
        "temporal",
        tuple(f"{letter}. {d}" for letter, d in zip(_LETTERS, DIRECTIONS)),
        _scene_direction,
        (
            "The {c} square moves {d}.",
            "The {c} square keeps moving {d}, frame by frame.",
            "At the start I see the {c} square, then it moves {d}.",
        ),
    ),
)
QUESTION_KINDS.add(
    "after",
    QuestionKind(
        "temporal",
        _COLOR_OPTIONS,
        _scene_after,
        (
            "First the {c1} square appears, then the {c2} square, then the {c3} square.",
            "The order is {c1}, then {c2}, then {c3}. So after {x} comes {ans}.",
            "I see {c1} first, {c2} next and {c3} last. The {ans} square follows the {x} square.",
        ),
        min_frames=6,
    ),
)

_OPENERS = (
    "Okay, let me think.",
    "Hmm, let me look at the video.",
    "Let me see.",
    "Okay, let me watch closely.",
)
_CHECKS = ("", " Wait, let me check again.", " Hmm, yes.", " Oh, I see.")
_CLOSERS = (
    "So the answer is {letter}.",
    "So the answer must be {letter}.",
    "That means the answer is {letter}.",
)


def reasoning(rng: np.random.Generator, kind: QuestionKind, slots: dict[str, str], letter: str) -> str:
    """A short templated chain of thought ``<think>...</think>``: filler, evidence, a check, the answer."""
    opener = _OPENERS[int(rng.integers(len(_OPENERS)))]
    evidence = kind.evidence[int(rng.integers(len(kind.evidence)))].format(**slots)
    check = _CHECKS[int(rng.integers(len(_CHECKS)))]
    closer = _CLOSERS[int(rng.integers(len(_CLOSERS)))].format(letter=letter)
    return f"<think>{opener} {evidence}{check} {closer}</think>"


# ----------------------------------------------------------------------------------------------- datasets


def _balanced_answers(rng: np.random.Generator, count: int, n: int = 4) -> list[int]:
    """``count`` answer indices in 0..n-1, each used floor(count/n) or ceil(count/n) times, in random order."""
    return [int(a) for a in rng.permutation(np.resize(np.arange(n), count))]


def _make_split(
    split: str, count: int, rng: np.random.Generator, cfg: SyntheticConfig, root: Path
) -> list[dict]:
    kinds = [cfg.kinds[i % len(cfg.kinds)] for i in range(count)]
    answers = {
        k: iter(_balanced_answers(rng, kinds.count(k), QUESTION_KINDS.get(k).n_answers)) for k in cfg.kinds
    }
    from videoktr.data.counterfactual import counterfactual_spans  # imports this module

    records = []
    for index, name in enumerate(kinds):
        kind, answer = QUESTION_KINDS.get(name), next(answers[name])
        scene = kind.scene(rng, answer, cfg)
        pid = f"{split}-{index:04d}"
        write_video(root / "videos" / f"{pid}.mp4", render(scene.squares, cfg), cfg.fps)
        letters = scene.letters or _LETTERS[answer]
        process = reasoning(rng, kind, scene.slots, letters)
        records.append(
            {
                "problem_id": pid,
                "problem": scene.question,
                "data_type": "video",
                "problem_type": "multiple choice",
                "options": list(kind.options),
                "solution": f"<answer>{letters}</answer>",
                "path": f"videos/{pid}.mp4",
                "data_source": "synthetic",
                "family": kind.family,
                "question_kind": name,
                "process": process,
                "evidence_spans": [
                    {"start": a, "end": b, "kind": k} for a, b, k in label_evidence_words(process)
                ],
                "counterfactual_spans": counterfactual_spans(process, name, scene),
            }
        )
    return records


def _write_json(path: Path, payload: object) -> Path:
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def make_synthetic(
    out_dir: str | Path,
    n_train: int,
    n_test: int,
    seed: int,
    num_frames: int = 8,
    height: int = 56,
    width: int = 112,
    fps: float = 4.0,
    kinds: Iterable[str] | None = None,
) -> dict[str, Path]:
    """Write the synthetic dataset under ``out_dir``; returns paths keyed root, videos, train, train_sft, test,
    config. ``kinds`` defaults to :attr:`SyntheticConfig.kinds`."""
    extra = {} if kinds is None else {"kinds": tuple(kinds)}
    cfg = SyntheticConfig(num_frames=num_frames, height=height, width=width, fps=fps, **extra)
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise UserError(f"synthetic: n_train={n_train}, n_test={n_test} must be >= 0 and not both 0")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    train = _make_split("train", n_train, np.random.default_rng([seed, 0]), cfg, root)
    test = _make_split("test", n_test, np.random.default_rng([seed, 1]), cfg, root)
    rl_fields = [{k: v for k, v in r.items() if k not in _SFT_ONLY} for r in train]
    config = {"seed": seed, "n_train": n_train, "n_test": n_test, **asdict(cfg)}
    return {
        "root": root,
        "videos": root / "videos",
        "train": _write_json(root / "train.json", rl_fields),
        "train_sft": _write_json(root / "train_sft.json", train),
        "test": _write_json(root / "test.json", test),
        "config": _write_json(root / "synthetic_config.json", config),
    }


def synthetic_corpus(records: Iterable[dict], template: str = "short") -> list[str]:
    """Every text a tokenizer must cover for these records: prompts (``build_question`` with ``template``),
    options, reasoning and answers; duplicates dropped, first-seen order kept."""
    texts: dict[str, None] = {}
    for record in records:
        texts[build_question(record, template)] = None
        for option in record.get("options") or []:
            texts[option] = None
        if record.get("process"):
            texts[record["process"]] = None
        texts[record["solution"]] = None
    return list(texts)


from videoktr.data import synthetic_multi  # noqa: E402, F401  (registers the multi-answer kinds)
