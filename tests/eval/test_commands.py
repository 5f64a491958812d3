import json
from pathlib import Path

import pytest

from videoktr.cli import build_parser, main

FIXTURES = Path(__file__).parents[1] / "fixtures" / "benchmarks"


def test_parser_shapes():
    parser = build_parser()
    args = parser.parse_args(["eval", "score", "--bench", "mmvu", "--data", "d", "--predictions", "p"])
    assert args.eval_mode == "score" and args.func.__name__ == "run_score"
    args = parser.parse_args(["eval", "--model", "m", "--bench", "mmvu", "--data", "d", "--video-root", "v"])
    assert args.eval_mode is None and args.func.__name__ == "run" and args.frames == 16


def test_scorer_choices_come_from_the_registry(monkeypatch, capsys):
    from videoktr.eval.scorers import SCORERS

    scorer_args = ["eval", "score", "--bench", "b", "--data", "d", "--predictions", "p", "--scorer"]
    with pytest.raises(SystemExit):
        build_parser().parse_args([*scorer_args, "new-scorer"])
    listed = ", ".join(repr(name) for name in SCORERS.names())  # lenient, official, tw-grpo, video-r1
    assert f"invalid choice: 'new-scorer' (choose from {listed})" in capsys.readouterr().err
    # a scorer registered later (another module) is a choice without touching the parser's code
    monkeypatch.setitem(SCORERS._items, "new-scorer", lambda item, output: {})
    assert build_parser().parse_args([*scorer_args, "new-scorer"]).scorer == "new-scorer"
    eval_help = build_parser()._subparsers._group_actions[0].choices["eval"].format_help()
    assert ",".join(SCORERS.names()) in "".join(eval_help.split())  # (help lines wrap at "-")
    assert "new-scorer" in SCORERS.names()


def test_score_command_writes_summary(tmp_path, capsys):
    out = tmp_path / "s.json"
    code = main(["eval", "score", "--bench", "video-holmes", "--data", str(FIXTURES / "video_holmes_official.json"),
                 "--predictions", str(FIXTURES / "video_holmes_predictions.jsonl"), "--summary", str(out)])  # fmt: skip
    assert code == 0
    summary = json.loads(out.read_text())
    assert (
        summary["accuracy"] == 0.25 and summary["by_category"]["question_type/SR"] == 1.0
    )  # see test_scoring
    printed = capsys.readouterr().out
    assert "question_type: TA" in printed and "25.00%" in printed  # the published table (per question type)


def test_user_errors_exit_2(tmp_path, capsys):
    assert (
        main(
            [
                "eval",
                "score",
                "--bench",
                "video-holmes",
                "--data",
                str(FIXTURES / "video_holmes_official.json"),
            ]
        )
        == 2
    )
    assert "missing --predictions" in capsys.readouterr().err
    assert main(["eval", "--bench", "videomme", "--data", "x"]) == 2
    assert "--model" in capsys.readouterr().err


def test_missing_videos_refused_before_loading_model(tmp_path, capsys):
    code = main(["eval", "--model", str(tmp_path / "no_model"), "--bench", "videomme",
                 "--data", str(FIXTURES / "videomme.json"), "--video-root", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "3 of 4 videos are missing" not in err  # 4 items, 3 distinct files, all missing
    assert "4 of 4 videos are missing" in err and "fFjv93ACGo8.mp4" in err and "lmnoPQRstuv.mp4" in err


def test_prompt_and_scorer_refused_before_the_model_load(tmp_path, capsys):
    data = FIXTURES / "video_r1_synthetic.jsonl"
    (tmp_path / "videos").mkdir()
    for k in range(4):
        (tmp_path / "videos" / f"syn-{k}.mp4").touch()
    common = ["eval", "--model", str(tmp_path / "no_model"), "--bench", "video-r1", "--data", str(data),
              "--video-root", str(tmp_path)]  # fmt: skip
    assert main([*common, "--template", "benchmark"]) == 2
    assert "has no prompt of its own" in capsys.readouterr().err
    assert main([*common, "--template", "r1"]) == 2
    err = capsys.readouterr().err
    assert "unknown --template 'r1'; valid: short" in err and err.rstrip().endswith(", benchmark")


def test_score_tempcompass_official_tables(tmp_path):
    # every TempCompass task file in one flat file; answers: multi-choice right (A), yes/no right, caption wrong
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        '{"id": "1034419625/action/multi-choice/0", "output": "A"}\n'
        '{"id": "1034419625/action/yes_no/0", "output": "Yes."}\n'
        '{"id": "1034419625/speed/caption_matching/0", "output": "Caption A"}\n'
    )
    out = tmp_path / "s.json"
    assert main(["eval", "score", "--bench", "tempcompass", "--data", str(FIXTURES / "tempcompass_rows.jsonl"),
                 "--predictions", str(preds), "--summary", str(out), "--scorer", "official"]) == 0  # fmt: skip
    summary = json.loads(out.read_text())
    assert summary["by_category"] == {
        "task/caption_matching": 0.0, "task/multi-choice": 1.0, "task/yes_no": 1.0,
        "task_dim/caption_matching/speed": 0.0, "task_dim/multi-choice/action": 1.0, "task_dim/yes_no/action": 1.0,
    }  # fmt: skip
    # the published tables: one per task, its dimensions inside (1 item each: right, right, wrong)
    assert list(summary["tables"]) == ["task/multi-choice", "task/yes_no", "task/caption_matching"]
    one = {"n": 1, "correct": 1, "accuracy": 1.0}
    assert summary["tables"]["task/yes_no"] == {"overall": one, "task_dim": {"action": one}}
    assert summary["tables"]["task/caption_matching"]["task_dim"]["speed"]["accuracy"] == 0.0
    assert any("not an official figure" in note for note in summary["notes"])


def test_video_r1_scorer_warns_about_items_it_has_no_rule_for(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": "1034419625/action/yes_no/0", "output": "yes"}\n')
    data = FIXTURES / "tempcompass" / "yes_no.json"
    assert (
        main(["eval", "score", "--bench", "tempcompass", "--data", str(data), "--predictions", str(preds)])
        == 0
    )
    err = capsys.readouterr().err
    assert "warning: 2 of 2 items are free-form, which Video-R1's evaluation scores 0" in err
    assert main(["eval", "score", "--bench", "tempcompass", "--data", str(data), "--predictions", str(preds),
                 "--scorer", "official"]) == 0  # fmt: skip
    assert "warning" not in capsys.readouterr().err
