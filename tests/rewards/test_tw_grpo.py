import random

import pytest

from videoktr.rewards.base import RewardError
from videoktr.rewards.tw_grpo import invert_question, negate_question, soft_choice_score, tw_soft_mc_reward

RECORD = {
    "problem_id": "q1",
    "problem": "What did the man do first?",
    "problem_type": "multiple choice",
    "options": ["A. run", "B. jump", "C. sit", "D. eat"],
    "solution": "<answer>B</answer>",
}


def test_soft_score():
    gold = {"A", "C"}
    assert soft_choice_score({"A"}, gold) == 0.5  # subset of size 1 of 2
    assert soft_choice_score({"A", "C"}, gold) == 1.0
    assert soft_choice_score({"A", "B"}, gold) == 0.0  # B is not gold
    assert soft_choice_score(set(), gold) == 0.0


def test_soft_reward_reads_completions_and_solutions():
    completions = ["<answer>A</answer>", "<answer>A, C</answer>", "<answer>A, B</answer>", "no answer"]
    rewards = tw_soft_mc_reward(completions, solution=["<answer>A, C</answer>"] * 4)
    assert rewards == [0.5, 1.0, 0.0, 0.0]


def test_soft_reward_error_names_sample():
    with pytest.raises(RewardError, match="tw_soft_mc.*problem_id='x'.*no letter"):
        tw_soft_mc_reward(["<answer>A</answer>"], solution=["<answer>none</answer>"], problem_id=["x"])


def test_negate_question():
    assert negate_question("What did the man do?") == "What didn't the man do?"
    assert negate_question("Is the cup red?") == "Isn't the cup red?"
    assert negate_question("Which color dominates?") is None


@pytest.mark.parametrize("seed", range(8))
def test_inversion_makes_the_old_answer_the_only_wrong_option(seed):
    out = invert_question(RECORD, random.Random(seed), probability=1.0)
    assert out["qa_inverted"] and out["problem"] == "What didn't the man do first?"
    texts = {opt[0]: opt[3:] for opt in out["options"]}
    assert list(texts) == [chr(ord("A") + k) for k in range(len(texts))]  # relabelled A, B, ...
    correct = set(out["solution"][len("<answer>") : -len("</answer>")].split(", "))
    wrong = set(texts) - correct
    assert [texts[w] for w in wrong] == ["jump"]  # the former answer is the only wrong option
    assert 1 <= len(correct) <= 3 and {texts[c] for c in correct} <= {"run", "sit", "eat"}
    # the soft reward of predicting the full correct set is 1
    assert tw_soft_mc_reward(
        [f"<answer>{', '.join(sorted(correct))}</answer>"], solution=[out["solution"]]
    ) == [1.0]
    assert RECORD["options"][1] == "B. jump"  # input not modified


def test_inversion_coin_and_non_negatable_questions_leave_record_unchanged():
    kept = invert_question(RECORD, random.Random(0), probability=0.0)
    assert not kept["qa_inverted"] and kept["solution"] == RECORD["solution"]
    plain = invert_question(dict(RECORD, problem="Which color dominates?"), random.Random(0), probability=1.0)
    assert not plain["qa_inverted"]
    rng = random.Random(123)
    flips = sum(invert_question(RECORD, rng)["qa_inverted"] for _ in range(400))
    assert 150 < flips < 250  # probability 0.5


def test_inversion_rejects_non_multiple_choice():
    with pytest.raises(ValueError, match="multiple-choice"):
        invert_question(dict(RECORD, problem_type="numerical"), random.Random(0))
