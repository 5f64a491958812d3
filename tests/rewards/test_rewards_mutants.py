"""Tests written to kill the mutants that survived `scripts/mutation.sh rewards` (docs/testing.md).

Messages are matched whole: a reward error must name the reward, the sample and the fix, and a mutated message
(``None``, ``"XX...XX"``, a wrong name) is a regression of that rule.
"""

import pytest

from videoktr.core.registry import UnknownNameError
from videoktr.errors import UserError
from videoktr.rewards import REWARDS, get_reward
from videoktr.rewards.accuracy import (
    GoldError,
    score_answer,
    score_free_form,
    score_numerical,
    score_ocr,
    score_regression,
    word_error_rate,
)
from videoktr.rewards.base import RewardError, check_column, completion_text, register_reward, sample_name
from videoktr.rewards.length import length_bonus
from videoktr.rewards.tw_grpo import gold_letter_set, soft_choice_score, tw_soft_mc_reward

# ------------------------------------------------------------------------------------------------------- base


def test_reward_error_keeps_reward_and_sample():
    err = RewardError("accuracy", "row 3", "bad")
    assert (err.reward, err.sample, str(err)) == (
        "accuracy",
        "row 3",
        "reward 'accuracy' cannot score sample row 3: bad",
    )


def test_sample_name_past_the_problem_id_column():
    assert sample_name(1, ["a", "b"]) == "problem_id='b' (row 1)"
    assert (
        sample_name(2, ["a", "b"]) == "row 2"
    )  # index == len: no id to show (an `<=` would index past the end)


def test_completion_text_of_multimodal_and_odd_conversations():
    parts = [{"type": "image"}, {"type": "text", "text": "a"}, "junk", {"type": "text", "text": "b"}]
    assert completion_text([{"role": "assistant", "content": parts}]) == "ab"  # parts joined with nothing
    assert completion_text([{"role": "assistant"}]) == ""  # no content: empty text, not None
    assert (
        completion_text([{"role": "assistant", "content": "x"}, "junk"]) == "x"
    )  # non-dict messages skipped


def test_completion_text_errors():
    with pytest.raises(TypeError) as info:
        completion_text([{"role": "user", "content": "q"}])
    assert str(info.value) == "conversational completion has no assistant message to score"
    with pytest.raises(TypeError) as info:
        completion_text(3)
    assert str(info.value) == "completion must be a string or a list of messages, got int"
    with pytest.raises(TypeError) as info:
        completion_text([{"role": "assistant", "content": 3}])
    assert str(info.value) == "message content must be a string or a list of parts, got int"


def test_check_column_errors_name_the_reward():
    message = "reward 'acc' cannot score sample (all rows): the dataset has no 'solution' column; add it to every record"
    with pytest.raises(RewardError) as info:
        check_column("acc", "solution", None, 2)
    assert str(info.value) == message
    with pytest.raises(RewardError) as info:
        check_column("acc", "solution", ["x"], 2)
    assert (
        str(info.value)
        == "reward 'acc' cannot score sample (all rows): column 'solution' has 1 values for 2 completions"
    )


def test_register_reward_names_and_registers_the_function():
    @register_reward("_mutation_test_reward")
    def some_function(completions, **kwargs):
        return [1.0] * len(completions)

    try:
        assert some_function.__name__ == "_mutation_test_reward"  # TRL logs rewards/<__name__>/mean
        assert REWARDS.get("_mutation_test_reward") is some_function
    finally:
        REWARDS._items.pop("_mutation_test_reward", None)


# ------------------------------------------------------------------------------------------------ get_reward


def test_get_reward_path_errors():
    # "os:path:join": the module is everything before the first ':' (rpartition would import "os:path")
    with pytest.raises(UserError) as info:
        get_reward("os:path:join")
    assert str(info.value) == "reward 'os:path:join': module 'os' has no attribute 'path:join'"
    with pytest.raises(UserError) as info:
        get_reward("os:")
    assert str(info.value) == "reward 'os:': write 'package.module:function' or 'package.module.function'"
    with pytest.raises(UserError) as info:
        get_reward("math:pi")
    assert str(info.value) == "reward 'math:pi': 'pi' is a float, not a function"
    with pytest.raises(UnknownNameError, match="^unknown reward 'no_such_reward'; valid: "):
        get_reward("no_such_reward")


# -------------------------------------------------------------------------------------------------- accuracy


def test_numerical_compares_both_values_at_two_decimals():
    assert score_numerical("3.14", "3.14") == 1.0  # round(gold) without digits would give 3
    assert score_numerical("2.004", "2.001") == 1.0  # 2.00 == 2.00; 3 decimals would give 2.004 != 2.001


@pytest.mark.parametrize(
    "reference, hypothesis, wer",
    [
        ("", "a b", 2.0),  # nothing to match: 2 insertions over max(1, 0) words
        ("a b c", "", 1.0),  # 3 deletions / 3
        ("a", "b", 1.0),  # 1 substitution / 1 (a denominator of at least 2 would halve it)
        ("a", "a b c", 2.0),  # 2 insertions / 1: needs the insertion move current[j - 1] + 1
        ("a b c", "a x c", 1 / 3),
    ],
)
def test_word_error_rate(reference, hypothesis, wer):
    assert word_error_rate(reference, hypothesis) == pytest.approx(wer)


def test_no_answer_scores_zero():
    assert score_ocr(None, "a b") == 0.0
    assert score_free_form(None, "a b") == 0.0


def test_regression_relative_error_formula():
    # gold 0, pred 0: (0 + 1e-9) / (0 + 1e-9) = 1 -> score 0 (the authors' formula); flipping either eps sign gives -1
    # -> score 1.
    assert score_regression("0", "0") == 0.0
    with pytest.raises(GoldError) as info:
        score_regression("1", "abc")
    assert str(info.value) == "solution 'abc' is not a number"


def test_score_answer_errors():
    with pytest.raises(GoldError) as info:
        score_answer("essay", "x", "y")
    assert (
        str(info.value)
        == "unknown problem_type 'essay'; valid: multiple choice, numerical, OCR, free-form, regression"
    )
    with pytest.raises(GoldError) as info:
        score_answer("multiple choice", "A", "A", options=["cat"])
    assert str(info.value) == "option 'cat' does not start with a letter label like 'A.'"


# ---------------------------------------------------------------------------------------------------- length


def test_length_bonus_accepts_groups_of_one_and_equal_bounds():
    assert length_bonus([1.0, 0.0], [5, 5], group_size=1, min_len=5, max_len=5, min_correct=1) == [0.2, 0.0]
    with pytest.raises(ValueError) as info:
        length_bonus([1.0], [5], group_size=1, min_len=6, max_len=5)
    assert str(info.value) == "min_len=6 is above max_len=5; swap them"


# --------------------------------------------------------------------------------------------------- TW-GRPO


def test_soft_choice_and_gold_letters():
    with pytest.raises(ValueError) as info:
        soft_choice_score({"A"}, set())
    assert str(info.value) == "gold letter set is empty"
    # every option is gold: gold == valid is allowed (a strict-subset check would refuse it)
    assert gold_letter_set("<answer>A,B</answer>", ["A. cat", "B. dog"]) == {"A", "B"}


def test_tw_soft_mc_errors_name_the_reward():
    message = "reward 'tw_soft_mc' cannot score sample (all rows): the dataset has no 'solution' column; add it to every record"
    with pytest.raises(RewardError) as info:
        tw_soft_mc_reward(["<answer>A</answer>"])
    assert str(info.value) == message
    with pytest.raises(RewardError, match="^reward 'tw_soft_mc' cannot score sample row 0: "):
        tw_soft_mc_reward(["<answer>A</answer>"], solution=["<answer>a</answer>"])
