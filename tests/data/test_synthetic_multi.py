"""Multi-answer synthetic kinds: labels agree with the pixels, answer sets are balanced, prompts need a
multi-answer template."""

import json
import re
from collections import Counter

import pytest

from videoktr.data.prompts import build_question
from videoktr.data.schema import validate_dataset, validate_record
from videoktr.data.synthetic import COLOR_NAMES, make_synthetic
from videoktr.data.synthetic_multi import ANSWER_SETS, PROPER_SETS
from videoktr.data.video import VideoSamplingConfig, decode_video
from videoktr.errors import UserError
from videoktr.rewards.tw_grpo import gold_letter_set

from .test_synthetic import colors_present, first_frames

EIGHT = VideoSamplingConfig(num_frames=8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_synthetic(
        tmp_path_factory.mktemp("multi"), n_train=30, n_test=4, seed=5, kinds=("colors", "colors_after")
    )


def gold_colors(record) -> set[str]:
    return {
        COLOR_NAMES["ABCD".index(letter)] for letter in gold_letter_set(record["solution"], record["options"])
    }


def test_labels_agree_with_the_pixels(dataset):
    records = json.loads(dataset["train_sft"].read_text())
    assert Counter(r["question_kind"] for r in records) == {"colors": 15, "colors_after": 15}
    for record in records:
        frames = decode_video(dataset["root"] / record["path"], EIGHT).frames
        gold = gold_colors(record)
        assert re.fullmatch(r"<answer>[A-D](,[A-D])*</answer>", record["solution"])
        if record["question_kind"] == "colors":
            assert record["family"] == "static"
            assert all(set(colors_present(f)) == gold for f in frames)  # every frame answers it
        else:
            assert record["family"] == "temporal"
            asked = re.search(r"after the (\w+) square", record["problem"]).group(1)
            order = [name for name, _ in sorted(first_frames(frames).items(), key=lambda item: item[1])]
            assert set(order[order.index(asked) + 1 :]) == gold and asked not in gold
            assert all(len(colors_present(f)) == 1 for f in frames)  # one square at a time: order is the cue


def test_answer_sets_are_balanced(dataset):
    records = json.loads(dataset["train"].read_text())
    for kind, sets in (("colors", ANSWER_SETS), ("colors_after", PROPER_SETS)):
        seen = Counter(r["solution"] for r in records if r["question_kind"] == kind)
        assert len(seen) == min(15, len(sets)) and max(seen.values()) <= 2  # 15 records over 15 or 14 sets
    sizes = Counter(len(gold_colors(r)) for r in records if r["question_kind"] == "colors")
    assert sizes == {1: 4, 2: 6, 3: 4, 4: 1}


def test_records_are_valid_and_need_a_multi_answer_template(dataset):
    assert validate_dataset(dataset["train"], dataset["root"], kind="rl", sampling=EIGHT).ok
    assert validate_dataset(dataset["train_sft"], dataset["root"], kind="sft", decode=False).ok
    records = json.loads(dataset["train"].read_text())
    multi = next(r for r in records if "," in r["solution"])
    assert build_question(multi, "short-multi").endswith("separated by commas if several.")
    with pytest.raises(UserError, match=f"record {multi['problem_id']}: several correct letters.*'short'"):
        build_question(multi, "short")


def test_frames_needed(tmp_path):
    with pytest.raises(UserError, match="num_frames=6 must be even and >= 8"):
        make_synthetic(tmp_path, n_train=2, n_test=0, seed=0, num_frames=6, kinds=["colors_after"])


@pytest.mark.parametrize(
    ("solution", "problem"),
    [
        ("<answer>A,E</answer>", "answer 'A,E' is not one of the option letters A, B, C, D (or several"),
        ("<answer>A,A</answer>", "answer 'A,A' is not one of the option letters"),
        ("<answer>A,,C</answer>", "answer 'A,,C' is not one of the option letters"),
    ],
)
def test_bad_multi_answer_records_are_refused(dataset, solution, problem):
    record = dict(json.loads(dataset["train"].read_text())[0], solution=solution)
    problems = validate_record(record)
    assert len(problems) == 1 and problem in problems[0]
    assert validate_record(dict(record, solution="<answer>A, C</answer>")) == []
