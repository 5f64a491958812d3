"""Loaders of the benchmarks TW-GRPO reports beyond the Video-KTR set: CLEVRER (counterfactual, natively
multi-answer), NExT-GQA (including the question-answer-inverted "mixed" sets) and MVBench.

Formats (field names as in the files the TW-GRPO authors' evaluation reads, github longmalongma/TW-GRPO at aa529ff,
and lmms-eval's MVBench task):

- ``clevrer``: the authors' ``clevrer_counterfactual_val.json`` as ``src/eval/eval_clevrer.py`` reads it: ``problem``
  (the question, then one option per line, ``A text`` or ``A. text``), ``solution`` (``<answer>A,C</answer>``;
  a bare ``A,C`` is wrapped, as that script does), ``video``; optional ``id`` / ``problem_id`` (else the row
  index), ``options`` (a list; then ``problem`` is the question alone) and ``question_type``. Categories:
  ``answers`` = single / multiple (the authors' split: a comma in the solution) and ``question_type`` if given.
- ``nextgqa``: the authors' ``data/evaluation/nextgqa_val_raw.json`` / ``nextgqa_val_mixed.json`` rows: ``id``,
  ``video``, ``question``, ``options`` ["(A) text", ...], ``answer`` ("(C)" or "(B),(C)" after inversion),
  ``type`` (CW, CH, TN, TC, ...), optional ``is_negated``. Categories: ``type``, ``answers`` single / multiple, and
  ``negated`` true / false when the file says.
- ``mvbench``: either the authors' ``eval_mvbench.json`` (Video-R1 schema with ``video`` for the path:
  ``problem_id``, ``problem``, ``options`` ["A. text"], ``solution``) or MVBench's own / lmms-eval's rows
  (``video``, ``question``, ``candidates`` [texts], ``answer`` = the correct text; the task is the ``task`` field
  or the file name, e.g. ``action_sequence.json``). Category: ``task`` (or the video folder for the authors' file,
  which names no task).

Gold letters are checked against the options (a letter outside them is refused with the record id). Multiple
answers are kept as sorted letters joined by commas (``"A,C"``); score them with ``--scorer tw-grpo`` (the
``official`` scorer of ``clevrer`` and ``nextgqa``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from videoktr.errors import UserError
from videoktr.eval.benchmarks import BENCHMARKS, BenchItem, RecordErrors, _get, _lettered, _rows
from videoktr.rewards.tw_grpo import gold_letter_set

_OPTION_IN_TEXT = re.compile(r"^\(?([A-Z])[.)]?\s+(.*\S)\s*$")
_PAREN_OPTION = re.compile(r"^\(([A-Z])\)\s*(.*)$", re.DOTALL)


def gold_letters(answer: str, options: list[str], where: str) -> str:
    """A gold answer (``"A"``, ``"A, C"``, ``"(B),(C)"``) checked against ``"A. text"`` options, as ``"A,C"``."""
    text = answer.replace("(", "").replace(")", "")
    try:
        letters = gold_letter_set(f"<answer>{text}</answer>", options)
    except ValueError as err:
        raise UserError(f"{where}: {err}") from err
    return ",".join(sorted(letters))


def _answers(letters: str) -> str:
    return "multiple" if "," in letters else "single"


def _split_problem(problem: str, where: str) -> tuple[str, list[str]]:
    """CLEVRER ``problem`` text -> (question, ["A. text", ...]): the trailing lines labelled A, B, ... in order."""
    lines = [line for line in problem.split("\n") if line.strip()]
    options: list[str] = []
    while lines:
        match = _OPTION_IN_TEXT.match(lines[-1].strip())
        if match is None:
            break
        options.insert(0, f"{match.group(1)}. {match.group(2)}")
        lines.pop()
    expected = [chr(ord("A") + k) for k in range(len(options))]
    if len(options) < 2 or [o[0] for o in options] != expected or not lines:
        raise UserError(
            f"{where}: 'problem' should be the question, then option lines 'A text', 'B text', ..."
        )
    return "\n".join(lines), options


@BENCHMARKS.register("clevrer")
def load_clevrer(path: Path) -> list[BenchItem]:
    """CLEVRER questions in the TW-GRPO authors' format (module docstring)."""
    items = []
    errors = RecordErrors(path)
    for index, row in enumerate(_rows(path)):
        with errors.record():
            rid = row.get("id", row.get("problem_id", index))
            where = f"{path}: record {rid!r}"
            problem = _get(row, "problem", path, rid)
            if row.get("options"):
                question, options = problem, _lettered(_get(row, "options", path, rid, list))
            else:
                question, options = _split_problem(problem, where)
            solution = _get(row, "solution", path, rid)
            found = re.search(r"<answer>(.*?)</answer>", solution, re.DOTALL)
            letters = gold_letters(found.group(1) if found else solution, options, where)
            categories = {"answers": _answers(letters)}
            if row.get("question_type"):
                categories["question_type"] = str(row["question_type"])
            video = _get(row, "video", path, rid)
            items.append(
                BenchItem(
                    str(rid), question, options, letters, "multiple choice", video, categories, "clevrer"
                )
            )
    errors.raise_if_any()
    return items


@BENCHMARKS.register("nextgqa")
def load_nextgqa(path: Path) -> list[BenchItem]:
    """NExT-GQA rows in the TW-GRPO authors' format, raw or question-answer inverted (module docstring)."""
    items = []
    errors = RecordErrors(path)
    for row in _rows(path):
        with errors.record():
            rid = _get(row, "id", path, row.get("id"), (str, int))
            where = f"{path}: record {rid!r}"
            options = []
            for k, option in enumerate(_get(row, "options", path, rid, list)):
                match = _PAREN_OPTION.match(str(option))
                if match is None or match.group(1) != chr(ord("A") + k):
                    raise UserError(
                        f"{where}: option {option!r} should be labelled '({chr(ord('A') + k)}) text'"
                    )
                options.append(f"{match.group(1)}. {match.group(2).strip()}")
            letters = gold_letters(_get(row, "answer", path, rid), options, where)
            categories = {"type": _get(row, "type", path, rid), "answers": _answers(letters)}
            if isinstance(row.get("is_negated"), bool):
                categories["negated"] = str(row["is_negated"]).lower()
            question, video = _get(row, "question", path, rid), _get(row, "video", path, rid)
            items.append(
                BenchItem(
                    str(rid), question, options, letters, "multiple choice", video, categories, "nextgqa"
                )
            )
    errors.raise_if_any()
    return items


def _mvbench_row(row: dict[str, Any], path: Path, index: int) -> BenchItem:
    if "candidates" in row:  # MVBench's own / lmms-eval rows
        rid = row.get("id", row.get("question_id", f"{path.stem}-{index}"))
        where = f"{path}: record {rid!r}"
        candidates = [str(c) for c in _get(row, "candidates", path, rid, list)]
        answer = _get(row, "answer", path, rid)
        if candidates.count(answer) != 1:
            raise UserError(
                f"{where}: 'answer' {answer!r} must be exactly one of the candidates {candidates}"
            )
        options = _lettered(candidates)
        letters = chr(ord("A") + candidates.index(answer))
        task = str(row.get("task") or path.stem)
        question = _get(row, "question", path, rid)
    else:  # the TW-GRPO / Video-R1 evaluation file
        rid = _get(row, "problem_id", path, row.get("problem_id"), (str, int))
        where = f"{path}: record {rid!r}"
        options = _lettered(_get(row, "options", path, rid, list))
        found = re.search(r"<answer>(.*?)</answer>", _get(row, "solution", path, rid), re.DOTALL)
        if found is None:
            raise UserError(f"{where}: field 'solution' must look like '<answer>X</answer>'")
        letters = gold_letters(found.group(1), options, where)
        video_dir = Path(_get(row, "video", path, rid)).parent.name
        task = str(row.get("task") or row.get("original_question_type") or video_dir)
        question = _get(row, "problem", path, rid)
    video = _get(row, "video", path, rid)
    return BenchItem(
        str(rid), question, options, letters, "multiple choice", video, {"task": task}, "mvbench"
    )


@BENCHMARKS.register("mvbench")
def load_mvbench(path: Path) -> list[BenchItem]:
    """MVBench in the TW-GRPO authors' file or in MVBench's / lmms-eval's rows (module docstring)."""
    items, errors = [], RecordErrors(path)
    for index, row in enumerate(_rows(path)):
        with errors.record():
            items.append(_mvbench_row(row, path, index))
    errors.raise_if_any()
    return items
