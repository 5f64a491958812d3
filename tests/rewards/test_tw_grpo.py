"""TW-GRPO rewards against values worked out by hand from the authors' code (grpo.py ``accuracy_reward``,
``origin_accuracy_reward``, ``format_reward`` at aa529ff): first <answer> else whole text, spaces removed, split on
commas, |P|/|G| if P is a subset of G else 0."""

import pytest

from videoktr.rewards import get_reward
from videoktr.rewards.base import RewardError
from videoktr.rewards.format import tw_format_reward
from videoktr.rewards.tw_grpo import (
    answer_set,
    score_multi_answer,
    soft_choice_score,
    tw_exact_mc_reward,
    tw_soft_mc_lenient_reward,
    tw_soft_mc_reward,
)

GOLD = "<answer>A,C</answer>"
OPTIONS = ["A. red", "B. green", "C. blue", "D. yellow"]
# completion -> (authors' soft reward, binary reward, lenient soft reward), gold {A, C}
CASES = {
    "<think>x</think><answer>A</answer>": (0.5, 0.0, 0.5),
    "<think>x</think><answer>A, C</answer>": (1.0, 1.0, 1.0),
    "<answer>C,A</answer>": (1.0, 1.0, 1.0),
    "<answer>A,B</answer>": (0.0, 0.0, 0.0),  # B is not gold: not a subset
    "<answer>A. red</answer>": (0.0, 0.0, 0.5),  # {"A.red"}: not a letter for the authors
    "<answer>a</answer>": (0.0, 0.0, 0.0),  # lower case is not a gold piece
    "<answer></answer>": (0.0, 0.0, 0.0),  # {""}
    "A": (0.5, 0.0, 0.0),  # no tags: the authors read the whole text; the lenient reader needs tags
    "I think A, C": (0.0, 0.0, 0.0),  # whole text {"IthinkA", "C"}
    "<answer>A</answer> then <answer>A,C</answer>": (0.5, 0.0, 1.0),  # first pair vs last pair
    "<answer>A,A</answer>": (0.5, 0.0, 0.5),  # a set: {"A"}
    "<answer>A,C,</answer>": (0.0, 0.0, 1.0),  # trailing comma: {"A", "C", ""}
    "<answer>A\n,C</answer>": (1.0, 1.0, 1.0),  # pieces are stripped
    "<answer>A,E</answer>": (0.0, 0.0, 0.5),  # E is not an option: not a subset (lenient drops E)
}


def test_answer_set_is_the_authors_reading():
    assert answer_set("<answer> B , D </answer>") == {"B", "D"}
    assert answer_set("no tags A,B") == {"notagsA", "B"}
    assert answer_set("<answer>A</answer><answer>B</answer>") == {"A"}


@pytest.mark.parametrize(("completion", "expected"), list(CASES.items()))
def test_rewards_equal_hand_values(completion, expected):
    soft, exact, lenient = expected
    kwargs = {"solution": [GOLD], "options": [OPTIONS], "problem_id": ["q"]}
    assert tw_soft_mc_reward([completion], **kwargs) == [soft]
    assert tw_exact_mc_reward([completion], **kwargs) == [exact]
    assert tw_soft_mc_lenient_reward([completion], **kwargs) == [lenient]


def test_conversational_completions_and_registry():
    completion = [{"role": "assistant", "content": "<answer>C</answer>"}]
    assert tw_soft_mc_reward([completion], solution=["<answer>A, B, C</answer>"]) == [pytest.approx(1 / 3)]
    assert get_reward("tw_soft_mc") is tw_soft_mc_reward and get_reward("tw_exact_mc") is tw_exact_mc_reward
    assert get_reward("tw_format") is tw_format_reward


def test_single_answer_gold_is_exact_match():
    rewards = tw_soft_mc_reward(
        ["<answer>B</answer>", "<answer>B,C</answer>", "B"], solution=["<answer>B</answer>"] * 3
    )
    assert rewards == [1.0, 0.0, 1.0]


def test_soft_score_edges():
    assert soft_choice_score({"A"}, {"A", "B", "C"}) == pytest.approx(1 / 3)
    assert soft_choice_score(set(), {"A"}) == 0.0
    with pytest.raises(ValueError, match="empty"):
        soft_choice_score({"A"}, set())


@pytest.mark.parametrize(
    ("solution", "options", "message"),
    [
        ("<answer>A,E</answer>", OPTIONS, r"problem_id='bad'.*\['E'\] that are not among the options"),
        ("<answer>none</answer>", None, r"problem_id='bad'.*not option letters: \['none'\]"),
        ("<answer>A, red</answer>", None, "not option letters"),
        (None, None, "missing solution"),
    ],
)
def test_bad_gold_is_refused_with_the_record_id(solution, options, message):
    for reward in (tw_soft_mc_reward, tw_exact_mc_reward, tw_soft_mc_lenient_reward):
        with pytest.raises(RewardError, match=message):
            reward(["<answer>A</answer>"], solution=[solution], options=[options], problem_id=["bad"])


def test_missing_solution_column_is_refused():
    with pytest.raises(RewardError, match="no 'solution' column"):
        tw_soft_mc_reward(["<answer>A</answer>"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think><answer>B</answer>", 1.0),
        ("<think>a</think>\n<answer>B</answer>\n", 1.0),
        ("Sure. <think>a</think> <answer>B</answer>!!", 1.0),  # re.search: text before <think> allowed
        ("<think>a</think><answer>B</answer> trailing", 0.0),  # only spaces/! may follow </answer>
        ("<think>a</think><think>b</think><answer>B</answer>", 0.0),  # duplicate tags
        ("<think>a</think><answer>B</answer><answer>C</answer>", 0.0),
        ("<answer>B</answer>", 0.0),
    ],
)
def test_tw_format_is_the_authors_check(text, expected):
    assert tw_format_reward([text]) == [expected]


def test_eval_scoring_strict_and_partial():
    gold = {"A", "C"}
    assert score_multi_answer("<answer>A</answer>", gold) == {
        "prediction": "A",
        "partial": 0.5,
        "strict": False,
    }
    assert score_multi_answer("<answer>C, A</answer>", gold)["strict"]
    # no tags: the authors' evaluation reads "Answer: A, C", else nothing (which scores 0)
    assert score_multi_answer("so the Answer: A, C", gold) == {
        "prediction": "A, C",
        "partial": 1.0,
        "strict": True,
    }
    assert score_multi_answer("A, C", gold) == {"prediction": "", "partial": 0.0, "strict": False}
