"""Benchmark loaders: each benchmark's public annotation format -> a common :class:`BenchItem`.

Formats (field names as in the public files; users bring the files and the videos):

- ``video-holmes``: the official ``test_Video-Holmes.json`` (``Question ID``, ``video ID``, ``Question Type``,
  ``Question``, ``Options`` {letter: text}, ``Answer``; video ``<video ID>.mp4``), or a Video-R1-style file
  (Video-R1 schema + ``original_question_type``). Category: ``question_type`` (SR, IMC, TCI, TA, MHR, PAR, CTI).
- ``videommmu``: lmms-lab/VideoMMMU rows (``id`` like ``test_Art_Theory_12``, ``question``, ``options`` list,
  ``answer``, ``question_type`` ``multiple-choice`` or open). Categories: ``track`` (a ``track`` field, else the file
  name containing perception/comprehension/adaptation), ``subject`` (from the id) and lmms-eval's ``domain`` of the
  subject. Video ``<id>.mp4`` unless the row has ``video_path``. Open questions with a numeric answer are
  ``numerical``, others ``free-form``.
- ``mmvu``: MMVU ``validation.json`` rows (``id``, ``question``, ``choices`` {letter: text}, ``answer``,
  ``question_type``, ``video_path`` or ``video``); only ``multiple-choice`` rows are kept (MMVU(mc)). Categories:
  ``subject`` = the folder above the video file, and lmms-eval's ``discipline`` of that subject.
- ``tempcompass``: see :mod:`videoktr.eval.tempcompass` (multi-choice, yes/no and caption matching in their own
  formats; categories ``task`` and ``task_dim``).
- ``videomme``: lmms-lab/Video-MME rows (``question_id``, ``videoID``, ``duration``, ``domain``, ``sub_category``,
  ``task_type``, ``question``, ``options`` ["A. ..."], ``answer``). Categories: ``duration``, ``domain``,
  ``sub_category`` (when present), ``task_type``. Video ``<videoID>.mp4``.
- ``video-r1``: any Video-R1 schema file (including Video-R1's own ``eval_*.json`` and the synthetic suite).
  Categories: ``family`` and ``question_kind`` when present, else ``problem_type``. A multiple-choice solution with
  several letters (``<answer>A,C</answer>``, TW-GRPO) is kept as ``"A,C"`` (score it with ``--scorer tw-grpo``).
- ``clevrer``, ``nextgqa``, ``mvbench``: TW-GRPO's benchmarks, in :mod:`videoktr.eval.tw_benchmarks`.

Each item also keeps, in ``native``, what the benchmark's own scorer and prompt read (``--scorer official``,
``--template benchmark``). New formats register a loader in :data:`BENCHMARKS`.
Malformed records raise one :class:`UserError` that lists every one of them (file, record id, field).
"""

from __future__ import annotations

import contextlib
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
    native: dict[str, Any] = field(default_factory=dict)
    """The benchmark's own fields that its official scorer or prompt reads (e.g. TempCompass' question with its
    caption lines and its answer string, MMVU's ``choices``, VideoMMMU's raw ``options``), and ``prompt``: the
    benchmark's own prompt text (``--template benchmark``)."""

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


class RecordErrors:
    """Collects the error of every malformed record of a file, so that all of them are listed at once.

    Each loader reads its rows inside ``with errors.record():``; ``raise_if_any`` then raises one
    :class:`UserError` naming every bad record (file, id, field), as ``validate-data`` does for Video-R1 files.
    """

    MAX_LISTED = 20  # messages shown; the count covers all

    def __init__(self, path: Path):
        self.path = path
        self.messages: list[str] = []

    @contextlib.contextmanager
    def record(self):
        try:
            yield
        except UserError as err:
            self.messages.append(str(err))

    def raise_if_any(self) -> None:
        if self.messages:
            shown = self.messages[: self.MAX_LISTED]
            listed = "\n".join(f"  - {message}" for message in shown)
            if len(self.messages) > len(shown):
                listed += f"\n  ... and {len(self.messages) - len(shown)} more"
            raise UserError(
                f"{self.path}: {len(self.messages)} malformed record(s); fix each and rerun "
                f"(nothing was evaluated):\n{listed}"
            )


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
    errors = RecordErrors(path)
    for item in items:
        with errors.record():
            if item.id in seen:
                raise UserError(
                    f"{path}: id {item.id!r} appears twice; ids must be unique to resume and score"
                )
        seen.add(item.id)
    errors.raise_if_any()
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
        if "," in answer:  # several correct letters (TW-GRPO multi-answer records), kept as "A,C"
            from videoktr.eval.tw_benchmarks import gold_letters

            answer = gold_letters(answer, options, f"{path}: record {rid!r}")
        else:
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
    errors = RecordErrors(path)
    for index, row in enumerate(_rows(path)):
        with errors.record():
            item = _video_r1_item(row, path, index, "video-r1")
            categories = {
                key: str(row[key]) for key in ("family", "question_kind") if row.get(key) is not None
            }
            items.append(_with_categories(item, categories or {"problem_type": item.problem_type}))
    errors.raise_if_any()
    return items


def _holmes_prompt(question: str, choices: Mapping[str, str]) -> str:
    """Video-Holmes' own prompt (its ``evaluate.py``)."""
    listed = ", ".join(f"{key}: {value}" for key, value in choices.items())
    return (
        "Based on the given video, reason and answer the single-choice question. Provide your reasoning between "
        "the <think> and </think> tags, and then give your final answer between the <answer> and </answer> tags. "
        f"The question is: {question}. The options are: {listed}. Your answer:"
    )


def _holmes_official(row: Mapping[str, Any], path: Path) -> BenchItem:
    rid = row.get("Question ID")
    choices = _get(row, "Options", path, rid, dict)
    options = [f"{letter}. {choices[letter]}" for letter in sorted(choices)]
    question = _get(row, "Question", path, rid)
    return BenchItem(
        id=str(_get(row, "Question ID", path, rid, (str, int))),
        question=question,
        options=options,
        answer=_check_letter(_get(row, "Answer", path, rid), options, path, rid),
        problem_type="multiple choice",
        video=f"{_get(row, 'video ID', path, rid)}.mp4",
        categories={"question_type": _get(row, "Question Type", path, rid)},
        benchmark="video-holmes",
        native={"prompt": _holmes_prompt(question, choices)},
    )


@BENCHMARKS.register("video-holmes")
def load_video_holmes(path: Path) -> list[BenchItem]:
    """Video-Holmes, official format or Video-R1-style (``original_question_type``)."""
    items = []
    errors = RecordErrors(path)
    for index, row in enumerate(_rows(path)):
        with errors.record():
            if "Question ID" in row:
                items.append(_holmes_official(row, path))
                continue
            item = _video_r1_item(row, path, index, "video-holmes")
            category = _get(row, "original_question_type", path, row.get("problem_id"))
            items.append(_with_categories(item, {"question_type": category}))
    errors.raise_if_any()
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
    errors = RecordErrors(path)
    for row in _rows(path):
        with errors.record():
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
                categories["domain"] = VIDEOMMMU_DOMAINS.get(subject.group(1), "unknown")
            video = row.get("video_path") or f"{rid}.mp4"
            question = _get(row, "question", path, rid)
            native = {
                "question_type": row.get("question_type"),
                "options": list(row.get("options") or []),
                "prompt": _videommmu_prompt(question, row, categories["track"]),
            }
            items.append(
                BenchItem(
                    rid, question, options, answer, problem_type, video, categories, "videommmu", native
                )
            )
    errors.raise_if_any()
    return items


# lmms-eval's DOMAIN_CAT2SUB_CAT (tasks/videommmu/utils.py), subject -> domain
VIDEOMMMU_DOMAINS = {
    subject: domain
    for domain, subjects in {
        "Art and Design": ["Art", "Art_Theory", "Design", "Music"],
        "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
        "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
        "Health and Medicine": ["Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                                "Pharmacy", "Public_Health"],
        "Humanities and Social Science": ["History", "Literature", "Sociology", "Psychology"],
        "Tech and Engineering": ["Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                                 "Energy_and_Power", "Materials", "Mechanical_Engineering"],
    }.items()
    for subject in subjects
}  # fmt: skip

_VIDEOMMMU_DIRECT = "Please directly output the option letter/data as the answer."


def _videommmu_prompt(question: str, row: Mapping[str, Any], track: str) -> str:
    """lmms-eval's VideoMMMU prompt (``_default_template_yaml``): Adaptation gets a pre-prompt, the other tracks
    a post-prompt; options are lettered as lmms-eval's ``parse_options`` does."""
    raw = [str(o) for o in row.get("options") or []]
    letters = [chr(ord("A") + k) for k in range(len(raw))]
    if all(o.startswith(f"{letter}.") for o, letter in zip(raw, letters)):
        listed = "\n".join(raw)
    else:
        listed = "\n".join(f"{letter}. {o}" for letter, o in zip(letters, raw))
    if track != "Adaptation":
        return f"{question}\n{listed}\n{_VIDEOMMMU_DIRECT}"
    pre = f"{_VIDEOMMMU_DIRECT} You should watch and learn the video content. Then apply what you learned to "
    if row.get("question_type") == "multiple-choice":
        return (
            f"{pre}answer the following multi-choice question. The image for this question is at the end of the "
            f"video.\n{question}\n{listed}"
        )
    return (
        f"{pre}answer the following open-ended question. The image for this question is at the end of the "
        f"video.\n{question}"
    )


def _mmvu_video(row: Mapping[str, Any], path: Path, rid: Any) -> str:
    video = row.get("video_path") or _get(row, "video", path, rid)
    if "://" in video:  # a hub URL: keep the part after .../resolve/<revision>/
        video = re.sub(r"^.*?/resolve/[^/]+/", "", video)
    return video


# lmms-eval's TASK_MAP (tasks/mmvu/utils.py): subject folder -> discipline; other subjects are not counted there
MMVU_DISCIPLINES = {
    **dict.fromkeys(["Biology", "Chemistry", "Modern_Physics", "Astronomy", "Geography", "Materials_Science",
                     "Neurobiology", "Electromagnetism", "Thermodynamics", "Mechanics"], "Science"),
    **dict.fromkeys(["Civil_Engineering", "Electrical_Engineering", "Mechanical_Engineering",
                     "Biomedical_Engineering", "Electronics_and_Communication", "Computer_Science"], "Engineering"),
    **dict.fromkeys(["Clinical_Medicine", "Basic_Medicine", "Preventive_Medicine", "Pharmacy", "Dentistry"],
                    "Healthcare"),
    **dict.fromkeys(["Art", "Literature", "History", "Law", "Economics", "Management"],
                    "Humanities_and_Social_Science"),
}  # fmt: skip


def _mmvu_prompt(question: str, choices: Mapping[str, str]) -> str:
    """lmms-eval's MMVU multiple-choice prompt (``multiple_choice_prompt``)."""
    lines = "\n".join(f"{letter}: {choices.get(letter, '')}" for letter in "ABCDE")
    return (
        f"\nQuestion:{question}\n{lines}\nVisual Information: processed video\nDo not generate any intermediate "
        "reasoning process. Answer directly with the option letter from the\ngiven choices.\n"
    )


@BENCHMARKS.register("mmvu")
def load_mmvu(path: Path) -> list[BenchItem]:
    """MMVU multiple-choice questions (open-ended rows are skipped and counted in the log)."""
    items, skipped = [], 0
    errors = RecordErrors(path)
    for row in _rows(path):
        with errors.record():
            rid = _get(row, "id", path, row.get("id"), (str, int))
            if _get(row, "question_type", path, rid) != "multiple-choice":
                skipped += 1
                continue
            choices = _get(row, "choices", path, rid, dict)
            options = [
                f"{letter}. {choices[letter]}"
                for letter in sorted(choices)
                if choices[letter] not in (None, "")
            ]
            video = _mmvu_video(row, path, rid)
            parts = Path(video).parts
            if len(parts) < 2:
                raise UserError(f"{path}: record {rid!r}: field 'video_path' {video!r} has no subject folder")
            question = _get(row, "question", path, rid)
            categories = {"subject": parts[-2], "discipline": MMVU_DISCIPLINES.get(parts[-2], "unknown")}
            native = {"choices": dict(choices), "prompt": _mmvu_prompt(question, choices)}
            items.append(
                BenchItem(str(rid), question, options,
                          _check_letter(_get(row, "answer", path, rid), options, path, rid),
                          "multiple choice", video, categories, "mmvu", native)
            )  # fmt: skip
    errors.raise_if_any()
    if skipped:
        logger.info(
            "%s: skipped %d open-ended MMVU questions (MMVU(mc) keeps multiple choice only)", path, skipped
        )
    return items


# Video-MME's prompt for the subtitle-free setting (its README, "Evaluation Pipeline")
_VIDEOMME_PROMPT = (
    "Select the best answer to the following multiple-choice question based on the video. Respond with only the "
    "letter (A, B, C, or D) of the correct option.\n{question}\n{options}\nThe best answer is:"
)


@BENCHMARKS.register("videomme")
def load_videomme(path: Path) -> list[BenchItem]:
    """Video-MME rows (lmms-lab format), four lettered options each."""
    items = []
    errors = RecordErrors(path)
    for row in _rows(path):
        with errors.record():
            rid = _get(row, "question_id", path, row.get("question_id"), (str, int))
            options = _lettered(_get(row, "options", path, rid, list))
            categories = {key: _get(row, key, path, rid) for key in ("duration", "domain", "task_type")}
            if row.get("sub_category"):
                categories["sub_category"] = str(row["sub_category"])
            question = _get(row, "question", path, rid)
            native = {"prompt": _VIDEOMME_PROMPT.format(question=question, options="\n".join(options))}
            items.append(
                BenchItem(str(rid), question, options,
                          _check_letter(_get(row, "answer", path, rid), options, path, rid), "multiple choice",
                          f"{_get(row, 'videoID', path, rid)}.mp4", categories, "videomme", native)
            )  # fmt: skip
    errors.raise_if_any()
    return items


from videoktr.eval import tempcompass as _tempcompass  # noqa: E402,F401  (registers "tempcompass")
from videoktr.eval import tw_benchmarks as _tw_benchmarks  # noqa: E402,F401  (clevrer, nextgqa, mvbench)
