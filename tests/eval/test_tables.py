"""Each benchmark's published tables (summary["tables"]), counted by hand under each scorer's denominator rule."""

import json
from pathlib import Path

from videoktr.cli import main
from videoktr.eval.benchmarks import load_benchmark
from videoktr.eval.scoring import read_predictions, score_predictions
from videoktr.eval.tables import published_tables

FIXTURES = Path(__file__).parents[1] / "fixtures" / "benchmarks"


def cell(n, correct):
    return {"n": n, "correct": correct, "accuracy": correct / n if n else None}


def _write(tmp_path, rows, outputs):
    data, preds = tmp_path / "data.json", tmp_path / "p.jsonl"
    data.write_text(json.dumps(rows))
    preds.write_text("".join(json.dumps({"id": rid, **out}) + "\n" for rid, out in outputs.items()))
    return data, preds


# Video-MME: (id, duration, domain, sub_category, task_type, gold, prediction line)
VIDEOMME = [
    ("s1", "short", "Knowledge", "Humanity & History", "Counting Problem", "C", {"output": "<answer>C</answer>"}),
    ("s2", "short", "Knowledge", "Humanity & History", "Information Synopsis", "A",
     {"output": "<answer>(A)</answer>"}),
    ("s3", "short", "Film & Television", "Animation", "Counting Problem", "B",
     {"output": "<answer>none of them fits</answer>"}),
    ("m1", "medium", "Sports Competition", "Basketball", "Counting Problem", "B", {"output": "<answer>B</answer>"}),
    ("m2", "medium", "Sports Competition", "Football", "Temporal Reasoning", "D",
     {"output": "<answer>Answer: D</answer>"}),
    ("m3", "medium", "Knowledge", "Astronomy", "Temporal Reasoning", "A", {"error": "OOM"}),
    ("l1", "long", "Knowledge", "Astronomy", "Temporal Reasoning", "D", {"output": "<answer>D</answer>"}),
    ("l2", "long", "Life Record", "Travel", "OCR Problems", "C", {"output": "<answer>no idea</answer>"}),
    ("l3", "long", "Life Record", "Travel", "OCR Problems", "C", {"output": "<answer>c</answer>"}),
]  # fmt: skip


def _videomme(tmp_path):
    rows = [
        {"question_id": q, "videoID": f"v{q}", "duration": d, "domain": dom, "sub_category": sub,
         "task_type": task, "question": "?", "options": ["A. a", "B. b", "C. c", "D. d"], "answer": gold}
        for q, d, dom, sub, task, gold, _ in VIDEOMME
    ]  # fmt: skip
    data, preds = _write(tmp_path, rows, {row[0]: row[-1] for row in VIDEOMME})
    return load_benchmark("videomme", data), read_predictions(preds)


def test_videomme_official_tables_per_duration_and_entire_dataset(tmp_path):
    items, predictions = _videomme(tmp_path)
    _, summary = score_predictions(items, predictions, "official")
    # eval_your_results.py's extract_characters_regex on the tag content: C -> C (right), (A) -> A (right),
    # "none of them fits" / "no idea" / "c" have no capital A-D -> dropped (s3, l2, l3); "Answer: D" -> the first
    # capital A-D is the "A" of "Answer" (wrong, counted); m3's error is a wrong, counted answer.
    tables = summary["tables"]
    assert list(tables) == ["duration/short", "duration/medium", "duration/long", "all"]
    # short: s1 right, s2 right, s3 dropped -> 2/2; Film & Television / Animation keep a row with n 0
    assert tables["duration/short"] == {
        "overall": cell(2, 2),
        "domain": {"Knowledge": cell(2, 2), "Film & Television": cell(0, 0)},
        "sub_category": {"Humanity & History": cell(2, 2), "Animation": cell(0, 0)},
        "task_type": {"Counting Problem": cell(1, 1), "Information Synopsis": cell(1, 1)},
    }
    # medium: m1 right, m2 wrong, m3 error -> 1/3; rows in the script's order (Knowledge before Sports Competition,
    # Astronomy before Basketball before Football)
    assert tables["duration/medium"] == {
        "overall": cell(3, 1),
        "domain": {"Knowledge": cell(1, 0), "Sports Competition": cell(2, 1)},
        "sub_category": {"Astronomy": cell(1, 0), "Basketball": cell(1, 1), "Football": cell(1, 0)},
        "task_type": {"Counting Problem": cell(1, 1), "Temporal Reasoning": cell(2, 0)},
    }
    # long: l1 right, l2 and l3 dropped -> 1/1; OCR Problems listed before Temporal Reasoning, as the script does
    assert tables["duration/long"]["overall"] == cell(1, 1)
    assert list(tables["duration/long"]["task_type"].items()) == [
        ("OCR Problems", cell(0, 0)), ("Temporal Reasoning", cell(1, 1))
    ]  # fmt: skip
    # entire dataset: counted s1 s2 m1 m2 m3 l1 = 6, right s1 s2 m1 l1 = 4; Knowledge = s1 s2 m3 l1 -> 3/4
    assert tables["all"]["overall"] == cell(6, 4)
    assert summary["accuracy"] == 4 / 6 and summary["n_dropped"] == 3
    assert list(tables["all"]["domain"].items()) == [
        ("Knowledge", cell(4, 3)), ("Film & Television", cell(0, 0)), ("Sports Competition", cell(2, 1)),
        ("Life Record", cell(0, 0)),
    ]  # fmt: skip


def test_videomme_tables_under_video_r1_keep_every_item(tmp_path):
    items, predictions = _videomme(tmp_path)
    _, summary = score_predictions(items, predictions, "video-r1")
    # Video-R1's rule: the tag content must be the letter -> s1, m1, l1 right; nothing is dropped
    tables = summary["tables"]
    assert [tables[f"duration/{d}"]["overall"] for d in ("short", "medium", "long")] == [cell(3, 1)] * 3
    assert tables["all"]["overall"] == cell(9, 3)
    # Knowledge: s1 (right) s2 m3 l1 (right) -> 2/4; Life Record: l2, l3 wrong -> 0/2
    assert tables["all"]["domain"]["Knowledge"] == cell(4, 2)
    assert tables["all"]["domain"]["Life Record"] == cell(2, 0)


VIDEOMMMU = [  # (id, track, question_type, gold, output)
    ("test_Math_1", "Perception", "multiple-choice", "A", "A"),
    ("test_Art_Theory_2", "Perception", "multiple-choice", "B", "(B)"),
    ("test_Physics_4", "Perception", "open", "12", ""),
    ("test_Math_3", "Adaptation", "open", "12", "12.0"),
    ("test_Computer_Science_7", "Adaptation", "multiple-choice", "D", "C"),
]


def _videommmu(tmp_path):
    rows = [
        {"id": rid, "track": track, "question_type": kind, "answer": gold, "question": "?",
         "options": ["a", "b", "c", "d"] if kind == "multiple-choice" else []}
        for rid, track, kind, gold, _ in VIDEOMMMU
    ]  # fmt: skip
    data, preds = _write(tmp_path, rows, {row[0]: {"output": row[-1]} for row in VIDEOMMMU})
    return load_benchmark("videommmu", data), read_predictions(preds)


def test_videommmu_tables_per_track_with_domains_and_subjects(tmp_path):
    items, predictions = _videommmu(tmp_path)
    _, official = score_predictions(items, predictions, "official")
    # lmms-eval: "A" -> A (right); "(B)" -> B (right); "" is "API Error" -> dropped; "12.0" = 12 (right); "C" wrong
    tables = official["tables"]
    # one lmms-eval task per track, no pooled one
    assert list(tables) == ["track/Perception", "track/Adaptation"]
    # Perception: Math_1 right, Art_Theory_2 right, Physics_4 dropped -> 2/2; Math, Physics -> Science
    assert tables["track/Perception"] == {
        "overall": cell(2, 2),
        "domain": {"Art and Design": cell(1, 1), "Science": cell(1, 1)},
        "subject": {"Art_Theory": cell(1, 1), "Math": cell(1, 1), "Physics": cell(0, 0)},
    }
    # Adaptation: Math_3 right, Computer_Science_7 wrong -> 1/2
    assert tables["track/Adaptation"] == {
        "overall": cell(2, 1),
        "domain": {"Science": cell(1, 1), "Tech and Engineering": cell(1, 0)},
        "subject": {"Math": cell(1, 1), "Computer_Science": cell(1, 0)},
    }
    _, r1 = score_predictions(items, predictions, "video-r1")
    # Video-R1: "A" right; "(B)" is not the letter; "" and "12.0" (a '.' only on one side) wrong; "C" wrong
    assert r1["tables"]["track/Perception"]["overall"] == cell(3, 1)
    assert r1["tables"]["track/Adaptation"]["overall"] == cell(2, 0)


def test_mmvu_tables_per_discipline(tmp_path):
    rows = [
        {"id": rid, "question_type": "multiple-choice", "question": "?", "answer": gold,
         "choices": {"A": "x", "B": "y", "C": "z"}, "video_path": f"videos/{subject}/{rid}.mp4"}
        for rid, subject, gold in [("b", "Biology", "B"), ("e", "Electromagnetism", "B"), ("d", "Dentistry", "A"),
                                   ("u", "Unmapped_Subject", "C")]
    ]  # fmt: skip
    outputs = {"b": {"output": "B"}, "e": {"output": "A"}, "d": {"output": "A"}, "u": {"output": "C"}}
    data, preds = _write(tmp_path, rows, outputs)
    items, predictions = load_benchmark("mmvu", data), read_predictions(preds)
    _, official = score_predictions(items, predictions, "official")
    # lmms-eval: Biology, Electromagnetism -> Science (1 right of 2), Dentistry -> Healthcare (1/1); the subject
    # outside its map is not counted
    assert official["tables"] == {
        "all": {
            "overall": cell(3, 2),
            "discipline": {"Science": cell(2, 1), "Healthcare": cell(1, 1), "unknown": cell(0, 0)},
        }
    }
    _, r1 = score_predictions(items, predictions, "video-r1")
    # Video-R1 counts every item: 3 of 4 right; the unmapped subject is its own row, after the published ones
    assert r1["tables"]["all"]["overall"] == cell(4, 3)
    assert list(r1["tables"]["all"]["discipline"]) == ["Science", "Healthcare", "unknown"]


def test_video_holmes_tables_per_question_type():
    items = load_benchmark("video-holmes", FIXTURES / "video_holmes_official.json")
    predictions = read_predictions(FIXTURES / "video_holmes_predictions.jsonl")
    _, official = score_predictions(items, predictions, "official")
    # see test_scoring: official reads SR right, TA one of two right, PAR wrong; in evaluate.py's type order
    assert list(official["tables"]["all"]["question_type"].items()) == [
        ("SR", cell(1, 1)), ("TA", cell(2, 1)), ("PAR", cell(1, 0))
    ]  # fmt: skip
    assert official["tables"]["all"]["overall"] == cell(4, 2)


def test_no_tables_for_a_benchmark_without_published_ones():
    records = [{"benchmark": "video-r1", "categories": {"family": "static"}, "correct": True}]
    assert published_tables(records) == {}


def test_tables_are_printed(tmp_path, capsys):
    items, _ = _videomme(tmp_path)
    code = main(["eval", "score", "--bench", "videomme", "--data", str(tmp_path / "data.json"),
                 "--predictions", str(tmp_path / "p.jsonl"), "--scorer", "official",
                 "--summary", str(tmp_path / "s.json")])  # fmt: skip
    assert code == 0 and len(items) == 9
    printed = capsys.readouterr().out
    assert "duration/medium" in printed and "sub_category: Football" in printed
    # a row whose items were all dropped shows n 0 and no accuracy
    assert any("Film & Television" in line and " 0 " in line and "-" in line for line in printed.splitlines())
