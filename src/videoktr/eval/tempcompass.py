"""TempCompass in its own task formats (loader ``tempcompass``).

Files: the official nested files ``{video_id: {dim: [{question, answer}]}}`` named after their task
(``multi-choice.json``, ``yes_no.json``, ``caption_matching.json``), or flat rows (lmms-lab) with ``video_id``,
``question``, ``answer``, ``dim`` (and optionally ``task``; otherwise read from the answer / option lines).

Each task keeps its format, as TempCompass' rule-based scripts score it:

- ``multi-choice``: ``"question\\nA. ...\\nB. ..."``, answer ``"B. text"`` -> multiple choice, gold letter ``B``;
- ``yes_no``: answer ``yes`` / ``no`` -> a ``free-form`` item whose gold is the word;
- ``caption_matching``: ``"question\\nCaption A: ...\\nCaption B: ..."`` (or ``Sentence A:`` / ``Option 1:``),
  answer = one of those lines -> a ``free-form`` item whose question keeps the caption lines and whose gold is the
  answer line;
- ``captioning`` is skipped (TempCompass scores it with a ChatGPT judge only); the count is logged.

``native`` keeps ``task``, the benchmark's ``question`` and ``answer`` strings, and ``prompt`` = the question plus
TempCompass' own answer prompt (``run_qwen2_vl.py``: "Please directly give the best option:" /
"Please answer yes or no:"), used with ``--template benchmark``.
Categories: ``task`` and ``task_dim`` (``multi-choice/action``): TempCompass publishes one table per task, with
its temporal dimensions inside it; there is no official figure pooled over tasks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from videoktr.errors import UserError
from videoktr.eval.benchmarks import BENCHMARKS, BenchItem, RecordErrors, _get, read_annotations

logger = logging.getLogger(__name__)

_OPTION_LINE = re.compile(r"^([A-Z])\.\s*(.*)$")
_CAPTION_LINE = re.compile(r"^(?:Caption|Sentence|Option)\s+([A-Z0-9]+):\s*(.*)$")

ANSWER_PROMPTS = {
    "multi-choice": "\nPlease directly give the best option:",
    "yes_no": "\nPlease answer yes or no:",
    "caption_matching": "\nPlease directly give the best option:",
}
TASKS = tuple(ANSWER_PROMPTS)


def _multi_choice(question: str, answer: str) -> tuple[str, list[str] | None, str, str]:
    lines = question.split("\n")
    options = lines[1:]
    if not options or not all(_OPTION_LINE.match(o) for o in options) or not _OPTION_LINE.match(answer):
        raise ValueError("multi-choice questions list options as 'A. text' lines and answer 'A. text'")
    if answer[0] not in [o[0] for o in options]:
        raise ValueError(f"answer {answer!r} is not one of the options")
    return lines[0], options, answer[0], "multiple choice"


def _yes_no(question: str, answer: str) -> tuple[str, list[str] | None, str, str]:
    if answer.strip().lower() not in ("yes", "no"):
        raise ValueError(f"yes/no answer must be 'yes' or 'no', got {answer!r}")
    return question, None, answer.strip().lower(), "free-form"


def _caption_matching(question: str, answer: str) -> tuple[str, list[str] | None, str, str]:
    lines = question.split("\n")
    if len(lines) < 2 or not all(_CAPTION_LINE.match(line) for line in lines[1:]):
        raise ValueError("caption matching lists 'Caption A: text' / 'Sentence A:' / 'Option 1:' lines")
    if answer not in lines[1:]:
        raise ValueError(f"answer {answer!r} is not one of the caption lines")
    return question, None, answer, "free-form"


_CONVERT = {"multi-choice": _multi_choice, "yes_no": _yes_no, "caption_matching": _caption_matching}


def _task(row: Mapping[str, Any]) -> str:
    if row.get("task"):
        return str(row["task"])
    if str(row.get("answer", "")).strip().lower() in ("yes", "no"):
        return "yes_no"
    lines = str(row.get("question", "")).split("\n")
    return "caption_matching" if len(lines) > 1 and _CAPTION_LINE.match(lines[1]) else "multi-choice"


def _flat_rows(path: Path, data: Any) -> list[dict[str, Any]]:
    """Rows with ``video_id``, ``dim``, ``task``, ``question``, ``answer`` (the official nesting undone)."""
    if isinstance(data, dict):  # official: {video_id: {dim: [{question, answer}]}}, task from the file name
        task = path.stem
        return [
            {"video_id": video_id, "dim": dim, "task": task, **qa}
            for video_id, dims in data.items()
            for dim, questions in dims.items()
            for qa in questions
        ]
    if not isinstance(data, list):
        raise UserError(
            f"{path}: expected TempCompass rows or the official {{video_id: {{dim: [...]}}}} nesting"
        )
    return [dict(row, task=_task(row)) for row in data]


@BENCHMARKS.register("tempcompass")
def load_tempcompass(path: Path) -> list[BenchItem]:
    """TempCompass multi-choice, yes/no and caption matching, each in its own format."""
    items, counters, skipped = [], {}, 0
    errors = RecordErrors(path)
    for row in _flat_rows(path, read_annotations(path)):
        with errors.record():
            video_id, dim, task = str(row.get("video_id")), row.get("dim"), row["task"]
            if task == "captioning":
                skipped += 1
                continue
            key = (video_id, dim, task)
            counters[key] = counters.get(key, -1) + 1
            rid = str(row.get("question_id") or f"{video_id}/{dim}/{task}/{counters[key]}")
            convert = _CONVERT.get(task)
            if convert is None:
                raise UserError(f"{path}: record {rid!r}: task {task!r} unknown; valid: {', '.join(TASKS)}")
            _get(row, "dim", path, rid)
            question, answer = _get(row, "question", path, rid), _get(row, "answer", path, rid)
            try:
                text, options, gold, problem_type = convert(question, answer)
            except ValueError as err:
                raise UserError(f"{path}: record {rid!r}: fields 'question'/'answer': {err}") from err
            native = {
                "task": task,
                "question": question,
                "answer": answer,
                "prompt": question + ANSWER_PROMPTS[task],
            }
            categories = {"task": task, "task_dim": f"{task}/{dim}"}
            items.append(BenchItem(rid, text, options, gold, problem_type, f"{video_id}.mp4", categories,
                                   "tempcompass", native))  # fmt: skip
    errors.raise_if_any()
    if skipped:
        logger.info(
            "%s: skipped %d captioning questions (TempCompass scores them with an LLM judge)", path, skipped
        )
    return items
