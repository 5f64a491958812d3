"""Question-Answer Inversion against the authors' scripts' rules (convert_nextgqa.py / convert_star.py)."""

import json
import re
from pathlib import Path

import pytest

from videoktr.cli import main
from videoktr.data.qai import (
    KEPT_COIN,
    KEPT_FEW_OPTIONS,
    KEPT_NO_RULE,
    KEPT_NOT_SINGLE,
    invert_records,
    negate_nextgqa,
    negate_star,
)
from videoktr.errors import UserError
from videoktr.rewards.tw_grpo import answer_set, gold_letter_set

FIXTURES = Path(__file__).parents[1] / "fixtures" / "qai"
NEXTGQA = json.loads((FIXTURES / "nextgqa_raw.json").read_text())
STAR = json.loads((FIXTURES / "star_video_r1.json").read_text())


@pytest.mark.parametrize(
    ("question", "negated"),
    [  # the authors' mixed file negates exactly the second word
        ("why did the boy pick up one present", "why didn't the boy pick up one present"),
        ("what does the white dog do after going to the cushion", "what doesn't the white dog do after going to the cushion"),
        ("why is the boy in yellow reaching out", "why isn't the boy in yellow reaching out"),
        ("how did the white dog respond", "how didn't the white dog respond"),
        ("where are the children", "where aren't the children"),
        ("Why Did the boy run?", "Why Didn't the boy run?"),  # case kept (the scripts lower-case everything)
        ("how many people are on the boat", None),
        ("did", None),
    ],
)  # fmt: skip
def test_nextgqa_rule(question, negated):
    assert negate_nextgqa(question) == negated


@pytest.mark.parametrize(
    ("question", "negated"),
    [
        ("What did the person do with the towel?", "What didn't the person do with the towel?"),
        ("What happened after the person closed the door?", "What didn't happen after the person closed the door?"),
        ("What will the person do next with the book?", "What won't the person do next with the book?"),
        ("Did the person sit?", "Didn't the person sit?"),
        # extensions (the authors' position checks miss these STAR templates)
        ("Which object was tidied up by the person?", "Which object wasn't tidied up by the person?"),
        ("Which object is the person able to take?", "Which object is the person unable to take?"),
        ("Which color is the towel?", None),
    ],
)  # fmt: skip
def test_star_rule(question, negated):
    assert negate_star(question) == negated


def _texts(options, pattern):
    return [re.match(pattern, o).group(1) for o in options]


@pytest.mark.parametrize("seed", range(6))
def test_nextgqa_round_trip(seed):
    out, report = invert_records(NEXTGQA, probability=1.0, seed=seed)
    assert report.inverted == 4 and dict(report.kept) == {KEPT_NO_RULE: 1}
    assert report.kept_ids[KEPT_NO_RULE] == ["1002_3"]
    for before, after in zip(NEXTGQA, out):
        if not after["is_negated"]:
            assert after == dict(before, is_negated=False)  # kept unchanged (the scripts would invert it)
            continue
        undo = {"didn't": "did", "doesn't": "does", "isn't": "is", "aren't": "are"}
        words = after["question"].split()
        words[1] = undo[words[1]]
        assert " ".join(words) == before["question"]
        old = _texts(before["options"], r"\(\w\) (.*)")
        new = _texts(after["options"], r"\(\w\) (.*)")
        assert [o[:3] for o in after["options"]] == [f"({chr(65 + k)})" for k in range(len(new))]
        gold_text = old[ord(before["answer"][1]) - 65]
        correct = {chr(65 + k) for k, text in enumerate(new) if text != gold_text}
        assert set(new) <= set(old) and gold_text in new and 2 <= len(new) <= len(old)
        assert after["answer"] == ",".join(f"({c})" for c in sorted(correct))
        assert after["solution"] == f"<answer>{','.join(sorted(correct))}</answer>"
        assert answer_set(after["solution"]) == correct  # the soft reward reads it back
        lines = after["problem"].split("\n")
        assert lines[0] == after["question"] and lines[1:] == [
            f"{chr(65 + k)} {t}" for k, t in enumerate(new)
        ]
    assert NEXTGQA[0]["options"][0] == "(A) find a toy"  # input untouched


@pytest.mark.parametrize("seed", range(6))
def test_star_round_trip_and_reasons(seed):
    out, report = invert_records(STAR, probability=1.0, seed=seed, rules="auto")
    assert report.inverted == 5
    assert dict(report.kept) == {KEPT_NOT_SINGLE: 1, KEPT_NO_RULE: 1}
    for before, after in zip(STAR, out):
        if not after["is_negated"]:
            assert after == dict(before, is_negated=False)
            continue
        old = _texts(before["options"], r"\w\. (.*)")
        new = _texts(after["options"], r"\w\. (.*)")
        gold_text = old[ord(before["solution"][8]) - 65]
        assert new.count(gold_text) == 1 and set(new) <= set(old)
        correct = gold_letter_set(after["solution"], after["options"])
        assert {new[ord(c) - 65] for c in correct} == set(new) - {gold_text}


def test_coin_probability_and_seed():
    records = [dict(STAR[0], problem_id=i) for i in range(400)]
    out, report = invert_records(records, probability=0.5, seed=3)
    assert 160 < report.inverted < 240 and dict(report.kept) == {KEPT_COIN: 400 - report.inverted}
    again, _ = invert_records(records, probability=0.5, seed=3)
    assert again == out
    none, report0 = invert_records(records, probability=0.0, seed=3)
    assert report0.inverted == 0 and all(r == dict(s, is_negated=False) for r, s in zip(none, records))


def test_few_options_and_bad_records():
    one = dict(STAR[0], options=["A. Took."], solution="<answer>A</answer>")
    _, report = invert_records([one], probability=1.0)
    assert dict(report.kept) == {KEPT_FEW_OPTIONS: 1}
    with pytest.raises(UserError, match="record 50001: answer \\['E'\\] is not among its option letters"):
        invert_records([dict(STAR[0], solution="<answer>E</answer>")], probability=1.0)
    with pytest.raises(UserError, match="record 1000_1: option 'A. x' should be labelled '\\(A\\) text'"):
        invert_records([dict(NEXTGQA[0], options=["A. x", "B. y"])])
    with pytest.raises(UserError, match="--prob 1.5"):
        invert_records(STAR, probability=1.5)


def test_cli(tmp_path, capsys):
    out = tmp_path / "mixed.json"
    assert main(["qai", "--in", str(FIXTURES / "star_video_r1.json"), "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    records = json.loads(out.read_text())
    inverted = sum(r["is_negated"] for r in records)
    assert f"7 records: {inverted} inverted, {7 - inverted} kept unchanged" in printed
    assert "kept, not drawn (coin)" in printed
    assert main(["qai", "--in", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
