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
    capsys.readouterr()
    assert main(common) == 0
    err = capsys.readouterr().err.splitlines()  # not a terminal: plain lines, resumed item included
    progress = [line for line in err if line.startswith("eval ")]
    assert progress[0] == "eval video-r1: 1/3 (33%), 1 resumed" and progress[-1].startswith(
        "eval video-r1: 3/3 (100%)"
    )
    ids = [json.loads(line)["id"] for line in preds.read_text().splitlines()[1:]]
    assert sorted(ids) == ["t0", "t1", "t2"]
    summary = json.loads(summary_path.read_text())
    assert summary["n_resumed"] == 1 and summary["generation"]["n_generated"] == 2
    assert summary["run"]["sampling"]["num_frames"] == 4
    # every sampling parameter recorded (defaults: the trainer's rollouts), the scorer in summary and identity
    assert {k: summary["run"]["generation"][k] for k in ("top_k", "min_p", "repetition_penalty", "seed")} == {
        "top_k": 0, "min_p": None, "repetition_penalty": 1.0, "seed": 0,
    }  # fmt: skip
    assert summary["scorer"] == "video-r1" and summary["run"]["identity"]["settings"]["scorer"] == "video-r1"
    # the same file resumed with another scorer is refused (its lines carry the first scorer's verdicts) ...
    assert main([*common, "--scorer", "official"]) == 2
    assert "scorer: 'video-r1' -> 'official'" in capsys.readouterr().err
    # scoring the same predictions externally gives the same accuracy
    rescored = tmp_path / "rescored.json"
    assert main(["eval", "score", "--bench", "video-r1", "--data", str(data), "--predictions", str(preds),
                 "--summary", str(rescored)]) == 0  # fmt: skip
    assert json.loads(rescored.read_text())["accuracy"] == summary["accuracy"]
    assert "overall" in capsys.readouterr().out
    # ... while `eval score` rescores it with any scorer, no generation
    assert main(["eval", "score", "--bench", "video-r1", "--data", str(data), "--predictions", str(preds),
                 "--summary", str(rescored), "--scorer", "lenient"]) == 0  # fmt: skip
    assert json.loads(rescored.read_text())["scorer"] == "lenient"


def test_sampling_parameters_are_explicit_and_override_the_checkpoint(tiny_model_dir):
    """A checkpoint's generation_config (here top_k 1, min_p 0.3, repetition_penalty 1.05) and generate's top-k 50
    fallback must not decide sampling: the resolved config is exactly the one asked for."""
    from videoktr.eval.backends import HFBackend
    from videoktr.models.tiny import load_model_and_processor

    model, processor = load_model_and_processor(tiny_model_dir)
    model.generation_config.top_k, model.generation_config.repetition_penalty = 1, 1.05
    model.generation_config.min_p = 0.3
    sampled = HFBackend(model, processor, None, GenerationSettings(temperature=1.0))
    resolved, _ = model._prepare_generation_config(None, **sampled._generate_kwargs())
    assert (resolved.do_sample, resolved.top_k, resolved.min_p, resolved.repetition_penalty) == (
        True,
        0,
        None,
        1.0,
    )
    asked = GenerationSettings(temperature=0.7, top_k=20, min_p=0.05, repetition_penalty=1.1)
    resolved, _ = model._prepare_generation_config(
        None, **HFBackend(model, processor, None, asked)._generate_kwargs()
    )
    assert (resolved.top_k, resolved.min_p, resolved.repetition_penalty, resolved.temperature) == (
        20,
        0.05,
        1.1,
        0.7,
    )


def test_seeded_sampling_repeats(tiny_model_dir, tiny_bench):
    from videoktr.eval.backends import HFBackend
    from videoktr.models.tiny import load_model_and_processor

    data, root = tiny_bench
    model, processor = load_model_and_processor(tiny_model_dir)
    sampling = VideoSamplingConfig(num_frames=4, min_pixels=56 * 56, max_pixels=56 * 56)
    backend = HFBackend(
        model, processor, sampling, GenerationSettings(max_new_tokens=8, temperature=1.0, seed=3)
    )
    args = (["What color?"], [root / "videos" / "v0.mp4"])
    first = backend.generate(*args, indices=[5])
    assert backend.generate(*args, indices=[5]) == first  # seed 3 + item 5, whatever was drawn before
