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
  top_p=0.001`` (:data:`AUTHORS_GENERATION`), which is practically greedy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from videoktr.errors import UserError
from videoktr.eval.benchmarks import BenchItem
from videoktr.eval.identity import RunIdentity, open_predictions
from videoktr.eval.scoring import prediction_record, read_predictions, summarize


@dataclass
class GenerationSettings:
    """How answers are generated."""

    max_new_tokens: int = field(
        default=1024, metadata={"help": "Tokens generated per answer (authors: 1024)."}
    )
    temperature: float = field(
        default=0.0, metadata={"help": "0 = greedy decoding (default); the authors' evaluation uses 0.1."}
    )
    top_p: float = field(
        default=1.0, metadata={"help": "Nucleus sampling mass when temperature > 0 (authors: 0.001)."}
    )

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens={self.max_new_tokens} must be >= 1, e.g. 1024")
        if self.temperature < 0:
            raise UserError(f"temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p={self.top_p} must be in (0, 1], e.g. 1.0 (or 0.001 as the authors)")


AUTHORS_GENERATION = GenerationSettings(max_new_tokens=1024, temperature=0.1, top_p=0.001)


@dataclass
class EvalRunConfig:
    """Where the videos are and how the run is organised."""

    video_root: Path = field(metadata={"help": "Folder the items' video paths are relative to."})
    batch_size: int = field(default=1, metadata={"help": "Items generated together (left-padded batch)."})
    template: str = field(
        default="video-r1", metadata={"help": "Prompt template (the one used for training)."}
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

    def __post_init__(self) -> None:
        self.video_root = Path(self.video_root)
        if self.batch_size < 1:
            raise UserError(f"batch_size={self.batch_size} must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit={self.limit} must be >= 1 (or omitted for all items)")
        if self.max_consecutive_errors < 1:
            raise UserError(f"max_consecutive_errors={self.max_consecutive_errors} must be >= 1")


class Backend(Protocol):
    """Generates one answer per (question text, video path); raises on failure."""

    def generate(self, questions: Sequence[str], videos: Sequence[Path]) -> list[str]: ...


def video_path(item: BenchItem, video_root: Path) -> Path:
    """The item's video file: its path if absolute, else under ``video_root``."""
    path = Path(item.video)
    return path if path.is_absolute() else video_root / path


def check_videos(items: list[BenchItem], config: EvalRunConfig) -> tuple[list[BenchItem], list[BenchItem]]:
    """Split items into (with video, missing). Missing videos are all listed in one error unless skip_missing;
    every video missing is an error either way (nothing would be scored)."""
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


def _generate_batch(backend: Backend, batch: list[BenchItem], config: EvalRunConfig) -> list[dict[str, Any]]:
    """Records for one batch; on failure retry item by item so that only failing items carry the error."""
    from videoktr.data.prompts import build_question

    questions = [build_question(item.to_record(), template=config.template) for item in batch]
    videos = [video_path(item, config.video_root) for item in batch]
    try:
        outputs = backend.generate(questions, videos)
        return [prediction_record(item, output) for item, output in zip(batch, outputs, strict=True)]
    except Exception as err:
        if len(batch) == 1:
            return [prediction_record(batch[0], None, error=_error_text(err))]
    return [_generate_batch(backend, [item], config)[0] for item in batch]


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
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Evaluate ``items`` with ``backend``; returns (prediction records in item order, summary).

    ``identity``: what this run is (:func:`videoktr.eval.identity.eval_run_settings`), written as the first line of
    the predictions file and checked on resume; ``None`` is an anonymous run (resumes only an anonymous file)."""
    path = Path(predictions_path) if predictions_path is not None else None
    present, missing = check_videos(items, config)
    todo_items = present[: config.limit] if config.limit is not None else present
    if path is not None:
        open_predictions(path, identity or RunIdentity({}))
    finished = load_finished(path, items, config.retry_errors)
    todo = [item for item in todo_items if item.id not in finished]
    new: dict[str, dict[str, Any]] = {}
    streak, start = _ErrorStreak(config.max_consecutive_errors), time.perf_counter()
    for begin in range(0, len(todo), config.batch_size):
        records = _generate_batch(backend, todo[begin : begin + config.batch_size], config)
        if path is not None:
            with path.open("a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        for record in records:
            new[record["id"]] = record
            if on_record is not None:
                on_record(record)
        streak.update(records)
    seconds = time.perf_counter() - start
    records = [
        new[item.id] if item.id in new else prediction_record(item, finished[item.id].get("output"),
                                                                finished[item.id].get("error"))
        for item in todo_items
    ]  # fmt: skip
    summary = summarize(
        records, n_items=len(items), n_skipped_missing=len(missing), n_resumed=len(todo_items) - len(todo)
    )
    summary["generation"] = {
        "n_generated": len(todo),
        "seconds": round(seconds, 3),
        "items_per_second": round(len(todo) / seconds, 4) if todo and seconds > 0 else None,
    }
    return records, summary


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
    )
    backend = HFBackend(model, processor, sampling, generation)
    return run_evaluation(backend, items, config, predictions_path, identity=identity)
