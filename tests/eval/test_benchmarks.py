import json
from pathlib import Path

import pytest

from videoktr.core.registry import UnknownNameError
from videoktr.errors import UserError
from videoktr.eval.benchmarks import BENCHMARKS, load_benchmark

FIXTURES = Path(__file__).parents[1] / "fixtures" / "benchmarks"


def test_registry_names():
    assert BENCHMARKS.names() == [
        "clevrer", "mmvu", "mvbench", "nextgqa", "tempcompass", "video-holmes", "video-r1", "videomme", "videommmu"
    ]  # fmt: skip
    with pytest.raises(UnknownNameError, match="valid: clevrer, mmvu"):
        load_benchmark("holmes", FIXTURES / "video_holmes_official.json")


def test_video_holmes_official():
    items = load_benchmark("video-holmes", FIXTURES / "video_holmes_official.json")
    assert [i.id for i in items] == ["vh001_1", "vh001_2", "vh002_1", "vh002_2", "vh003_1"]
    first = items[0]
    assert (
        first.options[0] == "A. Brothers" and first.options[-1] == "F. Father and son" and first.answer == "B"
    )
    assert first.video == "vh001.mp4" and first.categories == {"question_type": "SR"}
    assert first.to_record()["solution"] == "<answer>B</answer>"


def test_video_holmes_video_r1_style():
    items = load_benchmark("video-holmes", FIXTURES / "video_holmes_r1.json")
    assert [(i.id, i.answer, i.categories["question_type"]) for i in items] == [
        ("1", "B", "SR"),
        ("2", "C", "TA"),
    ]
    assert items[0].video == "./Video-Holmes/vh001.mp4"


def test_videommmu_track_subject_and_open_questions():
    items = {i.id: i for i in load_benchmark("videommmu", FIXTURES / "videommmu_adaptation.json")}
    math = items["test_Math_3"]
    assert math.problem_type == "numerical" and math.options is None and math.answer == "12"
    assert math.categories == {"track": "Adaptation", "subject": "Math", "domain": "Science"}
    assert math.native["prompt"].startswith("Please directly output the option letter/data as the answer.")
    art = items["test_Art_Theory_12"]
    assert (
        art.options == ["A. Baroque", "B. Cubism", "C. Impressionism", "D. Surrealism"] and art.answer == "C"
    )
    assert art.categories["subject"] == "Art_Theory" and art.video == "test_Art_Theory_12.mp4"
    assert items["test_Computer_Science_7"].options[1] == "B. node 4"  # already lettered: kept


def test_videommmu_needs_a_track(tmp_path):
    rows = json.loads((FIXTURES / "videommmu_adaptation.json").read_text())
    path = tmp_path / "videommmu.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(UserError, match="track"):
        load_benchmark("videommmu", path)
    path.write_text(json.dumps([dict(r, track="Perception") for r in rows]))
    assert {i.categories["track"] for i in load_benchmark("videommmu", path)} == {"Perception"}


def test_mmvu_keeps_multiple_choice_with_subject_from_path():
    items = load_benchmark("mmvu", FIXTURES / "mmvu_validation.json")
    assert [i.id for i in items] == ["0a1b", "0a1c"]  # the open-ended 0a1d is not part of MMVU(mc)
    assert (
        items[0].categories == {"subject": "Biology", "discipline": "Science"} and len(items[0].options) == 5
    )
    assert (
        items[0].native["choices"]["B"] == "Mitochondrion" and "B: Mitochondrion" in items[0].native["prompt"]
    )
    assert items[1].video == "videos/Electromagnetism/0a1c.mp4"  # hub URL -> path inside the dataset repo
    assert items[1].categories == {"subject": "Electromagnetism", "discipline": "Science"}


def test_tempcompass_official_files():
    mc = load_benchmark("tempcompass", FIXTURES / "tempcompass" / "multi-choice.json")
    assert [(i.id, i.answer, i.categories["task_dim"]) for i in mc] == [
        ("1034419625/action/multi-choice/0", "A", "multi-choice/action"),
        ("1034419625/direction/multi-choice/0", "B", "multi-choice/direction"),
        ("1034419625_reverse/direction/multi-choice/0", "B", "multi-choice/direction"),
    ]
    assert mc[0].question == "What is the man doing in the video?" and mc[0].video == "1034419625.mp4"
    assert mc[0].native["prompt"].endswith("C. passing a basketball\nPlease directly give the best option:")
    # yes/no keeps its format: the gold is the word, the prompt TempCompass' own
    yes_no = load_benchmark("tempcompass", FIXTURES / "tempcompass" / "yes_no.json")
    assert [(i.answer, i.options, i.problem_type) for i in yes_no] == [
        ("yes", None, "free-form"),
        ("no", None, "free-form"),
    ]
    assert yes_no[0].native["prompt"] == "Is the man dunking a basketball?\nPlease answer yes or no:"
    # caption matching keeps its caption lines in the question and its answer line as the gold
    captions = load_benchmark("tempcompass", FIXTURES / "tempcompass" / "caption_matching.json")
    assert [i.answer for i in captions] == [
        "Option 2: A man is dunking a basketball.",
        "Caption A: A man is dunking a basketball.",
        "Sentence B: The video is playing in slow motion.",
    ]
    assert captions[0].question.split("\n")[1] == "Option 1: The man is dribbling a basketball."
    assert captions[2].categories == {"task": "caption_matching", "task_dim": "caption_matching/speed"}


def test_tempcompass_flat_rows_detect_the_task():
    items = load_benchmark("tempcompass", FIXTURES / "tempcompass_rows.jsonl")
    assert [(i.categories["task"], i.answer) for i in items] == [
        ("multi-choice", "A"),
        ("yes_no", "yes"),
        ("caption_matching", "Caption B: The video is playing at normal speed."),
    ]


def test_videomme():
    items = load_benchmark("videomme", FIXTURES / "videomme.json")
    assert len(items) == 4 and items[0].id == "001-1" and items[0].video == "fFjv93ACGo8.mp4"
    assert items[2].categories == {
        "duration": "medium",
        "domain": "Sports Competition",
        "task_type": "Counting Problem",
        "sub_category": "Basketball",
    }
    assert items[2].native["prompt"].endswith("A. 2.\nB. 3.\nC. 4.\nD. 5.\nThe best answer is:")


def test_video_r1_categories():
    items = load_benchmark("video-r1", FIXTURES / "video_r1_synthetic.jsonl")
    assert items[0].categories == {"family": "temporal", "question_kind": "first_color"}
    assert items[1].problem_type == "numerical" and items[1].answer == "3" and items[1].options is None


@pytest.mark.parametrize(
    "bench, row, message",
    [
        ("videomme", {"question_id": "q9", "videoID": "v", "duration": "short", "domain": "d", "task_type": "t",
                      "question": "?", "options": ["A. x", "B. y"], "answer": "E"}, r"'q9'.*'answer' 'E'"),
        ("videomme", {"question_id": "q9", "videoID": "v", "domain": "d", "task_type": "t",
                      "question": "?", "options": ["A. x"], "answer": "A"}, r"'q9'.*field 'duration'"),
        ("video-holmes", {"Question ID": "h1", "video ID": "v", "Question Type": "SR", "Question": "?",
                          "Answer": "A"}, r"'h1'.*field 'Options'"),
        ("video-r1", {"problem_id": 5, "problem": "?", "problem_type": "numerical", "solution": "3",
                      "path": "a.mp4"}, r"5.*'solution'"),
    ],
)  # fmt: skip
def test_malformed_records_name_id_and_field(tmp_path, bench, row, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([row]))
    with pytest.raises(UserError, match=message):
        load_benchmark(bench, path)


def test_duplicate_ids_and_bad_json(tmp_path):
    rows = json.loads((FIXTURES / "videomme.json").read_text())
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(rows + rows[:1]))
    with pytest.raises(UserError, match="'001-1' appears twice"):
        load_benchmark("videomme", path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2"):
        load_benchmark("video-r1", bad)


@pytest.mark.parametrize("bench", ["videomme", "mvbench", "video-holmes"])
def test_every_malformed_record_is_listed_at_once(tmp_path, bench):
    """A file with several bad records names each of them in one error, not only the first."""
    fixture = {
        "videomme": "videomme.json",
        "mvbench": "mvbench_authors.json",
        "video-holmes": "video_holmes_official.json",
    }
    rows = json.loads((FIXTURES / fixture[bench]).read_text())
    assert len(rows) >= 2
    # The first and the last record each lose a field the loader needs; any in between stay good.
    field = {"videomme": "question", "mvbench": "video", "video-holmes": "Question"}[bench]
    broken = [dict(rows[0]), *rows[1:-1], dict(rows[-1])]
    del broken[0][field], broken[-1][field]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(UserError) as err:
        load_benchmark(bench, path)
    message = str(err.value)
    assert "2 malformed record(s)" in message and "nothing was evaluated" in message
    assert message.count(f"field '{field}'") == 2  # both records named, each with its field


def test_listing_is_capped_but_counts_every_bad_record(tmp_path):
    rows = [{"question_id": f"q{i}", "videoID": "v", "domain": "d", "task_type": "t", "question": "?",
             "options": ["A. x", "B. y"], "answer": "A"} for i in range(30)]  # fmt: skip
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows))  # no 'duration' anywhere: 30 bad records
    with pytest.raises(UserError, match=r"30 malformed record\(s\)[\s\S]*and 10 more") as err:
        load_benchmark("videomme", path)
    assert str(err.value).count("field 'duration'") == 20
