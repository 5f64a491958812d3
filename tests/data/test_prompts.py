import pytest

from videoktr.core.registry import UnknownNameError
from videoktr.data.prompts import PROBLEM_TYPES, PROMPT_TEMPLATES, build_question
from videoktr.errors import UserError

VIDEO_R1_INSTRUCTION = (
    "Please think about this question as if you were a human pondering deeply. "
    "Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', "
    "'let's break it down', etc, or other natural language thought expressions "
    "It's encouraged to include self-reflection or verification in the reasoning process. "
    "Provide your detailed reasoning between the <think> </think> tags, and then give your final answer "
    "between the <answer> </answer> tags."
)

SUFFIX = {
    "multiple choice": " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the "
    "<answer> </answer> tags.",
    "numerical": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
    "OCR": " Please transcribe text from the image/video clearly and provide your text answer within the "
    "<answer> </answer> tags.",
    "free-form": " Please provide your text answer within the <answer> </answer> tags.",
    "regression": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
}


def record(problem_type, options=None):
    return {"problem_id": 3, "problem": "What happens? ", "problem_type": problem_type, "options": options}


def test_multiple_choice_lists_the_options_then_the_instruction():
    text = build_question(record("multiple choice", ["A. red", "B. green", "C. blue"]))
    expected = (
        "What happens?\nOptions:\nA. red\nB. green\nC. blue\n"
        + VIDEO_R1_INSTRUCTION
        + SUFFIX["multiple choice"]
    )
    assert text == expected


@pytest.mark.parametrize("problem_type", ["numerical", "OCR", "free-form", "regression"])
def test_other_types_have_no_options_and_their_own_suffix(problem_type):
    text = build_question(record(problem_type, options=[]))
    assert text == "What happens?\n" + VIDEO_R1_INSTRUCTION + SUFFIX[problem_type]
    assert "Options:" not in text


def test_short_template_is_shorter_and_keeps_the_tags():
    mc = record("multiple choice", ["A. left", "B. right"])
    short = build_question(mc, template="short")
    assert short.startswith("What happens?\nOptions:\nA. left\nB. right\n")
    assert "<think> </think>" in short and "<answer> </answer>" in short and "letter" in short
    assert len(short) < len(build_question(mc)) / 3
    # every problem type has a distinct, non-empty short suffix except the two numeric ones
    suffixes = {t: PROMPT_TEMPLATES.get("short").type_suffix[t] for t in PROBLEM_TYPES}
    assert suffixes["numerical"] == suffixes["regression"] and len(set(suffixes.values())) == 4


def test_unknown_template_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="short, short-multi, tw-grpo, video-r1, video-r1-multi"):
        build_question(record("numerical"), template="long")


def test_bad_problem_type_and_missing_options_are_user_errors():
    with pytest.raises(UserError, match="record 3: problem_type 'mcq'"):
        build_question(record("mcq"))
    with pytest.raises(UserError, match="record 3: multiple-choice record without options"):
        build_question(record("multiple choice", options=None))


def multi(solution):
    return dict(record("multiple choice", ["A. red", "B. green", "C. blue"]), solution=solution)


def test_tw_grpo_template_is_the_authors_mixed_template():
    # src/open_r1/grpo.py, question_type "mixed"
    authors = (
        "{Question}  Output the thinking process in <think> </think> and final answer (letters separated by , if "
        "multiple) in <answer> </answer> tags."
    )
    question = "What happens?\nOptions:\nA. red\nB. green\nC. blue"
    assert build_question(multi("<answer>A,C</answer>"), "tw-grpo") == authors.format(Question=question)


@pytest.mark.parametrize("template", ["tw-grpo", "video-r1-multi", "short-multi"])
def test_multi_answer_templates_serve_single_and_multi_records_alike(template):
    single, several = (
        build_question(multi("<answer>B</answer>"), template),
        build_question(multi("<answer>A, C</answer>"), template),
    )
    assert single == several and PROMPT_TEMPLATES.get(template).multi_answer


@pytest.mark.parametrize("template", ["video-r1", "short"])
def test_single_answer_template_refuses_multi_answer_records(template):
    assert build_question(multi("<answer>B</answer>"), template)
    with pytest.raises(
        UserError, match=f"record 3: several correct letters.*{template!r} asks for a single letter"
    ):
        build_question(multi("<answer>A, C</answer>"), template)
