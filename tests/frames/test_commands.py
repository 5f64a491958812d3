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
