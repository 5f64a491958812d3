import json

from videoktr.cli import main


def test_select_oracle_writes_frame_indices(tiny_model_dir, sparse_data, tmp_path, capsys):
    from videoktr.frames.sparse import is_sufficient

    out = tmp_path / "test_frames.json"
    code = main(["frames", "select", "--model", str(tiny_model_dir), "--data", str(sparse_data["test"]),
                 "--root", str(sparse_data["root"]), "--frame-selector", "oracle", "--out", str(out)])  # fmt: skip
    assert code == 0
    records = json.loads(out.read_text())
    assert len(records) == 4
    for record in records:
        assert len(record["frame_indices"]) == 6 and record["frame_indices"] == sorted(
            record["frame_indices"]
        )
        assert is_sufficient(record["evidence_rule"], record["frame_indices"])


def test_bad_settings_exit_2_with_the_fix(tiny_model_dir, sparse_data, tmp_path, capsys):
    base = ["--model", str(tiny_model_dir), "--data", str(sparse_data["test"]), "--root", str(sparse_data["root"]),
            "--out", str(tmp_path / "x.json")]  # fmt: skip
    assert main(["frames", "select", *base, "--frames", "18"]) == 2
    assert "T=18 > M=16" in capsys.readouterr().err
    assert main(["frames", "select", *base, "--candidates", "32", "--frame-selector", "random"]) == 2
    assert "record test-0000: its video has 16 frames, fewer than M=32" in capsys.readouterr().err
    assert main(["frames", "select", *base, "--frame-selector", "voyager"]) == 2
    assert "needs --selector" in capsys.readouterr().err
    assert main(["frames", "select", *base, "bogus=1"]) == 2
    assert "unknown frames setting 'bogus'" in capsys.readouterr().err


def test_label_train_select_and_eval_with_voyager(tiny_model_dir, sparse_data, tmp_path, capsys):
    """The CLI chain a user runs: label -> train -> select (RL data) -> eval --frame-selector voyager."""
    base = ["--model", str(tiny_model_dir), "--root", str(sparse_data["root"]), "max_combinations=8",
            "min_loss_spread=0", "train_steps=4", "records_per_step=2"]  # fmt: skip
    labels, selector = tmp_path / "labels.jsonl", tmp_path / "selector"
    assert main(["frames", "label", "--data", str(sparse_data["train"]), "--out", str(labels), *base]) == 0
    lines = [json.loads(x) for x in labels.read_text().splitlines()]
    assert len(lines) == 6 and all(len(line["losses"]) == 8 and "sufficient" in line for line in lines)
    assert main(["frames", "train", "--data", str(sparse_data["train"]), "--labels", str(labels),
                 "--out", str(selector), *base]) == 0  # fmt: skip
    assert (selector / "querier.safetensors").is_file()
    out = tmp_path / "rl.json"
    assert main(["frames", "select", "--data", str(sparse_data["test"]), "--frame-selector", "voyager",
                 "--selector", str(selector), "--out", str(out), *base]) == 0  # fmt: skip
    chosen = {r["problem_id"]: r["frame_indices"] for r in json.loads(out.read_text())}
    predictions = tmp_path / "p.jsonl"
    assert main(["eval", "--model", str(tiny_model_dir), "--bench", "video-r1", "--data", str(sparse_data["test"]),
                 "--video-root", str(sparse_data["root"]), "--frames", "6", "--max-new-tokens", "2", "--template",
                 "short", "--max-pixels", str(56 * 112), "--predictions", str(predictions),
                 "--frame-selector", "voyager", "--selector", str(selector)]) == 0  # fmt: skip
    rows = [json.loads(x) for x in predictions.read_text().splitlines()[1:]]
    assert {r["id"]: r["frame_indices"] for r in rows} == chosen  # eval chose what `frames select` chose
