"""Sparse-evidence synthetic videos: the evidence is a few short segments, the rest of the video is empty.

A video has ``num_frames`` frames (16 by default) cut into units of ``unit`` frames (2: Qwen2.5-VL's temporal patch).
Four squares of the four colours appear one after another, each during one unit chosen at random; every other unit
shows only the background. The question decides which units are evidence:

- ``sparse_after``: "Which color appears right after the X square?" (X is one of the first three colours). The
  evidence is X's segment and the next colour's segment: a frame set is sufficient when it holds at least one frame
  of each (then, among the shown frames, the colour right after X is the answer: nothing else lies between them).
- ``sparse_first``: "Which color appears first?". The evidence is the first colour's segment.

Each record stores ``evidence_frames`` (sorted frame indices of the evidence segments) and ``evidence_rule``
``{"all_of": [[frames of segment 1], [frames of segment 2], ...]}``: a frame set is sufficient when it intersects
every group (:func:`is_sufficient`). Same seed -> same JSON bytes and same videos.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from videoktr.data.synthetic import (
    COLOR_NAMES,
    Square,
    SyntheticConfig,
    _balanced_answers,
    _even,
    render,
)
from videoktr.data.video import write_video
from videoktr.errors import UserError

__all__ = [
    "SPARSE_KINDS",
    "SparseConfig",
    "distractor_units",
    "insufficient_view",
    "is_sufficient",
    "make_sparse",
    "sufficient_view",
]

SPARSE_KINDS = ("sparse_after", "sparse_first")
_LETTERS = "ABCD"
_OPTIONS = [f"{letter}. {name}" for letter, name in zip(_LETTERS, COLOR_NAMES)]


@dataclass
class SparseConfig:
    """Size and content of the sparse-evidence videos."""

    num_frames: int = field(
        default=16,
        metadata={"help": "Frames per video (a multiple of unit, with >= 4 units for the squares)."},
    )
    unit: int = field(
        default=2, metadata={"help": "Frames per evidence segment (Qwen2.5-VL's temporal patch: 2)."}
    )
    height: int = field(default=56, metadata={"help": "Frame height in pixels (even)."})
    width: int = field(default=112, metadata={"help": "Frame width in pixels (even)."})
    fps: float = field(default=4.0, metadata={"help": "Frame rate written into the mp4 files."})
    square_sizes: tuple[int, ...] = field(
        default=(28, 32, 36, 40),
        metadata={
            "help": "Square sides in pixels (even), one drawn at random per square. One square is visible at a "
            "time, so they may be large: the evidence should be easy to see, finding it is the task."
        },
    )
    kinds: tuple[str, ...] = field(
        default=SPARSE_KINDS, metadata={"help": f"Question kinds, cycled over the records: {SPARSE_KINDS}."}
    )

    def __post_init__(self) -> None:
        self.kinds = tuple(self.kinds)
        self.square_sizes = tuple(int(x) for x in self.square_sizes)
        if not self.square_sizes or any(
            x < 2 or x % 2 or x > min(self.height, self.width) for x in self.square_sizes
        ):
            raise UserError(
                f"sparse synthetic: square_sizes {list(self.square_sizes)} must be even and fit the "
                f"{self.height}x{self.width} frame"
            )
        unknown = [k for k in self.kinds if k not in SPARSE_KINDS]
        if not self.kinds or unknown:
            raise UserError(f"sparse synthetic: kinds {list(self.kinds)}; valid: {', '.join(SPARSE_KINDS)}")
        if self.unit < 1 or self.num_frames % self.unit or self.num_frames // self.unit < len(COLOR_NAMES):
            raise UserError(
                f"sparse synthetic: num_frames={self.num_frames} must be a multiple of unit={self.unit} with at "
                f"least {len(COLOR_NAMES)} units (one per colour); e.g. num_frames=16, unit=2"
            )
        # the squares' geometry checks of the dense generator (even sizes, room for four squares)
        self.scene_config()

    def scene_config(self) -> SyntheticConfig:
        """The dense generator's config for drawing (its geometry checks run; motion checks do not apply)."""
        scene = SyntheticConfig(num_frames=4, height=self.height, width=self.width, fps=self.fps)
        scene.num_frames = self.num_frames  # squares do not move here: only the frame count is needed
        return scene

    @property
    def n_units(self) -> int:
        return self.num_frames // self.unit


def is_sufficient(rule: dict, frames: Iterable[int]) -> bool:
    """True when ``frames`` (frame indices of the video) intersect every group of ``rule["all_of"]``."""
    chosen = set(int(f) for f in frames)
    groups = rule.get("all_of")
    if not isinstance(groups, list) or not groups:
        raise ValueError(
            f"evidence_rule must be {{'all_of': [[frame, ...], ...]}} with >= 1 group, got {rule}"
        )
    return all(chosen.intersection(group) for group in groups)


def _segment(unit_index: int, unit: int) -> list[int]:
    return list(range(unit_index * unit, (unit_index + 1) * unit))


def _record(
    split: str, index: int, kind: str, answer: int, rng: np.random.Generator, cfg: SparseConfig, root: Path
):
    scene_cfg = cfg.scene_config()
    n = len(COLOR_NAMES)
    units = sorted(int(u) for u in rng.choice(cfg.n_units, size=n, replace=False))
    if kind == "sparse_first":
        rest = [int(c) for c in rng.permutation([c for c in range(n) if c != answer])]
        order = [answer, *rest]
        evidence_units = [units[0]]
        question = "Which color appears first?"
        process = f"<think>The {COLOR_NAMES[answer]} square appears first.</think>"
    else:  # sparse_after: the answer follows the asked colour at position p (0..2)
        position = int(rng.integers(0, n - 1))
        others = [int(c) for c in rng.permutation([c for c in range(n) if c != answer])]
        asked = others[0]
        rest = others[1:]
        order = rest[:position] + [asked, answer] + rest[position:]
        evidence_units = [units[position], units[position + 1]]
        question = f"Which color appears right after the {COLOR_NAMES[asked]} square?"
        process = f"<think>The {COLOR_NAMES[answer]} square appears right after the {COLOR_NAMES[asked]} square.</think>"
    sizes = [int(x) for x in rng.choice(cfg.square_sizes, size=n)]
    positions = [(_even(rng, 0, cfg.height - size), _even(rng, 0, cfg.width - size)) for size in sizes]
    squares = [
        Square(COLOR_NAMES[c], s, [p if t in _segment(u, cfg.unit) else None for t in range(cfg.num_frames)])
        for c, s, p, u in zip(order, sizes, positions, units)
    ]
    pid = f"{split}-{index:04d}"
    write_video(root / "videos" / f"{pid}.mp4", render(squares, scene_cfg), cfg.fps)
    groups = [_segment(u, cfg.unit) for u in evidence_units]
    return {
        "problem_id": pid,
        "problem": question,
        "data_type": "video",
        "problem_type": "multiple choice",
        "options": list(_OPTIONS),
        "solution": f"<answer>{_LETTERS[answer]}</answer>",
        "path": f"videos/{pid}.mp4",
        "data_source": "synthetic-sparse",
        "family": "temporal",
        "question_kind": kind,
        "process": process,
        "evidence_frames": sorted(f for g in groups for f in g),
        "evidence_rule": {"all_of": groups},
        "color_units": {COLOR_NAMES[c]: u for c, u in zip(order, units)},
    }


def _split(split: str, count: int, rng: np.random.Generator, cfg: SparseConfig, root: Path) -> list[dict]:
    kinds = [cfg.kinds[i % len(cfg.kinds)] for i in range(count)]
    answers = {k: iter(_balanced_answers(rng, kinds.count(k))) for k in cfg.kinds}
    return [_record(split, i, kind, next(answers[kind]), rng, cfg, root) for i, kind in enumerate(kinds)]


def make_sparse(
    out_dir: str | Path, n_train: int, n_test: int, seed: int, cfg: SparseConfig | None = None
) -> dict:
    """Write sparse-evidence videos and ``train.json`` / ``test.json`` (records with ``process``,
    ``evidence_frames``, ``evidence_rule``) and ``sparse_config.json`` under ``out_dir``; returns their paths."""
    cfg = cfg or SparseConfig()
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise UserError(f"sparse synthetic: n_train={n_train}, n_test={n_test} must be >= 0 and not both 0")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    train = _split("train", n_train, np.random.default_rng([seed, 10]), cfg, root)
    test = _split("test", n_test, np.random.default_rng([seed, 11]), cfg, root)
    paths = {"root": root, "train": root / "train.json", "test": root / "test.json"}
    paths["train"].write_text(json.dumps(train, indent=2) + "\n")
    paths["test"].write_text(json.dumps(test, indent=2) + "\n")
    config = {"seed": seed, "n_train": n_train, "n_test": n_test, **asdict(cfg)}
    (root / "sparse_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return paths


def sufficient_view(
    record: dict,
    candidates: Sequence[int],
    unit: int,
    k_units: int,
    rng: np.random.Generator,
    strict: bool = True,
    prefer: Sequence[int] = (),
):
    """Frame indices of ``k_units`` candidate units, sorted, that satisfy ``record``'s evidence rule: the units
    holding one frame of each evidence group, then random other units (SFT views; the oracle selector), drawn first
    from the candidate units in ``prefer`` (e.g. :func:`distractor_units`) and then from the rest. When the
    evidence needs more than ``k_units`` units: refused if ``strict``, else its first ``k_units`` units."""
    n_units = len(candidates) // unit
    unit_of = {int(f): u for u in range(n_units) for f in candidates[u * unit : (u + 1) * unit]}
    need = []
    for group in record["evidence_rule"]["all_of"]:
        hits = [unit_of[f] for f in group if f in unit_of]
        if not hits:
            raise UserError(
                f"record {record['problem_id']}: no candidate frame falls in evidence group {group}; "
                "use more candidates (M) or longer evidence segments"
            )
        need.append(hits[0])
    need = sorted(set(need))
    if len(need) > k_units and not strict:
        need = need[:k_units]
    if len(need) > k_units:
        raise UserError(
            f"record {record['problem_id']}: its evidence needs {len(need)} units > T/unit={k_units}"
        )
    extra: list[int] = []
    for pool in ([u for u in dict.fromkeys(prefer) if u not in need], None):
        if pool is None:
            pool = [u for u in range(n_units) if u not in need and u not in extra]
        take = min(len(pool), k_units - len(need) - len(extra))
        if take > 0:
            extra += [int(u) for u in rng.choice(pool, size=take, replace=False)]
    chosen = sorted(need + extra)
    return [int(candidates[u * unit + j]) for u in chosen for j in range(unit)]


def distractor_units(record: dict, candidates: Sequence[int], unit: int) -> list[int]:
    """Candidate units (of ``unit`` frames) holding a square that is not evidence for ``record``'s question (its
    ``color_units``, in units of ``unit`` frames, minus the evidence groups): extra units of an SFT view drawn from
    these make answering need the question's evidence (a view of the asked square, the next one and a square
    before the asked one defeats "name the first other colour shown")."""
    n_units = len(candidates) // unit
    unit_of = {int(f): u for u in range(n_units) for f in candidates[u * unit : (u + 1) * unit]}
    evidence = {unit_of[f] for group in record["evidence_rule"]["all_of"] for f in group if f in unit_of}
    out = []
    for u in sorted(record.get("color_units", {}).values()):
        hits = sorted({unit_of[f] for f in range(u * unit, (u + 1) * unit) if f in unit_of} - evidence)
        out += hits[:1]
    return out


def insufficient_view(
    record: dict, candidates: Sequence[int], unit: int, k_units: int, rng: np.random.Generator
) -> list[int] | None:
    """Frame indices of ``k_units`` random candidate units, sorted, that do NOT satisfy ``record``'s evidence rule
    (SFT views that teach the model what it cannot know from the frames); None when every combination is
    sufficient (e.g. ``k_units`` covers all units)."""
    import itertools

    n_units = len(candidates) // unit
    rule = record["evidence_rule"]
    combos = [
        list(c)
        for c in itertools.combinations(range(n_units), k_units)
        if not is_sufficient(rule, [candidates[u * unit + j] for u in c for j in range(unit)])
    ]
    if not combos:
        return None
    chosen = combos[int(rng.integers(len(combos)))]
    return [int(candidates[u * unit + j]) for u in chosen for j in range(unit)]
