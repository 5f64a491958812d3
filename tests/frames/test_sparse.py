import json

import numpy as np
import pytest

from videoktr.errors import UserError
from videoktr.frames.sparse import (
    SparseConfig,
    distractor_units,
    is_sufficient,
    make_sparse,
    sufficient_view,
)


def test_sufficiency_rule_hand_built_cases():
    rule = {"all_of": [[4, 5], [10, 11]]}  # the X segment and the next colour's segment
    assert is_sufficient(rule, [4, 10])
    assert is_sufficient(rule, [0, 1, 5, 6, 11, 15])  # one frame of each segment is enough
    assert not is_sufficient(rule, [4, 5, 6, 7])  # X only
    assert not is_sufficient(rule, [10, 11])  # the answer's segment only
    assert not is_sufficient(rule, [])
    assert is_sufficient({"all_of": [[0, 1]]}, [1, 9])  # "first": the first colour's segment
    with pytest.raises(ValueError):
        is_sufficient({"all_of": []}, [1])


def test_records_carry_evidence_matching_the_video(sparse_data, sparse_records):
    from videoktr.data.video import VideoSamplingConfig, decode_video

    train, _ = sparse_records
    for record in train:
        video = decode_video(sparse_data["root"] / record["path"], VideoSamplingConfig(num_frames=16))
        frames = video.frames.float()
        lit = [(frames[t] - frames[t].median()).abs().amax() > 40 for t in range(16)]
        shown = sorted(t for t in range(16) if lit[t])
        units = sorted(record["color_units"].values())
        assert shown == [f for u in units for f in (2 * u, 2 * u + 1)]  # four 2-frame segments, rest empty
        assert set(record["evidence_frames"]) <= set(shown)
        groups = record["evidence_rule"]["all_of"]
        assert sorted(f for g in groups for f in g) == record["evidence_frames"]
        order = sorted(record["color_units"], key=record["color_units"].get)
        answer = "ABCD"[
            "red green blue yellow".split().index(
                order[0]
                if record["question_kind"] == "sparse_first"
                else order[order.index(record["problem"].split("the ")[1].split(" square")[0]) + 1]
            )
        ]
        assert record["solution"] == f"<answer>{answer}</answer>"


def test_same_seed_same_bytes(tmp_path):
    a = make_sparse(tmp_path / "a", 4, 2, seed=3)
    b = make_sparse(tmp_path / "b", 4, 2, seed=3)
    assert a["train"].read_bytes() == b["train"].read_bytes()
    assert (tmp_path / "a/videos/test-0001.mp4").read_bytes() == (
        tmp_path / "b/videos/test-0001.mp4"
    ).read_bytes()
    c = make_sparse(tmp_path / "c", 4, 2, seed=4)
    assert a["train"].read_bytes() != c["train"].read_bytes()


def test_sufficient_view_satisfies_the_rule(sparse_records):
    train, _ = sparse_records
    rng = np.random.default_rng(0)
    for record in train:
        frames = sufficient_view(record, list(range(16)), 2, 3, rng)
        assert len(frames) == 6 and frames == sorted(frames)
        assert is_sufficient(record["evidence_rule"], frames)


def test_distractor_views_show_the_other_squares(sparse_records):
    train, _ = sparse_records
    rng = np.random.default_rng(0)
    for record in train:
        evidence = {f // 2 for f in record["evidence_frames"]}
        others = sorted(set(record["color_units"].values()) - evidence)
        assert distractor_units(record, list(range(16)), 2) == others
        frames = sufficient_view(record, list(range(16)), 2, 3, rng, prefer=others)
        assert is_sufficient(record["evidence_rule"], frames) and len(frames) == 6
        units = {f // 2 for f in frames}
        # the evidence, then as many of the other squares as fit (3 units: 1 or 2 of them)
        assert len(units & set(others)) == min(len(others), 3 - len(evidence))
    # hand-built: squares in 2-frame units 0, 1, 5, 7, evidence units 1 and 5; 8 candidates = every other frame,
    # so candidate unit u holds frames 4u and 4u + 2: red (frames 0, 1) shares candidate unit 0 with the evidence
    # frame 2, so only yellow (frames 14, 15 -> candidate unit 3) is a distractor
    record = {
        "evidence_rule": {"all_of": [[2, 3], [10, 11]]},
        "color_units": {"red": 0, "green": 1, "blue": 5, "yellow": 7},
    }
    assert distractor_units(record, [0, 2, 4, 6, 8, 10, 12, 14], 2) == [3]
    assert distractor_units(record, list(range(16)), 2) == [0, 7]
    # prefer=() draws exactly what the former random fill drew (the oracle selector is unchanged)
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    view = sufficient_view(train[0], list(range(16)), 2, 3, a)
    assert view == sufficient_view(train[0], list(range(16)), 2, 3, b, prefer=())


def test_bad_config_refused():
    with pytest.raises(UserError, match="multiple of unit"):
        SparseConfig(num_frames=6)
    with pytest.raises(UserError, match="kinds"):
        SparseConfig(kinds=("color",))
    json.dumps(SparseConfig().__dict__)


def test_insufficient_view_misses_the_rule(sparse_records):
    from videoktr.frames.sparse import insufficient_view

    rng = np.random.default_rng(0)
    for record in sparse_records[0]:
        frames = insufficient_view(record, list(range(16)), 2, 3, rng)
        assert (
            len(frames) == 6
            and frames == sorted(frames)
            and not is_sufficient(record["evidence_rule"], frames)
        )
        assert all(f // 2 == frames[i - i % 2] // 2 for i, f in enumerate(frames))  # whole 2-frame units
    # every 8-unit combination holds all the evidence: no insufficient view exists
    assert insufficient_view(sparse_records[0][0], list(range(16)), 2, 8, rng) is None
