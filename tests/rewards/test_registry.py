import pytest

from videoktr.core.registry import UnknownNameError
from videoktr.errors import UserError
from videoktr.rewards import REWARDS, accuracy_reward, format_reward, get_reward, tw_soft_mc_reward


def test_registered_names_and_trl_names():
    assert REWARDS.names() == [
        "accuracy", "format", "tw_exact_mc", "tw_format", "tw_soft_mc", "tw_soft_mc_lenient"
    ]  # fmt: skip
    for name in REWARDS.names():
        assert get_reward(name).__name__ == name  # TRL logs rewards/<__name__>/mean
    assert get_reward("accuracy") is accuracy_reward and get_reward("tw_soft_mc") is tw_soft_mc_reward


def test_dotted_paths():
    assert get_reward("videoktr.rewards.format:format_reward") is format_reward
    assert get_reward("videoktr.rewards.format.format_reward") is format_reward


def test_errors():
    with pytest.raises(UnknownNameError, match="valid: accuracy, format, tw_exact_mc, tw_format, tw_soft_mc"):
        get_reward("acc")
    with pytest.raises(UserError, match="cannot import module 'no_such_pkg'"):
        get_reward("no_such_pkg:f")
    with pytest.raises(UserError, match="has no attribute 'nope'"):
        get_reward("videoktr.rewards.format:nope")
    with pytest.raises(UserError, match="not a function"):
        get_reward("videoktr.rewards.format:FORMAT_PATTERN")
