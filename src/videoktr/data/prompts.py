"""The prompt text of a record: one template for training and evaluation (METHOD section 4).

``build_question(record)`` = the question, then for multiple choice ``Options:`` and one option per line, then the
template's instruction to reason inside ``<think> </think>`` and answer inside ``<answer> </answer>``, then a
per-problem-type suffix. Templates are looked up by name in :data:`PROMPT_TEMPLATES`:

- ``video-r1`` (default): the wording of Video-R1's GRPO/SFT scripts (``QUESTION_TEMPLATE`` + ``TYPE_TEMPLATE``).
  Video-R1 glues ``"Options:"`` straight after the problem text; here a newline separates them (METHOD 4).
- ``short``: a few words, for the tiny demo model whose context and vocabulary are small.

Multi-answer questions (several correct letters, ``"<answer>A,C</answer>"``, TW-GRPO) need a template whose
multiple-choice instruction allows several letters (``multi_answer=True``); the same template serves the
single-answer records of a mixed set, so the prompt does not reveal how many letters are correct:

- ``tw-grpo``: the TW-GRPO authors' "mixed" ``QUESTION_TEMPLATE`` (``src/open_r1/grpo.py``): "{Question}  Output
  the thinking process in <think> </think> and final answer (letters separated by , if multiple) in <answer>
  </answer> tags." (the options are part of the question, as in their data, here after ``Options:``).
- ``video-r1-multi``: the ``video-r1`` wording, asking for "the option letters, separated by commas if several".
- ``short-multi``: the ``short`` wording with "Answer with option letters, separated by commas if several."

A single-answer template used with a multi-answer record is refused with the record's id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from videoktr.core.registry import Registry
from videoktr.errors import UserError

__all__ = [
    "PromptTemplate",
    "PROMPT_TEMPLATES",
    "PROBLEM_TYPES",
    "build_question",
    "format_problem",
    "is_multi_answer",
    "solution_letters",
]

PROBLEM_TYPES = ("multiple choice", "numerical", "OCR", "free-form", "regression")


@dataclass(frozen=True)
class PromptTemplate:
    """``instruction`` holds ``{Question}``; ``type_suffix`` maps every problem type to the text appended after."""

    name: str
    instruction: str
    type_suffix: Mapping[str, str]
    multi_answer: bool = False  # whether the multiple-choice suffix allows several letters

    def __post_init__(self) -> None:
        missing = [t for t in PROBLEM_TYPES if t not in self.type_suffix]
        if missing or "{Question}" not in self.instruction:
            raise ValueError(f"prompt template {self.name!r}: needs {{Question}} and a suffix for {missing}")


PROMPT_TEMPLATES: Registry[PromptTemplate] = Registry("prompt template")

_ANSWER_TAGS = "within the <answer> </answer> tags."

PROMPT_TEMPLATES.add(
    "video-r1",
    PromptTemplate(
        name="video-r1",
        instruction=(
            "{Question}\n"
            "Please think about this question as if you were a human pondering deeply. "
            "Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', "
            "'let's break it down', etc, or other natural language thought expressions "
            "It's encouraged to include self-reflection or verification in the reasoning process. "
            "Provide your detailed reasoning between the <think> </think> tags, and then give your final answer "
            "between the <answer> </answer> tags."
        ),
        type_suffix={
            "multiple choice": f" Please provide only the single option letter (e.g., A, B, C, D, etc.) {_ANSWER_TAGS}",
            "numerical": f" Please provide the numerical value (e.g., 42 or 3.14) {_ANSWER_TAGS}",
            "OCR": f" Please transcribe text from the image/video clearly and provide your text answer {_ANSWER_TAGS}",
            "free-form": f" Please provide your text answer {_ANSWER_TAGS}",
            "regression": f" Please provide the numerical value (e.g., 42 or 3.14) {_ANSWER_TAGS}",
        },
    ),
)

PROMPT_TEMPLATES.add(
    "short",
    PromptTemplate(
        name="short",
        instruction="{Question}\nThink in <think> </think>, then answer in <answer> </answer>.",
        type_suffix={
            "multiple choice": " Answer with one option letter.",
            "numerical": " Answer with a number.",
            "OCR": " Answer with the text you read.",
            "free-form": " Answer in a few words.",
            "regression": " Answer with a number.",
        },
    ),
)


PROMPT_TEMPLATES.add(
    "tw-grpo",
    PromptTemplate(
        name="tw-grpo",
        instruction="{Question}  Output the thinking process in <think> </think> and final answer",
        type_suffix={
            "multiple choice": " (letters separated by , if multiple) in <answer> </answer> tags.",
            "numerical": " (a number) in <answer> </answer> tags.",
            "OCR": " (the transcribed text) in <answer> </answer> tags.",
            "free-form": " (free text) in <answer> </answer> tags.",
            "regression": " (a number) in <answer> </answer> tags.",
        },
        multi_answer=True,
    ),
)

PROMPT_TEMPLATES.add(
    "video-r1-multi",
    PromptTemplate(
        name="video-r1-multi",
        instruction=PROMPT_TEMPLATES.get("video-r1").instruction,
        type_suffix={
            **PROMPT_TEMPLATES.get("video-r1").type_suffix,
            "multiple choice": " Please provide the option letters (e.g., A or A, C), separated by commas if "
            f"several, {_ANSWER_TAGS}",
        },
        multi_answer=True,
    ),
)

PROMPT_TEMPLATES.add(
    "short-multi",
    PromptTemplate(
        name="short-multi",
        instruction=PROMPT_TEMPLATES.get("short").instruction,
        type_suffix={
            **PROMPT_TEMPLATES.get("short").type_suffix,
            "multiple choice": " Answer with option letters, separated by commas if several.",
        },
        multi_answer=True,
    ),
)


def solution_letters(record: Mapping) -> list[str]:
    """The gold letters of a multiple-choice record, read as TW-GRPO does: the first ``<answer>`` content (else
    the whole solution), spaces removed, split on commas. ``[]`` for other problem types."""
    if record.get("problem_type") != "multiple choice":
        return []
    from videoktr.rewards.tw_grpo import answer_set

    return sorted(answer_set(str(record.get("solution", ""))))


def is_multi_answer(record: Mapping) -> bool:
    """Whether a multiple-choice record has several correct letters (``"<answer>A,C</answer>"``)."""
    return len(solution_letters(record)) > 1


def format_problem(record: Mapping) -> str:
    """The problem text, followed for multiple choice by ``Options:`` and one option per line."""
    problem = str(record["problem"]).rstrip()
    if record.get("problem_type") != "multiple choice":
        return problem
    options = record.get("options")
    if not options:
        raise UserError(
            f"record {record.get('problem_id', '?')}: multiple-choice record without options; "
            "add options like ['A. red', 'B. green']"
        )
    return problem + "\nOptions:\n" + "\n".join(str(option) for option in options)


def build_question(record: Mapping, template: str = "video-r1") -> str:
    """The user text for ``record`` (a Video-R1 record) with the named template (see :data:`PROMPT_TEMPLATES`)."""
    chosen = PROMPT_TEMPLATES.get(template)
    problem_type = record.get("problem_type")
    if problem_type not in chosen.type_suffix:
        raise UserError(
            f"record {record.get('problem_id', '?')}: problem_type {problem_type!r} is not one of "
            f"{', '.join(PROBLEM_TYPES)}"
        )
    if not chosen.multi_answer and is_multi_answer(record):
        multi = ", ".join(
            name for name in PROMPT_TEMPLATES.names() if PROMPT_TEMPLATES.get(name).multi_answer
        )
        raise UserError(
            f"record {record.get('problem_id', record.get('id', '?'))}: several correct letters "
            f"({record.get('solution')!r}) but prompt template {template!r} asks for a single letter; "
            f"use a multi-answer template ({multi})"
        )
    return chosen.instruction.format(Question=format_problem(record)) + chosen.type_suffix[problem_type]
