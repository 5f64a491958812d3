import pytest

from videoktr.rewards.format import format_reward


@pytest.mark.parametrize(
    "text, expected",
    [("<think>a\nb</think><answer>B</answer>", 1.0), ("  <think>a</think>\n\n<answer>B</answer>\n", 1.0),
     ("<think>a</think> <answer>multi\nline</answer>", 1.0), ("<answer>B</answer>", 0.0),
     ("<think>a</think>", 0.0), ("Sure! <think>a</think><answer>B</answer>", 0.0),
     ("<think>a</think><answer>B</answer> trailing", 0.0), ("<answer>B</answer><think>a</think>", 0.0)],
)  # fmt: skip
def test_format_reward(text, expected):
    assert format_reward([text]) == [expected]
    assert format_reward([[{"role": "assistant", "content": [{"type": "text", "text": text}]}]]) == [expected]
