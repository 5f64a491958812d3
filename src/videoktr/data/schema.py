"""The Video-R1 record schema (METHOD section 6): loading, per-record checks, whole-dataset validation.

A record::

    {"problem_id": 7, "problem": "Which colour appears first?", "data_type": "video",
     "problem_type": "multiple choice", "options": ["A. red", "B. green", "C. blue", "D. yellow"],
     "solution": "<answer>B</answer>", "path": "videos/train-0007.mp4", "data_source": "synthetic"}

``path`` is relative to a data root given by the user and must stay under it (no absolute path elsewhere, no
``../`` out of it) unless ``allow_outside_root``: a train file must not reach the test split's videos unnoticed.
SFT records add ``process`` = ``"<think>...</think>"``. ``options`` may be null or an empty list unless the problem
is multiple choice. ``data_source`` is optional. A multiple-choice solution may name several correct letters,
``"<answer>A,C</answer>"`` (TW-GRPO multi-answer records): each must be one of the options' letters, once.

:func:`check_records` is the one record check of ``validate-data``, ``train`` and ``eval`` (Video-R1 files): every
record is checked (fields, types, options vs solution, duplicate ids, paths under the root and, optionally, that the
media exist and decode) before any model loads, and every problem is reported with its record index and id.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from videoktr.data.prompts import PROBLEM_TYPES
from videoktr.data.video import VideoDecodeError, VideoSamplingConfig, decode_video
from videoktr.errors import UserError

__all__ = [
    "REQUIRED_FIELDS",
    "DATA_TYPES",
    "RECORD_KINDS",
    "Problem",
    "DataReport",
    "load_records",
    "validate_record",
    "validate_dataset",
    "check_records",
    "require_valid",
    "resolve_media",
    "answer_text",
    "option_letters",
]

REQUIRED_FIELDS = ("problem_id", "problem", "data_type", "problem_type", "solution", "path")
DATA_TYPES = ("video", "image")
RECORD_KINDS = ("rl", "sft")

_ANSWER_RE = re.compile(r"\s*<answer>(.*?)</answer>\s*", re.DOTALL)
_THINK_RE = re.compile(r"\s*<think>(.*?)</think>\s*", re.DOTALL)
_OPTION_RE = re.compile(r"([A-Z])\.\s*\S")


def answer_text(solution: str) -> str | None:
    """The content of ``<answer>...</answer>`` when ``solution`` is exactly that (surrounding space allowed)."""
    match = _ANSWER_RE.fullmatch(solution)
    return match.group(1).strip() if match else None


def option_letters(options: list) -> list[str | None]:
    """The leading letter of each ``"A. ..."`` option (None for an option not in that form)."""
    letters = []
    for option in options:
        match = _OPTION_RE.match(option) if isinstance(option, str) else None
        letters.append(match.group(1) if match else None)
    return letters


def load_records(path: str | Path) -> list:
    """Records of a ``.json`` file (a list) or a ``.jsonl`` file (one object per line, blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{number}: invalid JSON ({err.msg} at column {err.colno})") from err
        return records
    if path.suffix != ".json":
        raise UserError(f"data file {path}: expected a .json (list of records) or .jsonl file")
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: invalid JSON ({err.msg} at column {err.colno})") from err
    if not isinstance(records, list):
        raise UserError(
            f"data file {path}: the top level must be a list of records, got {type(records).__name__}"
        )
    return records


def _check_options(record: Mapping) -> list[str]:
    options = record.get("options")
    if record.get("problem_type") != "multiple choice":
        if options is not None and not isinstance(options, list):
            return [f"options: must be a list or null, got {type(options).__name__}"]
        return []
    if not isinstance(options, list) or len(options) < 2:
        return ["options: a multiple-choice record needs a list of at least 2 options like 'A. red'"]
    letters = option_letters(options)
    problems = [
        f"options[{i}]: {options[i]!r} is not of the form 'A. text'" for i, x in enumerate(letters) if not x
    ]
    expected = [chr(ord("A") + i) for i in range(len(options))]
    if not problems and letters != expected:
        problems.append(f"options: letters {''.join(letters)} should run {''.join(expected)} in order")
    return problems


def _check_solution(record: Mapping) -> list[str]:
    solution = record.get("solution")
    if not isinstance(solution, str) or (answer := answer_text(solution)) is None:
        return [f"solution: {solution!r} must be '<answer>X</answer>'"]
    if not answer:
        return ["solution: the answer inside <answer></answer> is empty"]
    problem_type = record.get("problem_type")
    if problem_type == "multiple choice" and isinstance(record.get("options"), list):
        letters = option_letters(record["options"])
        # one letter, or several correct ones "A,C" (multi-answer records, TW-GRPO's soft reward)
        given = [part.strip() for part in answer.split(",")]
        if all(letters) and (
            not all(given) or any(g not in letters for g in given) or len(set(given)) < len(given)
        ):
            return [f"solution: answer {answer!r} is not one of the option letters {', '.join(letters)}"
                    + (" (or several, comma-separated, each once)" if "," in answer else "")]  # fmt: skip
    if problem_type in ("numerical", "regression"):
        try:
            float(answer.replace(",", ""))
        except ValueError:
            return [f"solution: {problem_type} answer {answer!r} is not a number"]
    return []


def validate_record(record: object, kind: str = "rl") -> list[str]:
    """Problems of one record, each ``"field: what is wrong"``; empty when the record is valid for ``kind``."""
    if kind not in RECORD_KINDS:
        raise UserError(f"record kind {kind!r} is not one of {', '.join(RECORD_KINDS)}")
    if not isinstance(record, dict):
        return [f"record: expected a JSON object, got {type(record).__name__}"]
    problems = [f"{name}: missing required field" for name in REQUIRED_FIELDS if name not in record]
    pid = record.get("problem_id")
    if "problem_id" in record and (isinstance(pid, bool) or not isinstance(pid, (int, str)) or pid == ""):
        problems.append(f"problem_id: {pid!r} must be an integer or a non-empty string")
    for name in ("problem", "path"):
        if name in record and (not isinstance(record[name], str) or not record[name].strip()):
            problems.append(f"{name}: must be a non-empty string")
    if "data_type" in record and record["data_type"] not in DATA_TYPES:
        problems.append(f"data_type: {record['data_type']!r} is not one of {', '.join(DATA_TYPES)}")
    if "problem_type" in record and record["problem_type"] not in PROBLEM_TYPES:
        problems.append(f"problem_type: {record['problem_type']!r} is not one of {', '.join(PROBLEM_TYPES)}")
    problems += _check_options(record)
    if "solution" in record:
        problems += _check_solution(record)
    if kind == "sft":
        process = record.get("process")
        match = _THINK_RE.fullmatch(process) if isinstance(process, str) else None
        if match is None or not match.group(1).strip():
            problems.append("process: an SFT record needs non-empty reasoning '<think>...</think>'")
    return problems


@dataclass
class Problem:
    """One finding: ``index`` of the record in the file (None for file-level), its id, and what is wrong."""

    index: int | None
    record_id: object
    message: str
    severity: str = "error"  # "error" fails validation; "warning" is reported only

    def label(self) -> str:
        if self.index is None:
            return "file"
        return f"#{self.index}" + ("" if self.record_id is None else f" (id {self.record_id})")


@dataclass
class DataReport:
    """All findings for one data file. ``ok`` when there is no error (warnings do not fail)."""

    path: str
    num_records: int = 0
    num_decoded: int = 0  # distinct media files that decoded
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return (
            f"{self.path}: {self.num_records} records, {self.num_decoded} media files decoded, "
            f"{len(self.errors)} errors, {len(self.warnings)} warnings"
        )

    def format(self) -> str:
        """One line per problem (``error #3 (id 12): solution: ...``), then the summary."""
        lines = [f"{p.severity} {p.label()}: {p.message}" for p in self.problems]
        return "\n".join([*lines, self.summary()])


def _check_duplicates(records: list, report: DataReport) -> None:
    ids, paths = defaultdict(list), defaultdict(list)
    for index, record in enumerate(records):
        if isinstance(record, dict):
            if isinstance(record.get("problem_id"), (int, str)):
                ids[record["problem_id"]].append(index)
            if isinstance(record.get("path"), str):
                paths[record["path"]].append(index)
    for pid, indices in ids.items():
        for index in indices[1:]:
            where = ", ".join(f"#{i}" for i in indices)
            report.problems.append(Problem(index, pid, f"problem_id: duplicate id {pid!r} (records {where})"))
    for media, indices in paths.items():
        if len(indices) > 1:
            where = ", ".join(f"#{i}" for i in indices)
            message = f"path: {media!r} is used by {len(indices)} records ({where})"
            report.problems.append(
                Problem(indices[0], records[indices[0]].get("problem_id"), message, "warning")
            )


def resolve_media(root: Path, path: str, allow_outside_root: bool = False) -> tuple[Path, str | None]:
    """``(file, problem)``: the record's media file under ``root`` and, when it lies outside ``root`` (an absolute
    path elsewhere, or ``../`` climbing out) and that is not allowed, why. The test is on the written path, not on
    symlinks: a ``videos`` folder linked to another disk stays under the root."""
    base = Path(os.path.normpath(Path(root).absolute()))
    file = Path(os.path.normpath(base / path))
    if allow_outside_root or file.is_relative_to(base):
        return file, None
    return file, (
        f"path: {path!r} resolves to {file}, outside the data root {root}; keep media under the root, or pass "
        "--allow-outside-root (recipe: data.allow_outside_root: true) if that is intended"
    )


def _media_problem(file: Path, data_type: str, sampling: VideoSamplingConfig) -> str | None:
    """Why ``file`` cannot be used, or None when it decodes."""
    if data_type == "image":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as image:
                image.verify()
        except (UnidentifiedImageError, OSError) as err:
            return f"cannot decode image {file}: {err}"
        return None
    try:
        decode_video(file, sampling)
    except VideoDecodeError as err:
        return str(err)
    return None


def _check_media(
    records: list,
    root: Path,
    exists: bool,
    decode: bool,
    sampling: VideoSamplingConfig,
    report: DataReport,
    allow_outside_root: bool,
) -> None:
    decoded: dict[Path, str | None] = {}  # each file decoded once, even when several records share it
    for index, record in enumerate(records):
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("path"), str)
            or not record["path"].strip()
        ):
            continue
        file, outside = resolve_media(root, record["path"], allow_outside_root)
        pid = record.get("problem_id")
        if outside:
            report.problems.append(Problem(index, pid, outside))
            continue
        if not exists:
            continue
        if not file.is_file():
            report.problems.append(Problem(index, pid, f"path: file not found: {file}"))
            continue
        if not decode or record.get("data_type") not in DATA_TYPES:
            continue
        if file not in decoded:
            decoded[file] = _media_problem(file, record["data_type"], sampling)
        if decoded[file] is not None:
            report.problems.append(Problem(index, pid, f"path: {decoded[file]}"))
    report.num_decoded = sum(1 for problem in decoded.values() if problem is None)


def check_records(
    records: list,
    root: str | Path,
    *,
    path: str | Path = "<records>",
    kind: str = "rl",
    exists: bool = True,
    decode: bool = True,
    sampling: VideoSamplingConfig | None = None,
    allow_outside_root: bool = False,
) -> DataReport:
    """Every problem of ``records`` (read from ``path``) with its record index and id: fields and types
    (:func:`validate_record`), duplicate ids, media paths under ``root`` and, with ``exists`` / ``decode``, media
    files present / decodable with ``sampling``. An empty list is an error. Nothing is raised for bad records."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"data root {root} is not a directory; pass the folder the records' paths are relative to"
        )
    sampling = sampling if sampling is not None else VideoSamplingConfig()
    report = DataReport(path=str(path), num_records=len(records))
    if not records:
        report.problems.append(Problem(None, None, "no records: the file holds an empty list"))
    for index, record in enumerate(records):
        pid = record.get("problem_id") if isinstance(record, dict) else None
        report.problems += [Problem(index, pid, message) for message in validate_record(record, kind)]
    _check_duplicates(records, report)
    _check_media(records, root, exists, decode, sampling, report, allow_outside_root)
    report.problems.sort(key=lambda p: (-1 if p.index is None else p.index, p.severity != "error"))
    return report


def require_valid(report: DataReport, what: str = "data", limit: int = 50) -> None:
    """Raise :class:`UserError` listing every error of ``report`` (up to ``limit`` lines, then a count)."""
    errors = report.errors
    if not errors:
        return
    lines = [f"  {p.label()}: {p.message}" for p in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more (`videoktr validate-data` lists them all)")
    raise UserError(
        f"{report.path}: {len(errors)} problem(s) in the {what}, nothing was trained or evaluated:\n"
        + "\n".join(lines)
    )


def validate_dataset(
    path: str | Path,
    root: str | Path,
    kind: str = "rl",
    decode: bool = True,
    sampling: VideoSamplingConfig | None = None,
    allow_outside_root: bool = False,
) -> DataReport:
    """Check every record of ``path`` (fields, types, options vs solution, duplicate ids, media files under
    ``root`` exist and, with ``decode``, decode with ``sampling``) and collect all problems with record ids."""
    if not Path(root).is_dir():
        raise UserError(
            f"data root {root} is not a directory; pass the folder the records' paths are relative to"
        )
    return check_records(
        load_records(path), root, path=path, kind=kind, decode=decode, sampling=sampling,
        allow_outside_root=allow_outside_root,
    )  # fmt: skip
