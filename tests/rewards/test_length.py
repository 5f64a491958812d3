import pytest

from videoktr.rewards.length import length_bonus


def test_bonus_needs_correct_in_range_and_two_correct_in_group():
    # group 1 (rows 0-3): rows 0, 1 correct (> 0.1) -> 2 correct -> bonus for correct rows in 320..512:
    #   row 0 length 320 (edge, in) -> 0.2; row 1 length 513 (out) -> 0; row 2 incorrect -> 0; row 3 wrong (0.1 not > 0.1)
    # group 2 (rows 4-7): only row 4 correct -> no bonus anywhere
    accuracy = [1.0, 1.0, 0.0, 0.1, 1.0, 0.0, 0.0, 0.0]
    lengths = [320, 513, 400, 400, 400, 400, 400, 400]
    assert length_bonus(accuracy, lengths, group_size=4) == [0.2, 0, 0, 0, 0, 0, 0, 0]


def test_bonus_options():
    # min_correct=1 lets a lone correct completion earn it; custom range and amount
    assert length_bonus(
        [1.0, 0.0], [10, 10], group_size=2, min_len=5, max_len=10, bonus=0.5, min_correct=1
    ) == [
        0.5,
        0.0,
    ]
    # soft rewards: 0.5 > correct_threshold=0.4 counts as correct
    assert length_bonus([0.5, 0.5], [5, 5], 2, min_len=0, max_len=5, correct_threshold=0.4) == [0.2, 0.2]


def test_bonus_validates_shapes():
    with pytest.raises(ValueError, match="groups of group_size=3"):
        length_bonus([1.0] * 4, [1] * 4, group_size=3)
    with pytest.raises(ValueError, match="lengths has 3"):
        length_bonus([1.0] * 4, [1] * 3, group_size=2)
