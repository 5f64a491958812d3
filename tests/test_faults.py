"""Fault injection through the command line: each bad input a user (or a hostile file) can give gets a message
naming what is wrong, exit code 2 (1 for a validate-data report with errors), no traceback - and nothing is trained,
written or lost. The cases of issue 10 first, then the ones that already worked (kept from regressing).

In-process ``main(argv)`` returns the exit code the ``videoktr`` process exits with (an uncaught exception would
fail the test with its traceback); a few cases run the real process to check the exit code and stderr end to end.
Resume equivalence itself is in tests/training/test_resume.py, the eval run identity in tests/eval/test_identity.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from videoktr.cli import main
from videoktr.data.synthetic import make_synthetic, synthetic_corpus

TRAINER = dict(
    method="grpo", num_generations=2, per_device_train_batch_size=2, max_completion_length=8, max_steps=1,
    learning_rate=1e-3, use_cpu=True, bf16=False, report_to="none", logging_steps=1, save_strategy="no",
    video_frames=4, video_max_pixels=56 * 112, prompt_template="short", length_bonus=False,
    gradient_checkpointing=False, disable_tqdm=True, seed=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("faults_data"), n_train=2, n_test=2, seed=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, synth):
    from videoktr.data.schema import load_records
    from videoktr.models.tiny import build_tiny_model

    records = load_records(synth["train_sft"]) + load_records(synth["test"])
    return build_tiny_model(tmp_path_factory.mktemp("faults_model"), corpus=synthetic_corpus(records))


def records_of(synth) -> list[dict]:
    return json.loads(Path(synth["train"]).read_text())


def write_recipe(tmp_path, synth, model, records=None, **trainer) -> tuple[Path, Path]:
    """(recipe path, output dir) of a one-step run on ``records`` (default: the synthetic training records)."""
    train = tmp_path / "train.json"
    train.write_text(json.dumps(records if records is not None else records_of(synth)))
    out = tmp_path / "run"
    recipe = {
        "model": str(model), "data": {"train": str(train), "root": str(synth["root"])},
        "rewards": ["format"], "trainer": {**TRAINER, "output_dir": str(out), **trainer},
    }  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path, out


def refused(argv, capsys, *expected, code=2) -> str:
    """Run ``videoktr argv``; assert the exit code and that stderr holds each expected piece; return stderr."""
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    for piece in expected:
        assert piece in err, f"{piece!r} not in:\n{err}"
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------------ train: records
def test_train_lists_every_bad_record_before_any_model_loads(tmp_path, synth, capsys):
    good = records_of(synth)
    no_solution = {**good[1], "problem_id": "nosol"}
    del no_solution["solution"]
    bad_letter = {**good[0], "problem_id": "letter", "solution": "<answer>Z</answer>"}
    duplicate = {**good[0]}
    records = [good[0], good[1], no_solution, bad_letter, duplicate, "not a record", 7]
    # the model does not exist: the data check must speak first, and nothing may reach a model or a run folder
    recipe, out = write_recipe(tmp_path, synth, tmp_path / "no_model", records)
    err = refused(
        ["train", "--config", recipe], capsys,
        "5 problem(s) in the training data, nothing was trained",
        "#2 (id nosol): solution: missing required field",
        "#3 (id letter): solution: answer 'Z' is not one of the option letters",
        f"#4 (id {good[0]['problem_id']}): problem_id: duplicate id",
        "#5: record: expected a JSON object, got str",
        "#6: record: expected a JSON object, got int",
    )  # fmt: skip
    assert "no_model" not in err and not out.exists()


def test_empty_record_list_is_an_error(tmp_path, synth, model_dir, capsys):
    recipe, out = write_recipe(tmp_path, synth, model_dir, [])
    refused(["train", "--config", recipe], capsys, "no records: the file holds an empty list")
    assert not out.exists()
    refused(
        ["validate-data", tmp_path / "train.json", "--root", synth["root"]], capsys, code=1
    )  # the report goes to stdout


def test_columns_are_per_record_not_decided_by_the_first(tmp_path, synth, model_dir):
    # record 0 is free-form (no options), record 1 multiple choice with options: both keep their own fields
    from videoktr.training.recipe import build_trainer, load_recipe

    good = records_of(synth)
    free = {**good[0], "problem_type": "free-form", "solution": "<answer>red</answer>"}
    del free["options"]
    multiple = next(r for r in good if r["problem_type"] == "multiple choice")
    recipe, _ = write_recipe(tmp_path, synth, model_dir, [free, {**multiple, "problem_id": "mc"}])
    trainer = build_trainer(load_recipe(recipe))
    rows = list(trainer.train_dataset)
    assert rows[0]["options"] is None and rows[1]["options"] == multiple["options"]


# ------------------------------------------------------------------------------------------- paths and root
@pytest.mark.parametrize("escape", ["../outside.mp4", "ABSOLUTE"])
def test_paths_outside_the_root_are_refused_unless_allowed(tmp_path, synth, model_dir, capsys, escape):
    outside = Path(synth["root"]).parent / "outside.mp4"
    outside.write_bytes(Path(synth["root"], records_of(synth)[0]["path"]).read_bytes())  # a real video
    records = records_of(synth)
    records[1] = {**records[1], "path": str(outside) if escape == "ABSOLUTE" else escape}
    recipe, out = write_recipe(tmp_path, synth, model_dir, records)
    message = "outside the data root"
    refused(["train", "--config", recipe], capsys, f"#1 (id {records[1]['problem_id']}): path:", message)
    assert not out.exists()
    data = tmp_path / "train.json"
    refused(["validate-data", data, "--root", synth["root"]], capsys, code=1)
    assert main(["validate-data", str(data), "--root", str(synth["root"]), "--allow-outside-root"]) == 0
    refused(
        ["eval", "--model", model_dir, "--bench", "video-r1", "--data", data, "--video-root", synth["root"],
         "--predictions", tmp_path / "p.jsonl"], capsys, message,
    )  # fmt: skip
    assert not (tmp_path / "p.jsonl").exists()


# ------------------------------------------------------------------------------------------------------ eval
def test_eval_with_every_video_missing_scores_nothing_and_says_so(tmp_path, synth, model_dir, capsys):
    preds = tmp_path / "p.jsonl"
    refused(
        ["eval", "--model", model_dir, "--bench", "video-r1", "--data", synth["test"], "--video-root", tmp_path,
         "--skip-missing", "--predictions", preds], capsys, "2 of 2 videos are missing", "nothing to evaluate",
    )  # fmt: skip
    assert not preds.exists()


def test_unknown_benchmark_is_a_message(tmp_path, synth, capsys):
    refused(
        ["eval", "score", "--bench", "videomm", "--data", synth["test"], "--predictions", tmp_path / "p.jsonl"],
        capsys, "unknown benchmark 'videomm'; valid:", "videomme",
    )  # fmt: skip


# ----------------------------------------------------------------------------------- settings and overrides
@pytest.mark.parametrize(
    "override, expected",
    [
        ("max_steps=abc", "trainer.max_steps='abc': expected an integer"),
        ("use_cpu=maybe", "trainer.use_cpu='maybe': expected true/false"),
        ("learning_rate=fast", "trainer.learning_rate='fast': expected a number"),
        ("lr_scheduler_type=bogus", "bogus is not a valid SchedulerType"),
        ("freeze_vision=maybe", "freeze_vision='maybe': expected true/false"),
        ("lora.r=abc", "lora.r='abc': expected an integer"),
        ("lora.rank=8", "unknown lora keys ['rank']"),
        ("max_steps=[1,", "override 'max_steps=[1,'"),
        ("use_vllm=true", "use_vllm=True is refused: vLLM is not installed; install it with: pip install"),
    ],
)
def test_overrides_are_typed_against_their_field(tmp_path, synth, model_dir, capsys, override, expected):
    recipe, out = write_recipe(tmp_path, synth, model_dir)
    refused(["train", "--config", recipe, override], capsys, expected)
    assert not out.exists()


def test_demo_overrides_are_typed(tmp_path, capsys):
    refused(
        ["demo", "--out", tmp_path / "d", "rl_steps=abc"],
        capsys,
        "demo setting rl_steps='abc': expected an integer",
    )
    assert not (tmp_path / "d").exists()


def test_yaml_errors_name_file_and_line(tmp_path, capsys):
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("model: m\ndata: {train: t.json}\ntrainer: {max_steps: 2\n")
    refused(["train", "--config", syntax], capsys, f"{syntax}:4: not valid YAML")
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("model: m\ndata: !!python/object/apply:os.system [echo hi]\n")
    refused(["train", "--config", tagged], capsys, f"{tagged}:2: not valid YAML", "no !!python tags")
    demo = tmp_path / "demo.yaml"
    demo.write_text("rl_steps: [1\n")
    refused(["demo", "--config", demo, "--out", tmp_path / "d"], capsys, f"{demo}:2: not valid YAML")
    refused(["ablate", "--config", demo, "--out", tmp_path / "a"], capsys, f"{demo}:2: not valid YAML")


def test_yaml_error_in_the_real_process(tmp_path):
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("model: !!python/object/apply:os.system [echo hi]\ndata: {train: t.json}\n")
    done = subprocess.run(
        [sys.executable, "-m", "videoktr.cli", "train", "--config", str(tagged)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{tagged}:1: not valid YAML" in done.stderr and "hi" not in done.stdout


# ------------------------------------------------------------------------------------------------- resume
def test_resume_without_a_checkpoint_is_a_message(tmp_path, synth, model_dir, capsys):
    recipe, out = write_recipe(tmp_path, synth, model_dir)
    refused(
        ["train", "--config", recipe, "resume_from_checkpoint=true"], capsys,
        "no complete checkpoint-N in", "resume_from_checkpoint=null",
    )  # fmt: skip
    assert not out.exists()


def test_resume_skips_a_checkpoint_cut_off_mid_save(tmp_path, synth, model_dir, capsys, caplog):
    recipe, out = write_recipe(tmp_path, synth, model_dir, max_steps=3, save_strategy="steps", save_steps=1)
    assert main(["train", "--config", str(recipe), "max_steps=2"]) == 0
    (out / "checkpoint-2" / "trainer_state.json").unlink()  # killed while saving checkpoint-2
    assert main(["train", "--config", str(recipe), "resume_from_checkpoint=true"]) == 0
    assert "skipping incomplete checkpoint" in caplog.text and "checkpoint-2" in caplog.text
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    # steps 2 and 3 were trained after checkpoint-1: the log holds step 1 (restored) then 2 and 3
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3]


# ------------------------------------------------------------------------------------- validate-data
def test_validate_data_default_frames_accepts_make_synthetic_videos(synth, capsys):
    assert main(["validate-data", str(synth["train"]), "--root", str(synth["root"])]) == 0
    out = capsys.readouterr().out
    assert "0 errors" in out and "--frames N" in out
    # asking for more frames than the 8-frame videos have is still an error, per record
    assert main(["validate-data", str(synth["train"]), "--root", str(synth["root"]), "--frames", "16"]) == 1
    assert "too short" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- cases that already worked
def test_bad_media_files_are_listed_by_validate_data_and_skipped_by_train(tmp_path, synth, model_dir, capsys):
    root = Path(synth["root"])
    video = (root / records_of(synth)[0]["path"]).read_bytes()
    media = tmp_path / "media"
    media.mkdir()
    (media / "cut.mp4").write_bytes(video[: len(video) // 3])
    (media / "empty.mp4").write_bytes(b"")
    (media / "text.mp4").write_text("not a video")
    (media / "ok.mp4").write_bytes(video)
    base = records_of(synth)[0]
    names = ["ok", "gone", "cut", "empty", "text"]
    records = [{**base, "problem_id": name, "path": f"media/{name}.mp4"} for name in names]
    data = tmp_path / "train.json"
    data.write_text(json.dumps(records))
    assert main(["validate-data", str(data), "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for name in ("gone", "cut", "empty", "text"):
        assert f"(id {name}): path:" in out
    assert "(id ok)" not in out
    # train keeps the readable one, records the others with their reasons, substitutes nothing
    from videoktr.training.recipe import Recipe, build_trainer

    trainer = build_trainer(
        Recipe(model=str(model_dir), data={"train": str(data), "root": str(tmp_path)}, rewards=["format"],
               trainer={**TRAINER, "output_dir": str(tmp_path / "run")})
    )  # fmt: skip
    assert [row["problem_id"] for row in trainer.train_dataset] == ["ok"]
    assert [s["problem_id"] for s in trainer.skipped_videos] == ["gone", "cut", "empty", "text"]


def test_trailing_comma_names_file_and_line(tmp_path, synth, model_dir, capsys):
    data = tmp_path / "train.json"
    data.write_text('[\n  {"problem_id": 1},\n]\n')
    refused(["validate-data", data, "--root", tmp_path], capsys, f"{data}:3: invalid JSON")
    recipe, out = write_recipe(tmp_path, synth, model_dir)
    data.write_text('[\n  {"problem_id": 1},\n]\n')  # write_recipe rewrote it
    refused(["train", "--config", recipe], capsys, f"{data}:3: invalid JSON")
    assert not out.exists()


def test_bad_problem_type_is_named(tmp_path, synth, capsys):
    records = records_of(synth)
    records[0]["problem_type"] = "mcq"
    data = tmp_path / "train.json"
    data.write_text(json.dumps(records))
    assert main(["validate-data", str(data), "--root", str(synth["root"])]) == 1
    assert "problem_type: 'mcq' is not one of" in capsys.readouterr().out


def test_recipe_base_loop_is_a_message(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nmodel: m\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\ndata: {train: t.json}\n")
    refused(["train", "--config", tmp_path / "a.yaml"], capsys, "'base' chain loops")
