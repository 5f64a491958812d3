import json
import re
from collections import Counter

import numpy as np
import pytest
import torch

from videoktr.data.prompts import build_question
from videoktr.data.schema import validate_dataset
from videoktr.data.synthetic import (
    _CHECKS,
    _CLOSERS,
    _OPENERS,
    BACKGROUND,
    COLORS,
    EVIDENCE_LEXICON,
    FILLER_WORDS,
    QUESTION_KINDS,
    label_evidence_words,
    make_synthetic,
    synthetic_corpus,
)
from videoktr.data.video import VideoSamplingConfig, decode_video
from videoktr.errors import UserError

ALL_KINDS = ("color", "count", "first_color", "direction", "after")
EIGHT = VideoSamplingConfig(num_frames=8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """10 train + 5 test records, two of each kind in train."""
    return make_synthetic(tmp_path_factory.mktemp("syn") / "a", n_train=10, n_test=5, seed=7, kinds=ALL_KINDS)


def load(path):
    return json.loads(path.read_text())


def answer_option(record) -> str:
    letter = re.fullmatch(r"<answer>([A-D])</answer>", record["solution"]).group(1)
    return record["options"]["ABCD".index(letter)][3:]


def colors_present(frame: torch.Tensor) -> dict[str, torch.Tensor]:
    """Colour name -> boolean mask (H, W) of its pixels, for colours covering at least 100 px (a square is >= 196)."""
    pixels = frame.permute(1, 2, 0).int()
    masks = {name: (pixels - torch.tensor(rgb)).abs().max(-1).values <= 40 for name, rgb in COLORS.items()}
    return {name: mask for name, mask in masks.items() if mask.sum() >= 100}


def first_frames(frames: torch.Tensor) -> dict[str, int]:
    """Colour -> first frame index where it is visible."""
    first: dict[str, int] = {}
    for t, frame in enumerate(frames):
        for name in colors_present(frame):
            first.setdefault(name, t)
    return first


def check_pixels(record, frames: torch.Tensor) -> None:
    kind, answer = record["question_kind"], answer_option(record)
    present = [colors_present(f) for f in frames]
    if kind == "color":
        assert all(list(p) == [answer] for p in present)
    elif kind == "count":
        assert all(len(p) == int(answer) for p in present)
    elif kind == "first_color":
        first = first_frames(frames)
        assert len(first) == 2 and min(first, key=first.get) == answer
        assert all(len(p) == 1 for p in present)  # one square at a time: order is the only cue
    elif kind == "direction":
        centres = []
        for p in present:
            [(name, mask)] = p.items()
            ys, xs = torch.nonzero(mask, as_tuple=True)
            centres.append((ys.float().mean().item(), xs.float().mean().item()))
        dy, dx = centres[-1][0] - centres[0][0], centres[-1][1] - centres[0][1]
        moved = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
        assert moved == answer and max(abs(dx), abs(dy)) >= 2 * (len(frames) - 1)  # >= 2 px per frame
    elif kind == "after":
        asked = re.search(r"after the (\w+) square", record["problem"]).group(1)
        order = sorted(first_frames(frames).items(), key=lambda item: item[1])
        names = [name for name, _ in order]
        assert len(names) == 3 and names[names.index(asked) + 1] == answer
    else:
        raise AssertionError(f"untested kind {kind}")


def test_labels_agree_with_the_pixels(dataset):
    records = load(dataset["train_sft"]) + load(dataset["test"])
    assert {r["question_kind"] for r in records} == set(ALL_KINDS)
    for record in records:
        frames = decode_video(dataset["root"] / record["path"], EIGHT).frames
        assert frames.shape == (8, 3, 56, 112)
        check_pixels(record, frames)
        distance = (frames.permute(0, 2, 3, 1).int() - torch.tensor(BACKGROUND)).abs().max(-1).values
        assert (distance <= 6).float().mean() > 0.6  # mostly background (4 squares of 20 px cover < 30%)


def test_records_are_valid_video_r1_records(dataset):
    assert validate_dataset(dataset["train"], dataset["root"], kind="rl", sampling=EIGHT).ok
    assert validate_dataset(dataset["train_sft"], dataset["root"], kind="sft", sampling=EIGHT).ok
    assert validate_dataset(dataset["test"], dataset["root"], kind="sft", decode=False).ok
    rl, sft = load(dataset["train"]), load(dataset["train_sft"])
    sft_only = ("process", "evidence_spans", "counterfactual_spans")
    assert all(k not in r for r in rl for k in sft_only)
    assert [{k: v for k, v in r.items() if k not in sft_only} for r in sft] == rl
    for record in sft:
        kind = QUESTION_KINDS.get(record["question_kind"])
        assert record["family"] == kind.family and record["options"] == list(kind.options)


def test_same_seed_same_bytes_and_frames(dataset, tmp_path):
    again = make_synthetic(tmp_path / "b", n_train=10, n_test=5, seed=7, kinds=ALL_KINDS)
    for name in ("train", "train_sft", "test"):
        assert dataset[name].read_bytes() == again[name].read_bytes()
    for record in load(again["train"]) + load(again["test"]):
        first = decode_video(dataset["root"] / record["path"], EIGHT).frames
        second = decode_video(again["root"] / record["path"], EIGHT).frames
        assert torch.equal(first, second)
    other = make_synthetic(tmp_path / "c", n_train=10, n_test=0, seed=8, kinds=ALL_KINDS)
    assert other["train_sft"].read_bytes() != dataset["train_sft"].read_bytes()


def test_answer_letters_are_balanced_per_kind(tmp_path):
    records = load(make_synthetic(tmp_path, n_train=40, n_test=0, seed=1)["train"])
    kinds = Counter(r["question_kind"] for r in records)
    assert kinds == {"color": 10, "count": 10, "first_color": 10, "direction": 10}
    for kind in kinds:
        letters = Counter(r["solution"] for r in records if r["question_kind"] == kind)
        # 10 answers over 4 letters: each letter 2 or 3 times
        assert set(letters) == {f"<answer>{x}</answer>" for x in "ABCD"} and set(letters.values()) <= {2, 3}


def test_evidence_spans_point_at_lexicon_words(dataset):
    for record in load(dataset["train_sft"]) + load(dataset["test"]):
        process, spans = record["process"], record["evidence_spans"]
        assert spans == [{"start": a, "end": b, "kind": k} for a, b, k in label_evidence_words(process)]
        for span in spans:
            assert process[span["start"] : span["end"]].lower() in EVIDENCE_LEXICON[span["kind"]]
        kinds = {span["kind"] for span in spans}
        assert "visual" in kinds
        # static questions need no temporal word; temporal ones always state one
        assert ("temporal" in kinds) == (record["family"] == "temporal"), process
        assert 15 <= len(re.findall(r"[A-Za-z0-9]+", process)) <= 35


def test_label_evidence_words_on_free_text():
    text = "Hmm, the RED square moved left; then 3 squares. Alright, right?"
    labelled = [(text[a:b], k) for a, b, k in label_evidence_words(text)]
    assert labelled == [
        ("RED", "visual"),
        ("square", "visual"),
        ("moved", "temporal"),
        ("left", "temporal"),
        ("then", "temporal"),
        ("3", "visual"),
        ("squares", "visual"),
        ("right", "temporal"),  # "Alright" is not "right": whole words only
    ]


def test_every_template_word_is_evidence_or_filler():
    assert not (EVIDENCE_LEXICON["visual"] & EVIDENCE_LEXICON["temporal"])
    lexicon = EVIDENCE_LEXICON["visual"] | EVIDENCE_LEXICON["temporal"]
    assert not (lexicon & FILLER_WORDS)
    slot_values = {
        "c": ["red", "green", "blue", "yellow"],
        "n": ["one", "two", "three", "four"],
        "noun": ["square", "squares"],
        "be": ["is", "are"],
        "d": ["left", "right", "up", "down"],
        "cs": ["red", "red and blue", "green, blue and yellow", "red, green, blue and yellow"],
        "seq": ["red, green", "blue, yellow, red", "green, red, blue, yellow", "yellow, blue"],
    }
    sentences = [*_OPENERS, *_CHECKS, *(c.format(letter="A") for c in _CLOSERS)]
    for name in QUESTION_KINDS.names():
        for template in QUESTION_KINDS.get(name).evidence:
            for i in range(4):
                values = {k: v[i % len(v)] for k, v in slot_values.items()}
                values.update({k: slot_values["c"][i] for k in ("a", "b", "c1", "c2", "c3", "x", "ans")})
                sentences.append(template.format(**values))
    words = {w.lower() for s in sentences for w in re.findall(r"[A-Za-z0-9]+", s)}
    assert words - lexicon - FILLER_WORDS == set()
    # the template-only filler really is used, and evidence words really occur
    assert {"red", "first", "moves", "count"} <= words


def test_corpus_covers_prompts_reasoning_and_answers(dataset):
    records = load(dataset["train_sft"])
    corpus = synthetic_corpus(records)
    assert len(corpus) == len(set(corpus))
    for record in records:
        assert build_question(record, "short") in corpus
        assert record["process"] in corpus and record["solution"] in corpus
        assert all(option in corpus for option in record["options"])
    assert build_question(records[0], "video-r1") in synthetic_corpus(records, template="video-r1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_frames": 7}, "num_frames=7"),
        ({"num_frames": 4, "kinds": ["after"]}, "num_frames=4 must be even and >= 6"),
        ({"height": 57}, "even"),
        ({"height": 24, "width": 48}, "fewer than 4 squares"),
        (
            {"kinds": ["colour"]},
            "unknown question kind.*valid: after, color, colors, colors_after, count, direction, first_color",
        ),
        ({"kinds": []}, "kinds is empty"),
        ({"num_frames": 16, "height": 48}, "raise height"),
    ],
)
def test_bad_settings_are_user_errors(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        make_synthetic(tmp_path, n_train=2, n_test=0, seed=0, **kwargs)
    assert not list(tmp_path.iterdir())  # nothing written


def test_other_sizes_keep_labels_consistent(tmp_path):
    out = make_synthetic(
        tmp_path, n_train=5, n_test=0, seed=3, num_frames=6, height=64, width=96, kinds=ALL_KINDS
    )
    for record in load(out["train"]):
        frames = decode_video(out["root"] / record["path"], VideoSamplingConfig(num_frames=6)).frames
        assert frames.shape == (6, 3, 64, 96)
        check_pixels(record, frames)
    np.testing.assert_array_equal(sorted(r["question_kind"] for r in load(out["train"])), sorted(ALL_KINDS))
