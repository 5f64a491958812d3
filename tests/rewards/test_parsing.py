import pytest

from videoktr.rewards.parsing import (
    extract_answer,
    extract_letter,
    extract_letter_set,
    has_decimal_or_comma,
    option_letters,
    parse_number,
)


def test_extract_answer_takes_the_last_tag_pair():
    text = "<think>I could write <answer>A</answer> here</think><answer> C </answer>"
    assert extract_answer(text) == "C"


def test_extract_answer_without_tags_is_none_unless_fallback():
    assert extract_answer("The answer is B") is None
    assert extract_answer("  The answer is B \n", fallback_to_text=True) == "The answer is B"
    assert extract_answer("<answer>unclosed") is None


@pytest.mark.parametrize(
    "answer, letter",
    [("B", "B"), ("B.", "B"), ("(B)", "B"), ("B. the dog", "B"), ("B) dog", "B"), ("Option B", "B"),
     ("answer: C", "C"), ("The answer is D", "D"), ("a dog", None), ("dog", None), ("", None), (None, None),
     ("Answer is unclear", None), ("AB", None)],
)  # fmt: skip
def test_extract_letter_forms(answer, letter):
    assert extract_letter(answer) == letter


def test_extract_letter_outside_the_options_counts_as_none():
    assert extract_letter("E", valid={"A", "B", "C", "D"}) is None
    assert extract_letter("I think B", valid={"A", "B", "C", "D"}) is None  # leading "I" is not an option


def test_option_letters_and_letter_sets():
    assert option_letters(["A. cat", "B) dog", "(C) cow"]) == {"A", "B", "C"}
    assert option_letters(None) is None
    with pytest.raises(ValueError, match="letter label"):
        option_letters(["cat"])
    assert extract_letter_set("A, C") == {"A", "C"}
    assert extract_letter_set("A and C", valid={"A", "B"}) == {"A"}
    assert extract_letter_set(None) == set()


@pytest.mark.parametrize(
    "text, value",
    [("3", 3.0), ("3.0", 3.0), ("1,000", 1000.0), (" -2.5 ", -2.5), ("abc", None), ("", None), (None, None),
     ("nan", None), ("inf", None)],
)  # fmt: skip
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_decimal_or_comma():
    assert has_decimal_or_comma("3.0") and has_decimal_or_comma("1,000") and not has_decimal_or_comma("3")
