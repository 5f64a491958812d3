import json
import sys

from videoktr.cli import main

from .helpers import good_record, planted_dataset


def test_validate_data_prints_every_problem_and_exits_1(tmp_path, capsys):
    path = planted_dataset(tmp_path)
    assert main(["validate-data", str(path), "--root", str(tmp_path), "--frames", "4"]) == 1
    out = capsys.readouterr().out
    for record_id in (2, 3, 4, 5, 6, 1):
        assert f"(id {record_id}):" in out
    assert "warning #0 (id 1): path: 'videos/a.mp4' is used by 2 records" in out
    assert out.strip().endswith("6 errors, 2 warnings")


def test_validate_data_clean_file_exits_0(tmp_path, capsys):
    planted_dataset(tmp_path)  # writes the videos
    clean = tmp_path / "clean.jsonl"
    records = [
        good_record(problem_id=1),
        good_record(problem_id=2, path="videos/b.mp4", process="<think>x</think>"),
    ]
    clean.write_text("\n".join(json.dumps(r) for r in records))
    assert main(["validate-data", str(clean), "--root", str(tmp_path), "--frames", "4"]) == 0
    assert "0 errors, 0 warnings" in capsys.readouterr().out
    # as SFT data the first record lacks `process`
    assert main(["validate-data", str(clean), "--root", str(tmp_path), "--kind", "sft", "--no-decode"]) == 1


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["validate-data", str(tmp_path / "missing.json"), "--root", str(tmp_path)]) == 2
    assert "missing.json not found" in capsys.readouterr().err
    (tmp_path / "d.json").write_text("[]")
    assert main(["validate-data", str(tmp_path / "d.json"), "--root", str(tmp_path), "--frames", "5"]) == 2
    assert "num_frames=5" in capsys.readouterr().err
    assert (
        main(["make-synthetic", "--out", str(tmp_path), "--train", "2", "--test", "1", "--frames", "7"]) == 2
    )


def test_make_synthetic_then_validate(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["make-synthetic", "--out", str(out), "--train", "4", "--test", "2", "--seed", "3"]) == 0
    assert len(json.loads((out / "train.json").read_text())) == 4
    assert len(list((out / "videos").glob("*.mp4"))) == 6
    assert json.loads((out / "synthetic_config.json").read_text())["seed"] == 3
    capsys.readouterr()
    args = [
        "validate-data",
        str(out / "train_sft.json"),
        "--root",
        str(out),
        "--kind",
        "sft",
        "--frames",
        "8",
    ]
    assert main(args) == 0, capsys.readouterr().out


def test_help_does_not_import_torch_or_av():
    import subprocess

    code = "import sys, videoktr.cli as c; c.build_parser(); print('torch' in sys.modules or 'av' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
