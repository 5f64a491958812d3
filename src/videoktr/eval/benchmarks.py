"""Benchmark loaders: each benchmark's public annotation format -> a common :class:`BenchItem`.

Formats (field names as in the public files; users bring the files and the videos):

- ``video-holmes``: the official ``test_Video-Holmes.json`` (``Question ID``, ``video ID``, ``Question Type``,
  ``Question``, ``Options`` {letter: text}, ``Answer``; video ``<video ID>.mp4``), or a Video-R1-style file
  (Video-R1 schema + ``original_question_type``). Category: ``question_type`` (SR, IMC, TCI, TA, MHR, PAR, CTI).
- ``videommmu``: lmms-lab/VideoMMMU rows (``id`` like ``test_Art_Theory_12``, ``question``, ``options`` list,
  ``answer``, ``question_type`` ``multiple-choice`` or open). Categories: ``track`` (a ``track`` field, else the file
  name containing perception/comprehension/adaptation) and ``subject`` (from the id). Video ``<id>.mp4`` unless the
  row has ``video_path``. Open questions with a numeric answer are ``numerical``, others ``free-form``.
- ``mmvu``: MMVU ``validation.json`` rows (``id``, ``question``, ``choices`` {letter: text}, ``answer``,
  ``question_type``, ``video_path`` or ``video``); only ``multiple-choice`` rows are kept (MMVU(mc)). Category:
  ``subject`` = the folder above the video file.
- ``tempcompass``: the official nested files ``{video_id: {dim: [{question, answer}]}}`` named ``multi-choice.json``,
  ``yes_no.json``, ``caption_matching.json``, or flat rows (lmms-lab) with ``video_id``, ``question``, ``answer``,
  ``dim`` (and optionally ``task``). All become lettered multiple choice: yes/no -> ``A. yes`` / ``B. no``; caption
  matching ``Caption A:`` / ``Sentence B:`` / ``Option 1:`` -> ``A.`` ``B.``. Captioning (needs an LLM judge) is
  skipped. Categories: ``dim`` and ``task``. Video ``<video_id>.mp4``.
- ``videomme``: lmms-lab/Video-MME rows (``question_id``, ``videoID``, ``duration``, ``domain``, ``sub_category``,
  ``task_type``, ``question``, ``options`` ["A. ..."], ``answer``). Categories: ``duration``, ``domain``,
  ``task_type``. Video ``<videoID>.mp4``.
- ``video-r1``: any Video-R1 schema file (including Video-R1's own ``eval_*.json`` and the synthetic suite).
  Categories: ``family`` and ``question_kind`` when present, else ``problem_type``.

A malformed record raises :class:`UserError` naming the file, the record id and the field.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videoktr.core.registry import Registry
from videoktr.errors import UserError

logger = logging.getLogger(__name__)

BENCHMARKS: Registry[Callable[[Path], list[BenchItem]]] = Registry("benchmark")

_OPTION_LINE = re.compile(r"^([A-Z])\.\s*(.*)$")
_CAPTION_LINE = re.compile(r"^(?:Caption|Sentence|Option)\s+([A-Z0-9]+):\s*(.*)$")


@dataclass(frozen=True)
class BenchItem:
    """One evaluation question in the common form.

    ``options``: ``["A. text", ...]`` for multiple choice, else ``None``; ``answer``: the gold letter for multiple
    choice, else the gold text/number; ``video``: path relative to the video root (or absolute).
    """

    id: str
    question: str
    options: list[str] | None
    answer: str
    problem_type: str
    video: str
    categories: dict[str, str] = field(default_factory=dict)
    benchmark: str = ""

    def to_record(self) -> dict[str, Any]:
        """The Video-R1 schema record the shared prompt template (``build_question``) reads."""
        return {
            "problem_id": self.id,
            "problem": self.question,
            "data_type": "video",
            "problem_type": self.problem_type,
            "options": self.options,
            "solution": f"<answer>{self.answer}</answer>",
            "path": self.video,
            "data_source": self.benchmark,
        }


def read_annotations(path: Path) -> Any:
    """Parsed content of a ``.json`` file (any JSON value) or ``.jsonl`` file (a list of objects)."""
    if not path.is_file():
        raise UserError(f"benchmark file {path} does not exist; pass the annotation file with --data")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise UserError(f"{path}:{number}: not valid JSON ({err.msg})") from err
        return rows
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON at line {err.lineno} ({err.msg})") from err


def _rows(path: Path) -> list[Mapping[str, Any]]:
    data = read_annotations(path)
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        data = data["results"]  # Video-R1 eval output files keep the records under "results"
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise UserError(f"{path}: expected a list of records (JSON objects)")
    return data


def _get(row: Mapping[str, Any], key: str, path: Path, rid: Any, kind: type | tuple = str) -> Any:
    """``row[key]``, checked to be present, non-empty and of type ``kind``; else a UserError naming it."""
    value = row.get(key)
    if value is None or value == "" or not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise UserError(
            f"{path}: record {rid!r}: field '{key}' must be a non-empty {expected}, got {value!r}"
        )
    return value


def _lettered(options: Iterable[str]) -> list[str]:
    """Add ``"A. "`` labels to plain option texts; keep options that already carry them."""
    options = list(options)
    letters = [chr(ord("A") + k) for k in range(len(options))]
    if all(_OPTION_LINE.match(o) and o[0] == letter for o, letter in zip(options, letters)):
        return options
    return [f"{letter}. {option}" for letter, option in zip(letters, options)]


def _check_letter(answer: str, options: list[str], path: Path, rid: Any) -> str:
    letters = [o[0] for o in options]
    letter = answer.strip()
    if letter not in letters:
        raise UserError(
            f"{path}: record {rid!r}: field 'answer' {answer!r} is not one of the option letters {letters}"
        )
    return letter


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def _unique(items: list[BenchItem], path: Path) -> list[BenchItem]:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise UserError(f"{path}: id {item.id!r} appears twice; ids must be unique to resume and score")
        seen.add(item.id)
    return items


def load_benchmark(name: str, path: str | Path) -> list[BenchItem]:
    """Load benchmark ``name`` (see :data:`BENCHMARKS`) from its annotation file."""
    loader = BENCHMARKS.get(name)
    path = Path(path)
    items = _unique(loader(path), path)
    if not items:
        raise UserError(f"{path}: no {name} questions found; check that --bench matches the file")
    return items


def _video_r1_item(row: Mapping[str, Any], path: Path, index: int, benchmark: str) -> BenchItem:
    """A Video-R1 schema record as a BenchItem (categories filled by the caller)."""
    rid = row.get("problem_id", f"#{index}")
    problem_type = _get(row, "problem_type", path, rid)
    solution = _get(row, "solution", path, rid)
    match = re.search(r"<answer>(.*?)</answer>", solution, re.DOTALL)
    if match is None or not match.group(1).strip():
        raise UserError(f"{path}: record {rid!r}: field 'solution' must look like '<answer>X</answer>'")
    options = None
    answer = match.group(1).strip()
    if problem_type == "multiple choice":
        options = _lettered(_get(row, "options", path, rid, list))
        answer = _check_letter(answer, options, path, rid)
    return BenchItem(
        id=str(_get(row, "problem_id", path, rid, (str, int))),
        question=_get(row, "problem", path, rid),
        options=options,
        answer=answer,
        problem_type=problem_type,
        video=_get(row, "path", path, rid),
        benchmark=benchmark,
    )


def _with_categories(item: BenchItem, categories: dict[str, str]) -> BenchItem:
    return BenchItem(**{**item.__dict__, "categories": categories})


@BENCHMARKS.register("video-r1")
def load_video_r1(path: Path) -> list[BenchItem]:
    """Video-R1 schema records; categories ``family``/``question_kind`` when present, else ``problem_type``."""
    items = []
    for index, row in enumerate(_rows(path)):
        item = _video_r1_item(row, path, index, "video-r1")
        categories = {key: str(row[key]) for key in ("family", "question_kind") if row.get(key) is not None}
        items.append(_with_categories(item, categories or {"problem_type": item.problem_type}))
    return items


def _holmes_official(row: Mapping[str, Any], path: Path) -> BenchItem:
    rid = row.get("Question ID")
    choices = _get(row, "Options", path, rid, dict)
    options = [f"{letter}. {choices[letter]}" for letter in sorted(choices)]
    return BenchItem(
        id=str(_get(row, "Question ID", path, rid, (str, int))),
        question=_get(row, "Question", path, rid),
        options=options,
        answer=_check_letter(_get(row, "Answer", path, rid), options, path, rid),
        problem_type="multiple choice",
        video=f"{_get(row, 'video ID', path, rid)}.mp4",
        categories={"question_type": _get(row, "Question Type", path, rid)},
        benchmark="video-holmes",
    )


@BENCHMARKS.register("video-holmes")
def load_video_holmes(path: Path) -> list[BenchItem]:
    """Video-Holmes, official format or Video-R1-style (``original_question_type``)."""
    items = []
    for index, row in enumerate(_rows(path)):
        if "Question ID" in row:
            items.append(_holmes_official(row, path))
            continue
        item = _video_r1_item(row, path, index, "video-holmes")
        category = _get(row, "original_question_type", path, row.get("problem_id"))
        items.append(_with_categories(item, {"question_type": category}))
    return items


def _videommmu_track(row: Mapping[str, Any], path: Path) -> str:
    if row.get("track"):
        return str(row["track"])
    for track in ("Perception", "Comprehension", "Adaptation"):
        if track.lower() in path.name.lower():
            return track
    raise UserError(
        f"{path}: cannot tell the VideoMMMU track; add a 'track' field to each row or name the file after its "
        "track (perception/comprehension/adaptation)"
    )


@BENCHMARKS.register("videommmu")
def load_videommmu(path: Path) -> list[BenchItem]:
    """VideoMMMU rows (lmms-lab format): multiple choice, plus numerical/free-form open questions."""
    items = []
    for row in _rows(path):
        rid = _get(row, "id", path, row.get("id"))
        answer = str(_get(row, "answer", path, rid, (str, int, float))).strip()
        options, problem_type = None, "numerical" if _is_number(answer) else "free-form"
        if row.get("question_type") == "multiple-choice":
            options, problem_type = _lettered(_get(row, "options", path, rid, list)), "multiple choice"
            answer = _check_letter(answer, options, path, rid)
        categories = {"track": _videommmu_track(row, path)}
        subject = re.match(r"^[^_]+_(.+)_\d+$", rid)
        if subject:
            categories["subject"] = subject.group(1)
        video = row.get("video_path") or f"{rid}.mp4"
        question = _get(row, "question", path, rid)
        items.append(BenchItem(rid, question, options, answer, problem_type, video, categories, "videommmu"))
    return items


def _mmvu_video(row: Mapping[str, Any], path: Path, rid: Any) -> str:
    video = row.get("video_path") or _get(row, "video", path, rid)
    if "://" in video:  # a hub URL: keep the part after .../resolve/<revision>/
        video = re.sub(r"^.*?/resolve/[^/]+/", "", video)
    return video


@BENCHMARKS.register("mmvu")
def load_mmvu(path: Path) -> list[BenchItem]:
    """MMVU multiple-choice questions (open-ended rows are skipped and counted in the log)."""
    items, skipped = [], 0
    for row in _rows(path):
        rid = _get(row, "id", path, row.get("id"), (str, int))
        if _get(row, "question_type", path, rid) != "multiple-choice":
            skipped += 1
            continue
        choices = _get(row, "choices", path, rid, dict)
        options = [
            f"{letter}. {choices[letter]}" for letter in sorted(choices) if choices[letter] not in (None, "")
        ]
        video = _mmvu_video(row, path, rid)
        parts = Path(video).parts
        if len(parts) < 2:
            raise UserError(f"{path}: record {rid!r}: field 'video_path' {video!r} has no subject folder")
        items.append(
            BenchItem(str(rid), _get(row, "question", path, rid), options,
                      _check_letter(_get(row, "answer", path, rid), options, path, rid),
                      "multiple choice", video, {"subject": parts[-2]}, "mmvu")
        )  # fmt: skip
    if skipped:
        logger.info(
            "%s: skipped %d open-ended MMVU questions (MMVU(mc) keeps multiple choice only)", path, skipped
        )
    return items


def _tc_multi_choice(question: str, answer: str) -> tuple[str, list[str], str]:
    lines = question.split("\n")
    options = lines[1:]
    if not options or not all(_OPTION_LINE.match(o) for o in options) or not _OPTION_LINE.match(answer):
        raise ValueError("multi-choice questions list options as 'A. text' lines and answer 'A. text'")
    return lines[0], options, answer[0]


def _tc_yes_no(question: str, answer: str) -> tuple[str, list[str], str]:
    if answer.strip().lower() not in ("yes", "no"):
        raise ValueError(f"yes/no answer must be 'yes' or 'no', got {answer!r}")
    return question, ["A. yes", "B. no"], "A" if answer.strip().lower() == "yes" else "B"


def _tc_caption_matching(question: str, answer: str) -> tuple[str, list[str], str]:
    lines = question.split("\n")
    parsed = [_CAPTION_LINE.match(line) for line in lines[1:]]
    chosen = _CAPTION_LINE.match(answer)
    if not parsed or not all(parsed) or chosen is None:
        raise ValueError("caption matching lists 'Caption A: text' / 'Sentence A:' / 'Option 1:' lines")
    labels = [m.group(1) for m in parsed]
    if chosen.group(1) not in labels:
        raise ValueError(f"answer label {chosen.group(1)!r} is not one of {labels}")
    letters = [chr(ord("A") + k) for k in range(len(parsed))]
    options = [f"{letter}. {m.group(2)}" for letter, m in zip(letters, parsed)]
    return lines[0], options, letters[labels.index(chosen.group(1))]


TEMPCOMPASS_TASKS = {
    "multi-choice": _tc_multi_choice,
    "yes_no": _tc_yes_no,
    "caption_matching": _tc_caption_matching,
}


def _tc_task(row: Mapping[str, Any]) -> str:
    if row.get("task"):
        return str(row["task"])
    if str(row.get("answer", "")).strip().lower() in ("yes", "no"):
        return "yes_no"
    lines = str(row.get("question", "")).split("\n")
    return "caption_matching" if len(lines) > 1 and _CAPTION_LINE.match(lines[1]) else "multi-choice"


def _tc_flat_rows(path: Path, data: Any) -> list[dict[str, Any]]:
    """TempCompass rows with ``video_id``, ``dim``, ``task``, ``question``, ``answer`` (official nesting undone)."""
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
    return [dict(row, task=_tc_task(row)) for row in data]


@BENCHMARKS.register("tempcompass")
def load_tempcompass(path: Path) -> list[BenchItem]:
    """TempCompass multi-choice, yes/no and caption matching, all as lettered multiple choice."""
    items, counters, skipped = [], {}, 0
    for row in _tc_flat_rows(path, read_annotations(path)):
        video_id, dim, task = str(row.get("video_id")), row.get("dim"), row["task"]
        if task == "captioning":
            skipped += 1
            continue
        key = (video_id, dim, task)
        counters[key] = counters.get(key, -1) + 1
        rid = str(row.get("question_id") or f"{video_id}/{dim}/{task}/{counters[key]}")
        convert = TEMPCOMPASS_TASKS.get(task)
        if convert is None:
            raise UserError(
                f"{path}: record {rid!r}: task {task!r} unknown; valid: {', '.join(TEMPCOMPASS_TASKS)}"
            )
        _get(row, "dim", path, rid)
        try:
            question, options, letter = convert(
                _get(row, "question", path, rid), _get(row, "answer", path, rid)
            )
        except ValueError as err:
            raise UserError(f"{path}: record {rid!r}: fields 'question'/'answer': {err}") from err
        categories = {"dim": dim, "task": task}
        items.append(BenchItem(rid, question, options, letter, "multiple choice", f"{video_id}.mp4", categories,
                               "tempcompass"))  # fmt: skip
    if skipped:
        logger.info("%s: skipped %d captioning questions (they need an LLM judge)", path, skipped)
    return items


@BENCHMARKS.register("videomme")
def load_videomme(path: Path) -> list[BenchItem]:
    """Video-MME rows (lmms-lab format), four lettered options each."""
    items = []
    for row in _rows(path):
        rid = _get(row, "question_id", path, row.get("question_id"), (str, int))
        options = _lettered(_get(row, "options", path, rid, list))
        categories = {key: _get(row, key, path, rid) for key in ("duration", "domain", "task_type")}
        items.append(
            BenchItem(str(rid), _get(row, "question", path, rid), options,
                      _check_letter(_get(row, "answer", path, rid), options, path, rid), "multiple choice",
                      f"{_get(row, 'videoID', path, rid)}.mp4", categories, "videomme")
        )  # fmt: skip
    return items
