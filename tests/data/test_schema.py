import json

import numpy as np
import pytest

from videoktr.data.schema import load_records, validate_dataset, validate_record
from videoktr.data.video import VideoSamplingConfig, write_video
from videoktr.errors import UserError

from .helpers import good_record, planted_dataset

FOUR_FRAMES = VideoSamplingConfig(num_frames=4)


def test_a_good_record_has_no_problem():
    assert validate_record(good_record()) == []
    assert validate_record(good_record(process="<think>green came first</think>"), kind="sft") == []
    numeric = good_record(problem_type="numerical", options=None, solution="<answer>1,024.5</answer>")
    assert validate_record(numeric) == []


def test_multi_answer_solutions_are_valid():
    # several correct letters (TW-GRPO's multi-answer records): each must be an option
    assert validate_record(good_record(solution="<answer>A,C</answer>")) == []
    assert validate_record(good_record(solution="<answer>B, D</answer>")) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"solution": "<answer>E</answer>"},
            "solution: answer 'E' is not one of the option letters A, B, C, D",
        ),
        ({"solution": "<answer>A,E</answer>"}, "solution: answer 'A,E' is not one of the option letters"),
        ({"solution": "<answer>A,A</answer>"}, "solution: answer 'A,A' is not one of the option letters"),
        ({"solution": "B"}, "solution: 'B' must be '<answer>X</answer>'"),
        ({"solution": "<answer> </answer>"}, "solution: the answer inside <answer></answer> is empty"),
        ({"problem_type": "mcq"}, "problem_type: 'mcq' is not one of"),
        ({"data_type": "audio"}, "data_type: 'audio' is not one of video, image"),
        ({"options": None}, "options: a multiple-choice record needs a list"),
        ({"options": ["A. red", "green"]}, "options[1]: 'green' is not of the form 'A. text'"),
        (
            {"options": ["A. red", "C. green"], "solution": "<answer>A</answer>"},
            "options: letters AC should run AB in order",
        ),
        ({"problem_id": True}, "problem_id: True must be an integer or a non-empty string"),
        ({"path": ""}, "path: must be a non-empty string"),
        (
            {"problem_type": "numerical", "options": [], "solution": "<answer>many</answer>"},
            "solution: numerical answer 'many' is not a number",
        ),
    ],
)
def test_each_fault_is_named_by_its_field(changes, expected):
    problems = validate_record(good_record(**changes))
    assert len(problems) == 1 and problems[0].startswith(expected)


def test_missing_fields_and_sft_process():
    record = good_record()
    del record["problem"], record["solution"]
    assert validate_record(record) == ["problem: missing required field", "solution: missing required field"]
    assert validate_record(good_record(), kind="sft") == [
        "process: an SFT record needs non-empty reasoning '<think>...</think>'"
    ]
    assert len(validate_record(good_record(process="<think> </think>"), kind="sft")) == 1
    assert validate_record(["not", "a", "dict"]) == ["record: expected a JSON object, got list"]
    with pytest.raises(UserError, match="kind 'ppo'"):
        validate_record(good_record(), kind="ppo")


def test_load_records_json_and_jsonl(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([good_record(), good_record(problem_id=2)]))
    assert [r["problem_id"] for r in load_records(tmp_path / "a.json")] == [1, 2]
    lines = [json.dumps(good_record()), "", json.dumps(good_record(problem_id=2))]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    assert [r["problem_id"] for r in load_records(tmp_path / "a.jsonl")] == [1, 2]


def test_load_records_errors_name_file_and_line(tmp_path):
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text(json.dumps(good_record()) + "\n\n" + '{"problem_id": 2,\n')
    with pytest.raises(UserError, match=r"bad\.jsonl:3: invalid JSON"):
        load_records(bad_jsonl)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('[\n  {"problem_id": 1},\n  {"problem_id": 2,,}\n]')
    with pytest.raises(UserError, match=r"bad\.json:3: invalid JSON"):
        load_records(bad_json)
    (tmp_path / "obj.json").write_text("{}")
    with pytest.raises(UserError, match="must be a list of records"):
        load_records(tmp_path / "obj.json")
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(UserError, match=r"\.json .*\.jsonl"):
        load_records(tmp_path / "data.csv")
    with pytest.raises(UserError, match="not found"):
        load_records(tmp_path / "missing.json")


def test_validate_dataset_reports_every_planted_fault(tmp_path):
    report = validate_dataset(planted_dataset(tmp_path), tmp_path, sampling=FOUR_FRAMES)
    errors = {(p.index, p.record_id): p.message for p in report.errors}
    assert set(errors) == {(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 1)}
    assert errors[(1, 2)].startswith("path: file not found") and "gone.mp4" in errors[(1, 2)]
    assert "cannot decode video" in errors[(2, 3)] and "cut.mp4" in errors[(2, 3)]
    assert errors[(3, 4)].startswith("solution: answer 'E'")
    assert errors[(4, 5)] == "problem: missing required field"
    assert errors[(5, 6)].startswith("problem_type: 'mcq'")
    assert errors[(6, 1)] == "problem_id: duplicate id 1 (records #0, #6)"
    warnings = {(p.index, p.record_id): p.message for p in report.warnings}
    assert set(warnings) == {(0, 1), (3, 4)}  # a.mp4 shared by #0 and #7, b.mp4 by #3 to #6
    assert warnings[(0, 1)] == "path: 'videos/a.mp4' is used by 2 records (#0, #7)"
    assert warnings[(3, 4)] == "path: 'videos/b.mp4' is used by 4 records (#3, #4, #5, #6)"
    assert not report.ok
    assert (report.num_records, report.num_decoded) == (8, 2)  # a.mp4 and b.mp4 decode, cut.mp4 does not
    text = report.format()
    assert "error #3 (id 4): solution" in text and text.endswith(
        "8 records, 2 media files decoded, 6 errors, 2 warnings"
    )


def test_no_decode_only_checks_existence(tmp_path):
    report = validate_dataset(planted_dataset(tmp_path), tmp_path, decode=False)
    assert {p.record_id for p in report.errors} == {2, 4, 5, 6, 1}  # the truncated file now passes
    assert report.num_decoded == 0


def test_too_short_for_the_sampling_is_an_error(tmp_path):
    write_video(tmp_path / "videos" / "a.mp4", np.zeros((4, 16, 16, 3), np.uint8), fps=4.0)
    (tmp_path / "d.json").write_text(json.dumps([good_record()]))
    report = validate_dataset(tmp_path / "d.json", tmp_path, sampling=VideoSamplingConfig(num_frames=8))
    assert [p.record_id for p in report.errors] == [1] and "too short" in report.errors[0].message
    assert validate_dataset(tmp_path / "d.json", tmp_path, sampling=FOUR_FRAMES).ok


def test_images_are_decoded_with_pil(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    records = [
        good_record(problem_id=i, data_type="image", path=name)
        for i, name in enumerate(["ok.png", "bad.png"])
    ]
    (tmp_path / "img.json").write_text(json.dumps(records))
    report = validate_dataset(tmp_path / "img.json", tmp_path)
    assert [(p.record_id, "cannot decode image" in p.message) for p in report.errors] == [(1, True)]


def test_root_must_exist(tmp_path):
    (tmp_path / "d.json").write_text("[]")
    with pytest.raises(UserError, match="data root"):
        validate_dataset(tmp_path / "d.json", tmp_path / "nope")
