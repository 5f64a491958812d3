"""A predictions file holds one run: resuming with another identity is refused, a torn last line is redone."""

import json
import logging
from pathlib import Path

import pytest

from videoktr.errors import UserError
from videoktr.eval.benchmarks import load_benchmark
from videoktr.eval.identity import RunIdentity, eval_run_settings, model_fingerprint
from videoktr.eval.runner import EvalRunConfig, run_evaluation

FIXTURES = Path(__file__).parents[1] / "fixtures" / "benchmarks"


class FakeBackend:
    """Answers C to everything and records the videos of each call."""

    def __init__(self):
        self.calls = []

    def generate(self, questions, videos, indices=None):
        self.calls.append([v.name for v in videos])
        return ["<answer>C</answer>" for _ in questions]


@pytest.fixture
def items():
    return load_benchmark("videomme", FIXTURES / "videomme.json")  # ids 001-1, 001-2, 301-1, 601-1


def _lines(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert "videoktr_eval_run" in rows[0]
    return rows[1:]


RUN = {"model": {"weights_sha256": "aa"}, "sampling": {"num_frames": 16}, "template": "video-r1"}


def test_resume_with_other_settings_is_refused_and_the_file_kept(items, video_root, tmp_path):
    out = tmp_path / "p.jsonl"
    run_evaluation(FakeBackend(), items, EvalRunConfig(video_root, limit=2), out, identity=RunIdentity(RUN))
    before = out.read_bytes()
    other = {**RUN, "sampling": {"num_frames": 32}, "template": "short"}
    backend = FakeBackend()
    with pytest.raises(UserError) as info:
        run_evaluation(backend, items, EvalRunConfig(video_root), out, identity=RunIdentity(other))
    message = str(info.value)
    assert "sampling.num_frames: 16 -> 32" in message and "template: 'video-r1' -> 'short'" in message
    assert "another --predictions" in message and "model" not in message.split("differ:")[1]
    assert backend.calls == [] and out.read_bytes() == before  # nothing generated, nothing written
    # the same identity (paths recorded differently) resumes
    same = RunIdentity(RUN, recorded={"model_path": "/elsewhere"})
    _, summary = run_evaluation(backend, items, EvalRunConfig(video_root), out, identity=same)
    assert summary["n_resumed"] == 2 and len(backend.calls) == 2 and len(_lines(out)) == 4


def test_file_without_header_is_refused(items, video_root, tmp_path):
    out = tmp_path / "p.jsonl"
    out.write_text('{"id": "001-1", "output": "<answer>C</answer>"}\n')
    with pytest.raises(UserError, match="no videoktr run header"):
        run_evaluation(FakeBackend(), items, EvalRunConfig(video_root), out)
    assert out.read_text() == '{"id": "001-1", "output": "<answer>C</answer>"}\n'


def test_torn_last_line_is_dropped_with_a_warning_and_redone(items, video_root, tmp_path, caplog):
    out = tmp_path / "p.jsonl"
    run_evaluation(FakeBackend(), items, EvalRunConfig(video_root, limit=2), out)
    text = out.read_text()
    out.write_text(text[:-25])  # killed while writing the second prediction
    backend = FakeBackend()
    with caplog.at_level(logging.WARNING):
        _, summary = run_evaluation(backend, items, EvalRunConfig(video_root), out)
    assert "cut off mid-write" in caplog.text and str(out) in caplog.text
    ids = [r["id"] for r in _lines(out)]
    assert ids == ["001-1", "001-2", "301-1", "601-1"]  # 001-2 generated again, once
    assert summary["n_resumed"] == 1 and summary["n_scored"] == 4


def test_bad_line_in_the_middle_is_an_error_with_its_line(items, video_root, tmp_path):
    out = tmp_path / "p.jsonl"
    run_evaluation(FakeBackend(), items, EvalRunConfig(video_root, limit=2), out)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][:10] + "\n" + lines[2])
    with pytest.raises(UserError, match=r"p.jsonl:2: not valid JSON, and not the last line"):
        run_evaluation(FakeBackend(), items, EvalRunConfig(video_root), out)


def test_nothing_to_score_is_an_error(items, video_root, tmp_path):
    for video in video_root.iterdir():
        video.unlink()
    out = tmp_path / "p.jsonl"
    with pytest.raises(UserError, match="(?s)4 of 4 videos are missing .*nothing to evaluate"):
        run_evaluation(FakeBackend(), items, EvalRunConfig(video_root, skip_missing=True), out)
    assert not out.exists()


def test_model_fingerprint_follows_weights_and_config_not_training_state(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    (model / "model.safetensors").write_bytes(b"\x00" * 64)
    (model / "optimizer.pt").write_bytes(b"1")
    base = model_fingerprint(model)
    (model / "optimizer.pt").write_bytes(b"2")
    (model / "trainer_state.json").write_text("{}")
    (model / "log_history.json").write_text("[]")
    assert model_fingerprint(model) == base
    (model / "model.safetensors").write_bytes(b"\x00" * 63 + b"\x01")
    changed = model_fingerprint(model)
    assert changed["weights_sha256"] != base["weights_sha256"]
    assert changed["config_sha256"] == base["config_sha256"]
    (model / "tokenizer_config.json").write_text("{}")
    assert model_fingerprint(model)["config_sha256"] != base["config_sha256"]
    with pytest.raises(UserError, match="not a directory"):
        model_fingerprint(tmp_path / "nope")


def test_eval_run_settings_take_extra_keys(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = tmp_path / "d.json"
    data.write_text("[]")
    settings, recorded = eval_run_settings(
        model_dir=model, bench="mmvu", data=data, sampling={"num_frames": 8}, generation={"top_p": 1.0},
        template="short", scorer="exact",
    )  # fmt: skip
    assert (
        settings["scorer"] == "exact" and settings["bench"] == "mmvu" and len(settings["data_sha256"]) == 64
    )
    assert recorded["data_path"] == str(data.resolve())
    header = RunIdentity(settings, recorded).header()["videoktr_eval_run"]
    assert json.loads(json.dumps(header))["settings"]["sampling"] == {"num_frames": 8}


def test_cli_refuses_to_resume_with_another_model_or_frames(tiny_model_dir, tiny_bench, tmp_path, capsys):
    from videoktr.cli import main

    data, root = tiny_bench
    preds = tmp_path / "p.jsonl"
    common = ["eval", "--bench", "video-r1", "--data", str(data), "--video-root", str(root),
              "--predictions", str(preds), "--template", "short", "--max-new-tokens", "4",
              "--max-pixels", str(56 * 56), "--min-pixels", str(56 * 56)]  # fmt: skip
    assert main([*common, "--model", str(tiny_model_dir), "--frames", "4", "--limit", "1"]) == 0
    before = preds.read_bytes()
    capsys.readouterr()
    assert main([*common, "--model", str(tiny_model_dir), "--frames", "2"]) == 2
    err = capsys.readouterr().err
    assert "sampling.num_frames: 4 -> 2" in err and "another --predictions" in err
    other = tmp_path / "other_model"
    other.mkdir()
    for path in tiny_model_dir.iterdir():
        data_bytes = path.read_bytes()
        if path.suffix == ".safetensors":  # same shapes, one byte of the weights changed
            data_bytes = data_bytes[:-1] + bytes([data_bytes[-1] ^ 1])
        (other / path.name).write_bytes(data_bytes)
    assert main([*common, "--model", str(other), "--frames", "4"]) == 2
    assert "model.weights_sha256" in capsys.readouterr().err
    assert preds.read_bytes() == before
