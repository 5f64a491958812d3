"""Frame selectors: which T frames of a video the video LLM sees. Each returns T sorted frame indices of the video.

- ``uniform``: T frames spread over the whole video (``uniform_indices``; what evaluation does without a selector).
- ``random``: T/unit of the M/unit candidate units at random (seeded by (seed, record id)).
- ``oracle``: the candidate units holding the record's evidence (``evidence_rule``), then random other units
  (when T is too small for the evidence: its first T/unit units).
- ``voyager``: the top-T/unit candidate units by the trained querier's score, in time order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from videoktr.core.registry import Registry
from videoktr.errors import UserError
from videoktr.frames.labels import _record_seed, combination_frames

__all__ = ["SELECTORS", "select_frames", "load_selector", "plan_frames"]

SELECTORS: Registry = Registry("frame selector")


@SELECTORS.register("uniform")
def _uniform(record, total_frames, cfg, candidate=None, querier=None):
    from videoktr.data.video import uniform_indices

    return uniform_indices(total_frames, cfg.frames)


@SELECTORS.register("random")
def _random(record, total_frames, cfg, candidate=None, querier=None):
    from videoktr.frames.features import candidate_indices

    candidates = candidate_indices(total_frames, cfg.candidates, str(record.get("problem_id")))
    rng = np.random.default_rng(_record_seed(cfg.seed, str(record.get("problem_id"))))
    units = sorted(int(u) for u in rng.choice(cfg.n_units, size=cfg.k_units, replace=False))
    return combination_frames(candidates, units, cfg.unit)


@SELECTORS.register("oracle")
def _oracle(record, total_frames, cfg, candidate=None, querier=None):
    from videoktr.frames.features import candidate_indices
    from videoktr.frames.sparse import sufficient_view

    rid = str(record.get("problem_id"))
    if "evidence_rule" not in record:
        raise UserError(
            f"record {rid}: the oracle selector needs 'evidence_rule' (synthetic sparse records have it)"
        )
    candidates = candidate_indices(total_frames, cfg.candidates, rid)
    rng = np.random.default_rng(_record_seed(cfg.seed, rid))
    return sufficient_view(record, candidates, cfg.unit, cfg.k_units, rng, strict=False)


@SELECTORS.register("voyager")
def _voyager(record, total_frames, cfg, candidate=None, querier=None):
    from videoktr.frames.querier import top_units
    from videoktr.frames.train import score_units

    if candidate is None or querier is None:
        raise ValueError("the voyager selector needs the record's encoded candidates and a querier")
    units = top_units(score_units(querier, candidate), cfg.k_units)
    return combination_frames(candidate.video.frame_indices, units, cfg.unit)


def select_frames(name: str, record: dict, total_frames: int, cfg, candidate=None, querier=None) -> list[int]:
    """T sorted, in-range frame indices of ``record``'s video chosen by selector ``name`` (checked)."""
    from videoktr.data.video import check_frame_indices

    frames = SELECTORS.get(name)(record, total_frames, cfg, candidate=candidate, querier=querier)
    problem = check_frame_indices(frames, total_frames)
    if problem is not None or len(frames) != cfg.frames:
        raise RuntimeError(
            f"selector {name} returned bad frames for {record.get('problem_id')}: {frames} ({problem})"
        )
    return frames


def load_selector(path: str | Path, model, model_path: str, cfg) -> Any:
    """Load a querier checkpoint and refuse it unless it was trained on ``model``'s features with M candidates."""
    from videoktr.frames.features import model_fingerprint
    from videoktr.frames.querier import Querier

    querier, saved = Querier.from_pretrained(path)
    fingerprint = model_fingerprint(model)
    if saved.get("model_fingerprint") != fingerprint:
        raise UserError(
            f"selector {path} was trained on the features of another model ({saved.get('model_path')!r}, "
            f"fingerprint {saved.get('model_fingerprint')}) than {model_path!r} (fingerprint {fingerprint}); "
            f"train a selector for this model: videoktr frames train --model {model_path} ..."
        )
    if saved.get("candidates") != cfg.candidates or saved.get("unit") != cfg.unit:
        raise UserError(
            f"selector {path} scores M={saved.get('candidates')} candidates in units of {saved.get('unit')}, "
            f"not M={cfg.candidates}, unit={cfg.unit}; pass --candidates {saved.get('candidates')}"
        )
    return querier


def plan_frames(
    name: str,
    records: list[dict],
    video_root: str | Path,
    cfg,
    *,
    model=None,
    processor=None,
    selector: str | Path | None = None,
    model_path: str = "",
    sampling=None,
    template: str = "video-r1",
) -> dict[str, list[int]]:
    """Video path (as the evaluation runner builds it: ``video_root / record["path"]``) -> chosen frame indices,
    for every record. ``voyager`` needs the model, its processor and a querier checkpoint trained on it."""
    from videoktr.data.video import read_frame_count
    from videoktr.frames.features import decode_candidates, encode_candidates, query_text

    SELECTORS.get(name)  # unknown name: the registry's error lists the valid ones
    querier = None
    if name == "voyager":
        if selector is None or model is None:
            raise UserError(
                "--frame-selector voyager needs --selector DIR (a `videoktr frames train` output)"
            )
        querier = load_selector(selector, model, model_path, cfg)
    plan = {}
    for record in records:
        rid = str(record.get("problem_id"))
        path = (
            Path(record["path"]) if Path(record["path"]).is_absolute() else Path(video_root) / record["path"]
        )
        total = read_frame_count(path)
        candidate = None
        if querier is not None:
            video = decode_candidates(path, rid, cfg.candidates, sampling)
            candidate = encode_candidates(
                model, processor, video, query_text(record, cfg, template), cfg.unit, sampling
            )
        elif total < cfg.frames:
            raise UserError(
                f"record {rid}: its video has {total} frames, fewer than T={cfg.frames}; lower --frames"
            )
        plan[str(path)] = select_frames(name, record, total, cfg, candidate=candidate, querier=querier)
    return plan
