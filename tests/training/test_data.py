"""prepare_rl_rows: Video-R1 records -> TRL conversational rows; unusable videos are skipped and counted."""

from __future__ import annotations

import json

import pytest

from videoktr.data.video import VideoSamplingConfig
from videoktr.errors import UserError
from videoktr.training.data import REWARD_COLUMNS, prepare_rl_rows

SAMPLING = VideoSamplingConfig(num_frames=4, max_pixels=56 * 112)


@pytest.fixture(scope="module")
def records(synthetic_data):
    return json.loads(synthetic_data["train"].read_text())


def test_rows_are_conversational_video_prompts_with_reward_columns(records, synthetic_data):
    prepared = prepare_rl_rows(records, synthetic_data["root"], SAMPLING, "short")
    assert prepared.skipped == [] and len(prepared.rows) == len(records)
    for row, record in zip(prepared.rows, records, strict=True):
        (message,) = row["prompt"]
        video, text = message["content"]
        assert message["role"] == "user" and video["type"] == "video" and text["type"] == "text"
        # the path is resolved against the data root
        assert video["video"] == str(synthetic_data["root"] / record["path"])
        assert record["problem"] in text["text"]
        columns = [k for k in REWARD_COLUMNS if k in record]
        assert {k: row[k] for k in columns} == {k: record[k] for k in columns}


def test_missing_and_undecodable_videos_are_skipped_never_substituted(records, synthetic_data, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    bad = [
        {**records[0], "problem_id": "gone", "path": "videos/gone.mp4"},
        {**records[0], "problem_id": "broken", "path": str(broken)},  # absolute paths are kept as they are
    ]
    prepared = prepare_rl_rows(
        [bad[0], records[0], bad[1], records[1]], synthetic_data["root"], SAMPLING, "short"
    )
    assert [r["problem_id"] for r in prepared.rows] == [records[0]["problem_id"], records[1]["problem_id"]]
    assert [(s["problem_id"], s["path"]) for s in prepared.skipped] == [
        ("gone", str(synthetic_data["root"] / "videos" / "gone.mp4")),
        ("broken", str(broken)),
    ]
    assert all("cannot decode video" in s["reason"] for s in prepared.skipped)
    prepared.write_skipped(tmp_path / "skipped.jsonl")
    lines = (tmp_path / "skipped.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == prepared.skipped


def test_all_videos_unusable_is_an_error(records, tmp_path):
    with pytest.raises(UserError, match=r"no usable record: all 2 were skipped"):
        prepare_rl_rows(records, tmp_path, SAMPLING, "short")  # no video exists under this root


def test_image_records_are_refused_with_directions(records, synthetic_data):
    image = {**records[0], "problem_id": "img-1", "data_type": "image"}
    with pytest.raises(UserError, match=r"record img-1: data_type='image'.*video records"):
        prepare_rl_rows([records[0], image], synthetic_data["root"], SAMPLING, "short")
