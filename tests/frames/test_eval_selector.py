import json

from videoktr.cli import main


def _eval(tiny_model_dir, sparse_data, predictions, *extra):
    return main(["eval", "--model", str(tiny_model_dir), "--bench", "video-r1", "--data", str(sparse_data["test"]),
                 "--video-root", str(sparse_data["root"]), "--frames", "6", "--max-new-tokens", "4",
                 "--template", "short", "--max-pixels", str(56 * 112), "--predictions", str(predictions), *extra])  # fmt: skip


def test_eval_with_oracle_frames_stores_the_chosen_indices(
    tiny_model_dir, sparse_data, sparse_records, tmp_path, capsys
):
    from videoktr.frames.config import VoyagerConfig
    from videoktr.frames.select import select_frames
    from videoktr.frames.sparse import is_sufficient

    predictions = tmp_path / "p.jsonl"
    assert (
        _eval(tiny_model_dir, sparse_data, predictions, "--frame-selector", "oracle", "--batch-size", "2")
        == 0
    )
    lines = [json.loads(x) for x in predictions.read_text().splitlines()]
    header, rows = lines[0]["videoktr_eval_run"], lines[1:]
    assert header["settings"]["frame_selector"] == {"name": "oracle", "candidates": 16, "frames": 6}
    _, test = sparse_records
    by_id = {r["problem_id"]: r for r in test}
    assert sorted(r["id"] for r in rows) == sorted(by_id)
    for row in rows:
        record = by_id[row["id"]]
        assert row["error"] is None
        assert row["frame_indices"] == select_frames("oracle", record, 16, VoyagerConfig(frames=6))
        assert is_sufficient(record["evidence_rule"], row["frame_indices"])
    # the same file cannot be resumed with another selector: it would mix two runs
    assert _eval(tiny_model_dir, sparse_data, predictions, "--frame-selector", "uniform") == 2
    assert "frame_selector" in capsys.readouterr().err


def test_eval_frame_selector_bad_input(tiny_model_dir, sparse_data, tmp_path, capsys):
    assert _eval(tiny_model_dir, sparse_data, tmp_path / "a.jsonl", "--frame-selector", "voyager") == 2
    assert "needs --selector" in capsys.readouterr().err
    assert _eval(tiny_model_dir, sparse_data, tmp_path / "b.jsonl", "--frame-selector", "random",
                 "--candidates", "4") == 2  # fmt: skip
    assert "T=6 > M=4" in capsys.readouterr().err
    assert _eval(tiny_model_dir, sparse_data, tmp_path / "c.jsonl", "--frame-selector", "random",
                 "--candidates", "32") == 2  # fmt: skip
    assert "record test-0000: its video has 16 frames, fewer than M=32" in capsys.readouterr().err


def test_eval_with_a_relative_video_root_uses_the_chosen_frames(
    tiny_model_dir, sparse_data, sparse_records, tmp_path, monkeypatch
):
    # `--video-root` relative to the working directory, as users type it: the oracle's frames must reach every
    # prediction (before: the plan was keyed by the relative path, the runner looked up the absolute one, and every
    # item silently got the sampling's frames, frame_indices None).
    import os

    from videoktr.frames.config import VoyagerConfig
    from videoktr.frames.select import select_frames

    monkeypatch.chdir(sparse_data["root"].parent)
    predictions = tmp_path / "p.jsonl"
    assert main(["eval", "--model", str(tiny_model_dir), "--bench", "video-r1", "--data", str(sparse_data["test"]),
                 "--video-root", os.path.relpath(sparse_data["root"]), "--frames", "6", "--max-new-tokens", "4",
                 "--template", "short", "--max-pixels", str(56 * 112), "--predictions", str(predictions),
                 "--frame-selector", "oracle", "--batch-size", "4"]) == 0  # fmt: skip
    rows = [json.loads(x) for x in predictions.read_text().splitlines()][1:]
    _, test = sparse_records
    by_id = {r["problem_id"]: r for r in test}
    assert rows and all(
        row["frame_indices"] == select_frames("oracle", by_id[row["id"]], 16, VoyagerConfig(frames=6))
        for row in rows
    )
