"""Resumable evaluation: generate an answer per benchmark item, score it, append it to a JSONL as it comes.

- Videos are checked up front: every missing file is listed, and the run refuses unless ``skip_missing``.
- Predictions are appended (one JSON line per item) as each batch finishes; a rerun with the same file skips the
  ids already there (``retry_errors`` regenerates the ones recorded with an error; the later line wins). The file
  starts with the run's identity (:mod:`videoktr.eval.identity`): resuming with another model, data file or
  settings is refused, and a last line cut off mid-write is dropped with a warning and redone.
- A run with nothing to score (every video missing under ``skip_missing``) is an error, not accuracy 0.
- One failing item (undecodable video, generation error) is recorded with its error message and counted as wrong,
  not a crash; a batch that fails is retried item by item so only the failing item is marked. A run that fails
  ``max_consecutive_errors`` items in a row stops (a systematic bug, not a bad item).
- Backends: :class:`HFBackend` (transformers ``generate``, batched, the default) and :class:`VLLMBackend`
  (optional: needs ``pip install 'videoktr[vllm]'`` and a GPU; not exercised by the tests here).
- Generation is greedy by default (``temperature=0``); the authors' evaluation samples with ``temperature=0.1,
  top_p=0.001`` (:data:`AUTHORS_GENERATION`), which is practically greedy. Every sampling parameter (top-k,
  min-p, repetition penalty, seed) is explicit in :class:`GenerationSettings`.
- Outputs are scored by ``config.scorer`` (:mod:`videoktr.eval.scorers`); resumed lines are rescored, so changing
  the scorer never needs a new generation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from videoktr.errors import UserError
from videoktr.eval.backends import frame_plan_key, planned_frames
from videoktr.eval.benchmarks import BenchItem
from videoktr.eval.generation import AUTHORS_GENERATION, GenerationSettings  # noqa: F401 (re-exported)
from videoktr.eval.identity import RunIdentity, open_predictions
from videoktr.eval.scorers import DEFAULT_SCORER, check_scorer
from videoktr.eval.scoring import prediction_record, read_predictions, summarize


@dataclass
class EvalRunConfig:
    """Where the videos are and how the run is organised."""

    video_root: Path = field(metadata={"help": "Folder the items' video paths are relative to."})
    batch_size: int = field(default=1, metadata={"help": "Items generated together (left-padded batch)."})
    template: str = field(
        default="video-r1",
        metadata={
            "help": "Prompt template (the one used for training), or 'benchmark': the benchmark's own prompt."
        },
    )
    scorer: str = field(
        default=DEFAULT_SCORER, metadata={"help": "How outputs are scored: video-r1, official or lenient."}
    )
    skip_missing: bool = field(
        default=False, metadata={"help": "Evaluate without the items whose video is missing."}
    )
    limit: int | None = field(
        default=None, metadata={"help": "Only the first N items (after skipping missing)."}
    )
    retry_errors: bool = field(
        default=False, metadata={"help": "On resume, regenerate items recorded with an error."}
    )
    max_consecutive_errors: int = field(
        default=20, metadata={"help": "Stop after this many failed items in a row."}
    )
    allow_outside_root: bool = field(
        default=False,
        metadata={"help": "Accept video paths outside video_root (absolute paths elsewhere, ../)."},
    )

    def __post_init__(self) -> None:
        self.video_root = Path(self.video_root)
        if self.batch_size < 1:
            raise UserError(f"batch_size={self.batch_size} must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit={self.limit} must be >= 1 (or omitted for all items)")
        if self.max_consecutive_errors < 1:
            raise UserError(f"max_consecutive_errors={self.max_consecutive_errors} must be >= 1")


class Backend(Protocol):
    """Generates one answer per (question text, video path); raises on failure. ``indices``: the items'
    positions in the benchmark, from which a sampling backend derives its seeds (same draws on resume)."""

    def generate(
        self, questions: Sequence[str], videos: Sequence[Path], indices: Sequence[int] | None = None
    ) -> list[str]: ...


def video_path(item: BenchItem, video_root: Path) -> Path:
    """The item's video file: its path under ``video_root`` (an absolute path is kept as it is)."""
    from videoktr.data.schema import resolve_media

    return resolve_media(Path(video_root), item.video, allow_outside_root=True)[0]


def check_videos(items: list[BenchItem], config: EvalRunConfig) -> tuple[list[BenchItem], list[BenchItem]]:
    """Split items into (with video, missing). Videos outside ``video_root`` are an error (all listed) unless
    ``allow_outside_root``; missing videos are all listed in one error unless skip_missing; every video missing is
    an error either way (nothing would be scored)."""
    from videoktr.data.schema import resolve_media

    outside = [
        (item, problem)
        for item in items
        if (problem := resolve_media(config.video_root, item.video, config.allow_outside_root)[1])
    ]
    if outside:
        listing = "\n".join(f"  {item.id}: {problem}" for item, problem in outside[:50])
        raise UserError(f"{len(outside)} of {len(items)} videos are outside --video-root:\n{listing}")
    missing = [item for item in items if not video_path(item, config.video_root).is_file()]
    if missing and (not config.skip_missing or len(missing) == len(items)):
        shown = missing[:50]
        listing = "\n".join(f"  {item.id}: {video_path(item, config.video_root)}" for item in shown)
        more = f"\n  ... and {len(missing) - len(shown)} more" if len(missing) > len(shown) else ""
        advice = (
            "nothing to evaluate: fix --video-root"
            if len(missing) == len(items)
            else "fix --video-root, or pass --skip-missing to evaluate the others"
        )
        raise UserError(
            f"{len(missing)} of {len(items)} videos are missing under {config.video_root}:\n{listing}{more}\n"
            f"{advice}"
        )
    missing_ids = {item.id for item in missing}
    return [item for item in items if item.id not in missing_ids], missing


def load_finished(path: Path | None, items: list[BenchItem], retry_errors: bool) -> dict[str, dict[str, Any]]:
    """Records already in the predictions file (the resume state), by id."""
    if path is None or not path.exists():
        return {}
    done = read_predictions(path)
    known = {item.id for item in items}
    unknown = [rid for rid in done if rid not in known]
    if unknown:
        raise UserError(
            f"{path} holds predictions for ids not in this benchmark (e.g. {unknown[0]!r}); "
            "use another --predictions file for a different benchmark"
        )
    return {rid: row for rid, row in done.items() if not (retry_errors and row.get("error") is not None)}


def _error_text(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"


def question_text(item: BenchItem, template: str) -> str:
    """The prompt of one item: the named training template, or (``benchmark``) the benchmark's own prompt."""
    from videoktr.data.prompts import PROMPT_TEMPLATES, build_question

    if template != "benchmark":
        if template not in PROMPT_TEMPLATES:
            raise UserError(
                f"unknown --template {template!r}; valid: {', '.join(PROMPT_TEMPLATES.names())}, benchmark"
            )
        return build_question(item.to_record(), template=template)
    if "prompt" not in item.native:
        raise UserError(
            f"{item.benchmark or 'this'} benchmark has no prompt of its own; use --template video-r1"
        )
    return item.native["prompt"]


def _generate_batch(
    backend: Backend, batch: list[BenchItem], config: EvalRunConfig, indices: list[int]
) -> list[dict[str, Any]]:
    """Records for one batch; on failure retry item by item so that only failing items carry the error.
    ``indices``: the items' positions in the benchmark (the backend derives sampling seeds from them)."""
    questions = [question_text(item, config.template) for item in batch]
    videos = [video_path(item, config.video_root) for item in batch]
    chosen = getattr(backend, "frame_indices", None)  # a frame selector's choice, kept with each prediction
    try:
        outputs = backend.generate(questions, videos, indices=indices)
        records = [
            prediction_record(item, output, scorer=config.scorer)
            for item, output in zip(batch, outputs, strict=True)
        ]
    except Exception as err:
        if len(batch) > 1:
            return [
                _generate_batch(backend, [item], config, [index])[0] for item, index in zip(batch, indices)
            ]
        records = [prediction_record(batch[0], None, error=_error_text(err), scorer=config.scorer)]
    if chosen is not None:
        for record, video in zip(records, videos, strict=True):
            record["frame_indices"] = planned_frames(chosen, video)
    return records


def _check_frame_plan(backend: Backend, items: list[BenchItem], config: EvalRunConfig) -> None:
    """A frame selector's plan (``backend.frame_indices``) must cover every item to evaluate, before any is: an
    item without planned frames would otherwise fail in every batch (or, before, silently use other frames)."""
    plan = getattr(backend, "frame_indices", None)
    if plan is None:
        return
    planned = {frame_plan_key(key) for key in plan}
    unplanned = [item for item in items if frame_plan_key(video_path(item, config.video_root)) not in planned]
    if unplanned:
        shown = ", ".join(f"{item.id} ({video_path(item, config.video_root)})" for item in unplanned[:5])
        raise UserError(
            f"the frame selector chose no frames for {len(unplanned)} of {len(items)} records: {shown}"
            f"{' ...' if len(unplanned) > 5 else ''}; plan the frames of every evaluated record, under the same "
            f"video root ({config.video_root})"
        )


class _ErrorStreak:
    def __init__(self, limit: int):
        self.limit, self.count = limit, 0

    def update(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self.count = self.count + 1 if record["error"] is not None else 0
            if self.count >= self.limit:
                raise RuntimeError(
                    f"{self.count} items failed in a row (last: {record['id']}: {record['error']}); "
                    "stopping: this looks like a bug or a wrong setting, not a bad item"
                )


def run_evaluation(
    backend: Backend,
    items: list[BenchItem],
    config: EvalRunConfig,
    predictions_path: str | Path | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    identity: RunIdentity | None = None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Evaluate ``items`` with ``backend``; returns (prediction records in item order, summary).

    ``identity``: what this run is (:func:`videoktr.eval.identity.eval_run_settings`), written as the first line of
    the predictions file and checked on resume; ``None`` is an anonymous run (resumes only an anonymous file).
    ``progress``: show items done / total (resumed included), items/s, failures and time left on stderr - a rich
    bar on a terminal, a plain line every 5% otherwise.
    """
    from videoktr.eval.progress import ProgressReport

    path = Path(predictions_path) if predictions_path is not None else None
    check_scorer(config.scorer, items)
    present, missing = check_videos(items, config)
    todo_items = present[: config.limit] if config.limit is not None else present
    _check_frame_plan(backend, todo_items, config)
    if path is not None:
        open_predictions(path, identity or RunIdentity({}))
    finished = load_finished(path, items, config.retry_errors)
    todo = [item for item in todo_items if item.id not in finished]
    position = {item.id: index for index, item in enumerate(items)}
    new: dict[str, dict[str, Any]] = {}
    streak, start = _ErrorStreak(config.max_consecutive_errors), time.perf_counter()
    label = f"eval {items[0].benchmark if items else ''}".strip()
    report = (
        ProgressReport(label, len(todo_items), len(todo_items) - len(todo)) if progress else _NoProgress()
    )
    with report as shown:
        for begin in range(0, len(todo), config.batch_size):
            batch = todo[begin : begin + config.batch_size]
            records = _generate_batch(backend, batch, config, [position[item.id] for item in batch])
            if path is not None:
                with path.open("a", encoding="utf-8") as handle:
                    handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            for record in records:
                new[record["id"]] = record
                if on_record is not None:
                    on_record(record)
            shown.advance(len(records), failures=sum(r["error"] is not None for r in records))
            streak.update(records)
    seconds = time.perf_counter() - start
    records = [
        new[item.id] if item.id in new else prediction_record(item, finished[item.id].get("output"),
                                                                finished[item.id].get("error"), config.scorer)
        for item in todo_items
    ]  # fmt: skip
    summary = summarize(
        records, config.scorer, n_items=len(items), n_skipped_missing=len(missing),
        n_resumed=len(todo_items) - len(todo),
    )  # fmt: skip
    summary["generation"] = {
        "n_generated": len(todo),
        "seconds": round(seconds, 3),
        "items_per_second": round(len(todo) / seconds, 4) if todo and seconds > 0 else None,
    }
    return records, summary


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def advance(self, n: int = 1, failures: int = 0) -> None:
        pass


def evaluate(
    model: Any,
    processor: Any,
    items: list[BenchItem],
    sampling: Any,
    *,
    video_root: str | Path,
    generation: GenerationSettings | None = None,
    predictions_path: str | Path | None = None,
    batch_size: int = 1,
    template: str = "video-r1",
    skip_missing: bool = False,
    limit: int | None = None,
    identity: RunIdentity | None = None,
    scorer: str = DEFAULT_SCORER,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """In-process evaluation of a loaded model (e.g. right after training in the demo).

    ``sampling``: a ``VideoSamplingConfig``; ``identity``: as in :func:`run_evaluation`. Returns (prediction
    records, summary) as :func:`run_evaluation`.
    """
    from videoktr.eval.backends import HFBackend

    config = EvalRunConfig(
        video_root=Path(video_root),
        batch_size=batch_size,
        template=template,
        skip_missing=skip_missing,
        limit=limit,
        scorer=scorer,
    )
    backend = HFBackend(model, processor, sampling, generation)
    return run_evaluation(backend, items, config, predictions_path, identity=identity, progress=progress)
