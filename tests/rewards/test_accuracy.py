import pytest

from videoktr.rewards.accuracy import (
    accuracy_reward,
    score_free_form,
    score_numerical,
    score_ocr,
    score_regression,
    word_error_rate,
)
from videoktr.rewards.base import RewardError


def _wrap(answer: str) -> str:
    return f"<think>reasoning</think><answer>{answer}</answer>"


def test_multiple_choice_letter_match_with_strings_and_conversations():
    completions = [_wrap("B"), [{"role": "user", "content": "q"}, {"role": "assistant", "content": _wrap("B. dog")}],
                   _wrap("C"), "B without tags"]  # fmt: skip
    rewards = accuracy_reward(
        completions, solution=["<answer>B</answer>"] * 4, problem_type=["multiple choice"] * 4
    )
    # B == B; "B. dog" -> B; C != B; no <answer> tags -> the model gave no answer -> 0
    assert rewards == [1.0, 1.0, 0.0, 0.0]


def test_multiple_choice_letter_outside_options_is_wrong():
    rewards = accuracy_reward(
        [_wrap("E")],
        solution=["<answer>E</answer>"],
        problem_type=["multiple choice"],
        options=[["A. x", "B. y"]],
    )
    assert rewards == [0.0]


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("3", "3", 1.0),
        ("3.0", "3", 0.0),  # decimal point on one side only -> 0 before any parsing
        ("3.0", "3.00", 1.0),  # both decimal; round(3.0, 2) == round(3.00, 2)
        ("1,000", "1000", 0.0),  # comma on one side only -> 0
        ("1,000", "1,000.0", 1.0),  # both have comma/point; 1000.0 == 1000.0
        ("2.004", "2.00", 1.0),  # round(2.004, 2) = 2.0 == 2.0
        ("2.006", "2.00", 0.0),  # round(2.006, 2) = 2.01 != 2.0
        ("seven", "7", 0.0),  # unreadable model answer: a legitimate 0
        (None, "7", 0.0),
    ],
)
def test_numerical_rule(pred, gold, expected):
    assert score_numerical(pred, gold) == expected


def test_ocr_is_one_minus_word_error_rate():
    # ref "the quick brown fox" (4 words), hyp "the quick red fox": 1 substitution -> WER 1/4 -> 0.75
    assert word_error_rate("the quick brown fox", "the quick red fox") == pytest.approx(0.25)
    assert score_ocr("the quick red fox", "the quick brown fox") == pytest.approx(0.75)
    # hyp with 6 extra words: WER 6/1 -> 1 - 6 = -5 -> clipped to 0
    assert score_ocr("stop a b c d e f", "stop") == 0.0
    assert score_ocr("stop", "stop") == 1.0


def test_free_form_is_mean_rouge_f():
    # gold "the cat sat", pred "the cat": ROUGE-1 P=2/2 R=2/3 F=0.8; ROUGE-2 bigrams {the cat} vs
    # {the cat, cat sat}: P=1 R=1/2 F=2/3; ROUGE-L LCS=2 -> F=0.8. Mean = (0.8 + 2/3 + 0.8) / 3
    assert score_free_form("the cat", "the cat sat") == pytest.approx((0.8 + 2 / 3 + 0.8) / 3)
    assert score_free_form("dog", "the cat sat") == 0.0
    assert score_free_form("the cat sat", "the cat sat") == pytest.approx(1.0)


def test_regression_is_one_minus_relative_error():
    # |8 - 10| / |10| = 0.2 -> 0.8 (the 1e-9 terms move it by < 1e-9)
    assert score_regression("8", "10") == pytest.approx(0.8)
    assert score_regression("30", "10") == 0.0  # relative error 2 -> clipped to 1 -> 0
    assert score_regression("10", "10") == pytest.approx(1.0)
    assert score_regression("ten", "10") == 0.0


def test_reward_dispatches_per_row_problem_type():
    completions = [_wrap("B"), _wrap("42"), _wrap("hello world"), _wrap("8")]
    solutions = [
        "<answer>B</answer>",
        "<answer>42</answer>",
        "<answer>hello there world</answer>",
        "<answer>10</answer>",
    ]
    types = ["multiple choice", "numerical", "OCR", "regression"]
    # OCR: ref 3 words, hyp 2 words = 1 deletion -> 1 - 1/3
    assert accuracy_reward(completions, solution=solutions, problem_type=types) == pytest.approx(
        [1, 1, 2 / 3, 0.8]
    )


def test_unknown_problem_type_names_the_sample():
    with pytest.raises(
        RewardError, match=r"'accuracy'.*problem_id='v7'.*row 1.*unknown problem_type 'essay'"
    ):
        accuracy_reward(
            [_wrap("A"), _wrap("A")], solution=["<answer>A</answer>"] * 2,
            problem_type=["multiple choice", "essay"], problem_id=["v6", "v7"],
        )  # fmt: skip


@pytest.mark.parametrize(
    "solution, problem_type, message",
    [(None, "multiple choice", "missing solution"), ("B", "multiple choice", "no <answer>"),
     ("<answer>seven</answer>", "numerical", "not a number"),
     ("<answer>A, C</answer>", "multiple choice", "tw_soft_mc"),
     ("<answer>cat</answer>", "multiple choice", "not an option letter")],
)  # fmt: skip
def test_unscorable_samples_raise_instead_of_zero(solution, problem_type, message):
    with pytest.raises(RewardError, match=message) as info:
        accuracy_reward([_wrap("A")], solution=[solution], problem_type=[problem_type])
    assert "row 0" in str(info.value)


def test_missing_columns_raise():
    with pytest.raises(RewardError, match="no 'problem_type' column"):
        accuracy_reward([_wrap("A")], solution=["<answer>A</answer>"])
    with pytest.raises(RewardError, match="1 values for 2 completions"):
        accuracy_reward(
            [_wrap("A")] * 2, solution=["<answer>A</answer>"], problem_type=["multiple choice"] * 2
        )
