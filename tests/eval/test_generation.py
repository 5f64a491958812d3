"""Generation with the tiny Qwen2.5-VL (random weights): the path is real, the answers are noise."""

import json

from videoktr.cli import main
from videoktr.data.video import VideoSamplingConfig
from videoktr.eval.benchmarks import load_benchmark
from videoktr.eval.runner import GenerationSettings, evaluate

SMALL = ["--frames", "4", "--max-pixels", str(56 * 56), "--min-pixels", str(56 * 56), "--max-new-tokens", "6"]


def test_evaluate_in_process_with_tiny_model(tiny_model_dir, tiny_bench, tmp_path):
    from videoktr.models.tiny import load_model_and_processor

    data, root = tiny_bench
    model, processor = load_model_and_processor(tiny_model_dir)
    items = load_benchmark("video-r1", data)
    sampling = VideoSamplingConfig(num_frames=4, min_pixels=56 * 56, max_pixels=56 * 56)
    records, summary = evaluate(
        model, processor, items, sampling, video_root=root, generation=GenerationSettings(max_new_tokens=6),
        predictions_path=tmp_path / "p.jsonl", batch_size=2, template="short",
    )  # fmt: skip
    assert [r["error"] for r in records] == [None, None, None]
    assert all(isinstance(r["output"], str) for r in records)
    assert summary["n_scored"] == 3 and 0.0 <= summary["accuracy"] <= 1.0
    assert set(summary["by_category"]) == {"family/static", "question_kind/color"}
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert "videoktr_eval_run" in lines[0] and [r["id"] for r in lines[1:]] == ["t0", "t1", "t2"]


def test_cli_eval_resumes_and_scores(tiny_model_dir, tiny_bench, tmp_path, capsys):
    data, root = tiny_bench
    preds, summary_path = tmp_path / "preds.jsonl", tmp_path / "summary.json"
    common = ["eval", "--model", str(tiny_model_dir), "--bench", "video-r1", "--data", str(data),
              "--video-root", str(root), "--predictions", str(preds), "--summary", str(summary_path),
              "--template", "short", "--batch-size", "2", *SMALL]  # fmt: skip
    assert main([*common, "--limit", "1"]) == 0
    assert len(preds.read_text().splitlines()) == 2  # the run header, then one prediction
    assert main(common) == 0
    ids = [json.loads(line)["id"] for line in preds.read_text().splitlines()[1:]]
    assert sorted(ids) == ["t0", "t1", "t2"]
    summary = json.loads(summary_path.read_text())
    assert summary["n_resumed"] == 1 and summary["generation"]["n_generated"] == 2
    assert summary["run"]["sampling"]["num_frames"] == 4
    # scoring the same predictions externally gives the same accuracy
    rescored = tmp_path / "rescored.json"
    assert main(["eval", "score", "--bench", "video-r1", "--data", str(data), "--predictions", str(preds),
                 "--summary", str(rescored)]) == 0  # fmt: skip
    assert json.loads(rescored.read_text())["accuracy"] == summary["accuracy"]
    assert "overall" in capsys.readouterr().out
