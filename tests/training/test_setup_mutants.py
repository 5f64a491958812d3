"""The rest of the training set-up, pinned where mutation testing (docs/testing.md, module training/setup) found
nothing checking it, without training: RL rows from records (training/data.py), the demo's callbacks with a fake
clock and a fake evaluation (callbacks.py), ``videoktr train`` with a fake trainer (commands.py) and the SFT
collator on the tiny processor (sft.py)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from videoktr.data.prompts import build_question
from videoktr.data.video import VideoSamplingConfig, probe_video
from videoktr.errors import UserError
from videoktr.training import callbacks, commands, sft
from videoktr.training import data as D

SAMPLING = VideoSamplingConfig(num_frames=4, max_pixels=56 * 112)


def message(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as err:
        fn(*args, **kwargs)
    return str(err.value)


@pytest.fixture(scope="module")
def records(synthetic_data):
    return json.loads(synthetic_data["train"].read_text())


# ---------------------------------------------------------------------------------------------- RL rows
def test_rows_carry_every_reward_column_any_record_has(records, synthetic_data):
    first = {k: v for k, v in records[0].items() if k not in ("family", "data_type")}  # fewer columns
    second = {**records[1], "extra": 1}
    prepared = D.prepare_rl_rows([first, second], synthetic_data["root"], SAMPLING, "short")
    columns = ["problem_id", "problem_type", "solution", "options", "data_type", "family", "question_kind"]
    assert [list(row)[1:] for row in prepared.rows] == [columns, columns]
    assert (prepared.rows[0]["family"], prepared.rows[0]["data_type"]) == (None, None)
    assert prepared.rows[1]["family"] == records[1]["family"]
    (message,) = prepared.rows[0]["prompt"]
    assert message["content"] == [
        {"type": "video", "video": str(synthetic_data["root"] / records[0]["path"])},
        {"type": "text", "text": build_question(first, "short")},
    ]
    assert build_question(first, "short") != build_question(first, "video-r1")
    few = {"problem_id": "p", "path": records[0]["path"], "problem": "Q?", "problem_type": "free-form"}
    only_two = D.prepare_rl_rows([few], synthetic_data["root"], SAMPLING, "short")
    assert [k for k in only_two.rows[0] if k != "prompt"] == ["problem_id", "problem_type"]


def test_chosen_frames_are_checked_and_carried(records, synthetic_data):
    total = probe_video(synthetic_data["root"] / records[0]["path"]).total_frames
    chosen = {**records[0], "frame_indices": [0, total - 1]}
    outside = {**records[1], "frame_indices": [0, total]}
    prepared = D.prepare_rl_rows([chosen, outside], synthetic_data["root"], SAMPLING, "short")
    assert prepared.rows[0]["prompt"][0]["content"][0]["frame_indices"] == [0, total - 1]
    assert [s["problem_id"] for s in prepared.skipped] == [records[1]["problem_id"]]
    reason = prepared.skipped[0]["reason"]
    assert f"frame indices [0, {total}] fall outside the video's {total} frames (0..{total - 1})" in reason
    plain = D.prepare_rl_rows([records[0]], synthetic_data["root"], SAMPLING, "short")
    assert "frame_indices" not in plain.rows[0]["prompt"][0]["content"][0]


def test_a_video_too_short_for_the_sampling_is_skipped(records, synthetic_data, caplog):
    total = probe_video(synthetic_data["root"] / records[0]["path"]).total_frames
    long = VideoSamplingConfig(num_frames=2 * total + 2, max_pixels=56 * 112)
    record = {k: v for k, v in records[0].items() if k != "problem_id"}
    chosen = {
        **records[1],
        "frame_indices": [0, 1],
    }  # explicit frames: checked against the video, not the sampling
    with caplog.at_level(logging.WARNING, logger="videoktr.training.data"):
        prepared = D.prepare_rl_rows(
            [chosen, record], synthetic_data["root"], long, "short", check_videos=True
        )
    assert [row["problem_id"] for row in prepared.rows] == [records[1]["problem_id"]]
    path = synthetic_data["root"] / records[0]["path"]
    reason = (
        f"cannot decode video {path}: too short: it has {total} frames, fewer than num_frames={2 * total + 2}; "
        "lower num_frames or sample by fps"
    )
    assert prepared.skipped == [{"problem_id": 1, "path": str(path), "reason": reason}]  # named by its index
    assert [r.getMessage() for r in caplog.records] == [f"skipping record 1: {reason}"]


def test_unchecked_videos_and_unusable_records(records, synthetic_data, tmp_path):
    gone = {**records[0], "path": "videos/gone.mp4"}
    prepared = D.prepare_rl_rows([gone], synthetic_data["root"], SAMPLING, "short", check_videos=False)
    assert prepared.skipped == [] and len(prepared.rows) == 1
    no_type = {k: v for k, v in records[0].items() if k != "data_type"}  # video by default
    assert len(D.prepare_rl_rows([no_type], synthetic_data["root"], SAMPLING, "short").rows) == 1
    assert message(D.prepare_rl_rows, [records[0], ["x"]], synthetic_data["root"], SAMPLING, "short") == (
        "record #1: expected a JSON object, got list"
    )
    image = {k: v for k, v in records[0].items() if k != "problem_id"} | {"data_type": "image"}
    assert message(D.prepare_rl_rows, [records[0], image], synthetic_data["root"], SAMPLING, "short") == (
        "record 1: data_type='image'; the video trainer reads video records (train image records with TRL's "
        "image path: see docs/training.md)"
    )
    reason = D.prepare_rl_rows([gone, records[0]], synthetic_data["root"], SAMPLING, "short").skipped[0][
        "reason"
    ]
    first = {
        "problem_id": records[0]["problem_id"],
        "path": str(synthetic_data["root"] / "videos" / "gone.mp4"),
    }
    assert message(D.prepare_rl_rows, [gone], synthetic_data["root"], SAMPLING, "short") == (
        f"no usable record: all 1 were skipped (first: {[{**first, 'reason': reason}]})"
    )


def test_videos_resolve_under_the_root_and_skips_are_written(tmp_path):
    assert D.resolve_video({"path": "v/a.mp4"}, tmp_path) == tmp_path / "v" / "a.mp4"
    assert D.resolve_video({"path": "/abs/b.mp4"}, str(tmp_path)) == Path("/abs/b.mp4")
    skipped = [{"problem_id": "a", "reason": "r"}, {"problem_id": 2, "reason": "s"}]
    D.PreparedData(rows=[], skipped=skipped).write_skipped(tmp_path / "s.jsonl")
    assert (
        tmp_path / "s.jsonl"
    ).read_text() == '{"problem_id": "a", "reason": "r"}\n{"problem_id": 2, "reason": "s"}\n'
    assert D.PreparedData(rows=[1]).skipped == []
    dataset = D.to_dataset([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    assert len(dataset) == 2 and dataset[1] == {"a": 2, "b": "y"}


# -------------------------------------------------------------------------------------------- callbacks
def test_rollout_generation_copies_every_sampling_field():
    args = SimpleNamespace(
        max_completion_length=33, temperature=0.7, top_p=0.9, top_k=None, min_p=0.05, repetition_penalty=1.1,
        seed=4,
    )  # fmt: skip
    g = callbacks.rollout_generation(args)
    assert (g.max_new_tokens, g.temperature, g.top_p, g.top_k, g.min_p, g.repetition_penalty, g.seed) == (
        33, 0.7, 0.9, 0, 0.05, 1.1, 4,
    )  # fmt: skip
    assert callbacks.rollout_generation(SimpleNamespace(**{**vars(args), "top_k": 5})).top_k == 5


class Clock:
    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now


def test_time_budget_stops_after_the_budget_less_the_excluded_time(monkeypatch):
    clock = Clock(100.0)
    monkeypatch.setattr(callbacks, "time", clock)
    plain = callbacks.TimeBudget(5.0)
    excluded = SimpleNamespace(seconds=0.0)
    budget = callbacks.TimeBudget(5.0, excluded=excluded)
    control = SimpleNamespace(should_training_stop=False)
    clock.now = 105.0  # 5 s spent: not more than 5
    plain.on_step_end(None, None, control)
    assert not control.should_training_stop and not plain.stopped_early
    clock.now = 105.5
    excluded.seconds = 1.0  # 5.5 - 1 = 4.5 s count
    budget.on_step_end(None, None, control)
    assert not control.should_training_stop and not budget.stopped_early
    plain.on_step_end(None, None, control)
    assert control.should_training_stop and plain.stopped_early
    control.should_training_stop = False
    clock.now = 106.5  # 6.5 - 1 = 5.5 s > 5
    budget.on_step_end(None, None, control)
    assert control.should_training_stop and budget.stopped_early


def test_quiet_progress_replaces_the_printers_with_one_bar(monkeypatch):
    from rich.progress import TextColumn
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer = SimpleNamespace(removed=[], added=[])
    trainer.remove_callback = trainer.removed.append
    trainer.add_callback = trainer.added.append
    callbacks.quiet_progress(trainer, "RL")
    assert trainer.removed == [PrinterCallback, ProgressCallback]
    (bar,) = trainer.added
    bar.on_log(None, None, None, logs={"loss": 1.0})  # before training begins: nothing to update
    bar.progress.start = bar.progress.stop = lambda: None  # no live display in the test
    bar.on_train_begin(None, SimpleNamespace(max_steps=7), None)
    (task,) = bar.progress.tasks
    assert (task.description, task.total, task.fields["status"]) == ("RL", 7, "")
    logs = {"loss": 0.12345, "rewards/accuracy/mean": 0.5, "ktr/selected_frac/union": 0.25, "other": 9.0}
    bar.on_log(None, None, None, logs=logs)
    assert task.fields["status"] == "loss=0.123 accuracy=0.500 ktr/selected_frac/union=0.250"
    bar.on_log(None, None, None, logs={})  # an empty log leaves the status
    assert task.fields["status"] == "loss=0.123 accuracy=0.500 ktr/selected_frac/union=0.250"
    bar.on_step_end(None, SimpleNamespace(global_step=3), None)
    assert task.completed == 3
    texts = [str(c.render(task)) for c in bar.progress.columns if isinstance(c, TextColumn)]
    assert texts == ["RL", "loss=0.123 accuracy=0.500 ktr/selected_frac/union=0.250"]
    stopped = []
    bar.progress.stop = lambda: stopped.append(True)
    bar.on_train_end(None, None, None)
    assert stopped == [True]


class Evaluations:
    """A fake ``videoktr.eval.runner.evaluate``: accuracy 0.25 greedy, 0.75 sampled; draws from torch's RNG as
    sampling does."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, processor, items, sampling, **kwargs):
        self.calls.append(
            {"model": model, "processor": processor, "items": items, "sampling": sampling, **kwargs}
        )
        torch.rand(3)
        greedy = kwargs["generation"].temperature == 0.0
        return None, {"accuracy": 0.25 if greedy else 0.75, "by_category": {"c": 0.5 if greedy else 1.0}}


ARGS = SimpleNamespace(
    max_completion_length=12, temperature=0.9, top_p=0.8, top_k=0, min_p=None, repetition_penalty=1.0, seed=1
)


@pytest.fixture
def held_out(monkeypatch, tmp_path):
    import videoktr.eval.runner

    fake, clock = Evaluations(), Clock(50.0)
    monkeypatch.setattr(videoktr.eval.runner, "evaluate", fake)
    monkeypatch.setattr(callbacks, "time", clock)
    out = tmp_path / "new" / "heldout.jsonl"
    callback = callbacks.HeldOutEval(["i1", "i2"], SAMPLING, "root", "short", 2, out, batch_size=3)
    return callback, fake, out


def test_held_out_points_at_start_every_n_steps_and_end(held_out):
    callback, fake, out = held_out
    model = torch.nn.Linear(1, 1)
    model.train()
    rng = torch.random.get_rng_state()
    kw = dict(model=model, processing_class="proc")
    callback.on_train_begin(ARGS, SimpleNamespace(global_step=0), None, **kw)
    assert torch.equal(torch.random.get_rng_state(), rng) and model.training  # training left as it was
    for step in (1, 2, 3):
        callback.on_step_end(ARGS, SimpleNamespace(global_step=step), None, **kw)
    callback.on_train_end(ARGS, SimpleNamespace(global_step=3), None, **kw)
    callback.on_train_end(ARGS, SimpleNamespace(global_step=3), None, **kw)  # once per step
    points = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["step"] for p in points] == [0, 2, 3]
    assert points[0] == {
        "step": 0, "greedy": 0.25, "greedy_by_category": {"c": 0.5}, "sampled": 0.75,
        "sampled_by_category": {"c": 1.0}, "n_items": 2, "seconds": 0.0,
    }  # fmt: skip
    assert len(fake.calls) == 6 and callback.seconds == 0.0
    greedy, sampled = fake.calls[0]["generation"], fake.calls[1]["generation"]
    assert (greedy.temperature, greedy.max_new_tokens) == (0.0, 12)
    assert sampled == callbacks.rollout_generation(ARGS)
    call = fake.calls[0]
    assert (call["model"], call["processor"], call["items"], call["sampling"]) == (
        model,
        "proc",
        ["i1", "i2"],
        SAMPLING,
    )
    assert (call["video_root"], call["batch_size"], call["template"]) == ("root", 3, "short")


def test_held_out_keeps_the_time_spent_and_the_eval_mode(held_out, monkeypatch):
    callback, fake, out = held_out
    clock = callbacks.time
    original = fake.__call__

    def slow(*args, **kwargs):
        clock.now += 1.5
        return original(*args, **kwargs)

    monkeypatch.setattr(Evaluations, "__call__", lambda self, *a, **k: slow(*a, **k))
    model = torch.nn.Linear(1, 1).eval()
    callback.on_train_begin(ARGS, SimpleNamespace(global_step=0), None, model=model, processing_class=None)
    assert not model.training and callback.seconds == 3.0
    assert json.loads(out.read_text())["seconds"] == 3.0


def test_a_resumed_run_keeps_the_points_up_to_its_step(held_out):
    callback, fake, out = held_out
    out.parent.mkdir(parents=True)
    out.write_text("".join(json.dumps({"step": s}) + "\n" for s in (0, 2, 4)))
    callback.on_train_begin(ARGS, SimpleNamespace(global_step=2), None, model=torch.nn.Linear(1, 1))
    assert fake.calls == []  # step 2 was evaluated before the restart
    assert [json.loads(line)["step"] for line in out.read_text().splitlines()] == [0, 2]
    callback.on_step_end(ARGS, SimpleNamespace(global_step=4), None, model=torch.nn.Linear(1, 1))
    assert [json.loads(line)["step"] for line in out.read_text().splitlines()] == [0, 2, 4]


def test_held_out_every_must_be_positive(monkeypatch, tmp_path):
    with pytest.raises(ValueError) as err:
        callbacks.HeldOutEval([], SAMPLING, "root", "short", 0, tmp_path / "o.jsonl")
    assert str(err.value) == "HeldOutEval: every=0 must be >= 1 (leave the callback out instead)"
    assert callbacks.HeldOutEval([], SAMPLING, "root", "short", 1, tmp_path / "o.jsonl").done == set()


# --------------------------------------------------------------------------------------- videoktr train
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="videoktr")
    commands.add_parser(top.add_subparsers(dest="command"))
    return top


def test_train_arguments():
    args = parser().parse_args(["train", "--config", "r.yaml", "a=1", "trainer.b=2", "--skip-plan-check"])
    assert (args.config, args.overrides, args.skip_plan_check, args.list_fields) == (
        "r.yaml", ["a=1", "trainer.b=2"], True, False,
    )  # fmt: skip
    assert args.func is commands.run
    defaults = parser().parse_args(["train", "--list-fields"])
    assert (defaults.config, defaults.overrides, defaults.skip_plan_check, defaults.list_fields) == (
        None,
        [],
        False,
        True,
    )
    (sub,) = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    (choice,) = sub._choices_actions
    assert choice.help == "RL training (Video-KTR, GRPO, entropy, T-GRPO, TW-GRPO) from a YAML recipe"
    train = sub.choices["train"]
    assert train.description == (
        "Train from a recipe. Overrides: key=value, e.g. method=grpo trainer.learning_rate=1e-5 lora.r=8"
    )
    assert {a.dest: a.help for a in train._actions if a.dest != "help"} == {
        "config": "recipe YAML (configs/*.yaml)",
        "list_fields": "list the Video-KTR config fields and exit",
        "skip_plan_check": "train even if `videoktr plan` finds the sequence longer than the model's limit or the "
        "memory estimate above the GPU's memory",
        "overrides": "key=value overrides (dotted keys; bare keys go to trainer)",
    }


def test_list_fields_prints_our_fields_and_the_trl_fields_we_redefine(capsys):
    import dataclasses

    from trl import GRPOConfig

    from videoktr.training.config import KTRConfig

    assert commands.run(SimpleNamespace(list_fields=True, config=None)) == 0
    lines = capsys.readouterr().out.splitlines()
    trl = {f.name: f for f in dataclasses.fields(GRPOConfig)}
    ours = [
        f for f in dataclasses.fields(KTRConfig) if f.name not in trl or f.metadata != trl[f.name].metadata
    ]
    assert lines == [f"{f.name}: {f.metadata['help']}" for f in ours] + [
        "(plus every trl.GRPOConfig / transformers.TrainingArguments field)"
    ]
    names = [line.split(":")[0] for line in lines[:-1]]
    # KTRConfig's own defaults of these TRL fields differ from TRL's (beta 0.0, loss_type dapo, bias correction on)
    assert {"beta", "loss_type", "use_bias_correction_kl", "method"} <= set(names)
    assert "learning_rate" not in names and "num_generations" not in names
    assert lines[0].startswith("beta: KL coefficient (k3 estimator, every valid token). Default 0.04 ")


def test_train_needs_a_config():
    assert message(commands.run, SimpleNamespace(list_fields=False, config=None)) == (
        "--config FILE.yaml is required (recipes are in configs/)"
    )


class FakeTrainer:
    def __init__(self, output_dir, main=True):
        self.calls = []
        self.args = SimpleNamespace(output_dir=output_dir)
        self.accelerator = SimpleNamespace(is_main_process=main)
        self.processing_class = SimpleNamespace(save_pretrained=lambda d: self.calls.append(("processor", d)))

    def train(self, resume_from_checkpoint=None):
        self.calls.append(("train", resume_from_checkpoint))

    def save_model(self, d):
        self.calls.append(("model", d))


@pytest.mark.parametrize("skip_plan, main", [(False, True), (True, False)])
def test_train_runs_the_checks_then_the_trainer(tmp_path, monkeypatch, skip_plan, main):
    import videoktr.plan.commands
    import videoktr.training.recipe

    out = tmp_path / "out"
    (out / "checkpoint-3").mkdir(parents=True)
    for name in ("model.safetensors", "trainer_state.json"):
        (out / "checkpoint-3" / name).write_text("{}")  # save_only_model: no optimizer state needed
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(
        f"model: m\ndata: {{train: t.json}}\ntrainer: {{output_dir: {out}, use_cpu: true}}\n"
    )
    planned, built = [], []
    trainer = FakeTrainer(str(out), main=main)
    monkeypatch.setattr(videoktr.plan.commands, "check_before_load", planned.append)
    monkeypatch.setattr(
        videoktr.training.recipe,
        "build_trainer",
        lambda recipe, config: built.append((recipe, config)) or trainer,
    )
    args = SimpleNamespace(
        list_fields=False, config=str(recipe_path), skip_plan_check=skip_plan,
        overrides=["resume_from_checkpoint=true", "save_only_model=true", "seed=7"],
    )  # fmt: skip
    assert commands.run(args) == 0
    ((recipe, config),) = built
    assert recipe.trainer["seed"] == 7 and config.seed == 7 and config.save_only_model
    assert planned == ([] if skip_plan else [recipe])
    assert trainer.calls == [
        ("train", str(out / "checkpoint-3")), ("model", str(out)), ("processor", str(out)),
    ]  # fmt: skip
    assert (out / "recipe.yaml").is_file() is main


def test_fsdp_on_cpu_is_refused(monkeypatch):
    cpu, gpu = SimpleNamespace(use_cpu=True), SimpleNamespace(use_cpu=False)
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    commands._check_sharding(cpu)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    commands._check_sharding(cpu)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "True")
    commands._check_sharding(gpu)
    assert message(commands._check_sharding, cpu) == (
        "an FSDP accelerate config with use_cpu: accelerate runs it as plain DDP on CPU (no sharding); launch "
        "with configs/accelerate/multi_cpu.yaml for CPU data parallelism, or run FSDP on GPUs"
    )


# --------------------------------------------------------------------------------------------------- SFT
def test_sft_target():
    assert sft.sft_target({"process": " <think>a</think> ", "solution": "\n<answer>B</answer> "}) == (
        "<think>a</think><answer>B</answer>"
    )
    for bad in ({"process": "", "solution": "s"}, {"process": "p"}, {"problem_id": "q7", "solution": "s"}):
        assert message(sft.sft_target, bad) == (
            f"SFT record {bad.get('problem_id')}: needs non-empty 'process' and 'solution'"
        )


@pytest.fixture(scope="module")
def sft_records(synthetic_data):
    return json.loads(synthetic_data["train_sft"].read_text())


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def test_sft_example_trains_on_the_target_tokens_only(processor, sft_records, synthetic_data):
    from videoktr.models.qwen2_5_vl import build_video_inputs

    record = sft_records[0]
    collator = sft.SFTCollator(processor, synthetic_data["root"], SAMPLING, template="short")
    example = collator.example(record)
    tok = processor.tokenizer
    target = (
        tok(sft.sft_target(record), add_special_tokens=False)["input_ids"]
        + tok("<|im_end|>", add_special_tokens=False)["input_ids"]
    )
    video = collator._video(record)
    prompt = build_video_inputs(processor, [build_question(record, "short")], [video], sampling=SAMPLING)
    n = int(prompt["attention_mask"][0].sum())
    assert example["input_ids"].tolist() == prompt["input_ids"][0][:n].tolist() + target
    assert example["labels"].tolist() == [-100] * n + target
    assert example["mm_token_type_ids"].tolist() == prompt["mm_token_type_ids"][0][:n].tolist() + [0] * len(
        target
    )
    assert sum(example["mm_token_type_ids"].tolist()) > 0  # the video tokens are marked
    assert torch.equal(example["pixel_values_videos"], prompt["pixel_values_videos"])
    assert example["video_grid_thw"].tolist() == [[2, 4, 8]]  # 4 frames = 2 temporal patches of 4x8
    assert example["second_per_grid_ts"].dtype == torch.float32
    assert tok.decode([t for t in example["labels"].tolist() if t != -100]).endswith("<|im_end|>")
    assert collator.pad_id == tok.pad_token_id and collator.template == "short"


def test_sft_examples_are_cached_by_record_unless_told_not_to(processor, sft_records, synthetic_data):
    cached = sft.SFTCollator(processor, synthetic_data["root"], SAMPLING, template="short")
    assert cached.example(sft_records[0]) is cached.example(sft_records[0])
    fresh = sft.SFTCollator(processor, synthetic_data["root"], SAMPLING, "short", cache_examples=False)
    a, b = fresh.example(sft_records[0]), fresh.example(sft_records[0])
    assert a is not b and torch.equal(a["input_ids"], b["input_ids"])


def test_sft_chosen_frames_are_used(processor, sft_records, synthetic_data):
    collator = sft.SFTCollator(processor, synthetic_data["root"], SAMPLING, "short")
    example = collator.example({**sft_records[0], "frame_indices": [0, 1]})  # 2 frames = 1 temporal patch
    assert example["video_grid_thw"].tolist() == [[1, 4, 8]]


def test_sft_batch_is_right_padded(processor, sft_records, synthetic_data):
    collator = sft.SFTCollator(processor, synthetic_data["root"], SAMPLING, "short")
    short = {**sft_records[0], "process": "<think>x</think>"}
    long = {**sft_records[1]}
    batch = collator([short, long])
    a, b = collator.example(short), collator.example(long)
    la, lb = a["input_ids"].numel(), b["input_ids"].numel()
    assert la < lb and batch["input_ids"].shape == (2, lb)
    pad = lb - la
    assert batch["input_ids"][0].tolist() == a["input_ids"].tolist() + [collator.pad_id] * pad
    assert batch["input_ids"][1].tolist() == b["input_ids"].tolist()
    assert batch["attention_mask"].tolist() == [[1] * la + [0] * pad, [1] * lb]
    assert batch["labels"][0].tolist() == a["labels"].tolist() + [-100] * pad
    assert batch["mm_token_type_ids"][0].tolist() == a["mm_token_type_ids"].tolist() + [0] * pad
    assert torch.equal(
        batch["pixel_values_videos"], torch.cat([a["pixel_values_videos"], b["pixel_values_videos"]])
    )
    assert batch["video_grid_thw"].tolist() == [[2, 4, 8], [2, 4, 8]]
    assert batch["second_per_grid_ts"].tolist() == [
        a["second_per_grid_ts"].item(),
        b["second_per_grid_ts"].item(),
    ]


def test_run_sft_wiring(monkeypatch, processor, sft_records, synthetic_data):
    import transformers

    made = []

    class Trainer:
        def __init__(self, **kwargs):
            self.kwargs, self.trained = kwargs, False
            made.append(self)

        def train(self):
            self.trained = True

    monkeypatch.setattr(transformers, "Trainer", Trainer)
    args = SimpleNamespace(remove_unused_columns=True)
    seen = []
    trainer = sft.run_sft("model", processor, sft_records, synthetic_data["root"], SAMPLING, args,
                          sft.SFTOptions(template="short", cache_examples=False), before_train=seen.append)  # fmt: skip
    assert made == [trainer] and seen == [trainer] and trainer.trained
    assert args.remove_unused_columns is False  # the collator reads the raw records
    kw = trainer.kwargs
    assert (kw["model"], kw["args"]) == ("model", args)
    assert len(kw["train_dataset"]) == 2 and kw["train_dataset"][1] is sft_records[1]
    collator = kw["data_collator"]
    assert (collator.template, collator._cache, collator.root, collator.sampling) == (
        "short", None, synthetic_data["root"], SAMPLING,
    )  # fmt: skip
    default = sft.run_sft("m", processor, sft_records, "r", SAMPLING, SimpleNamespace())
    assert (
        default.kwargs["data_collator"].template == "video-r1"
        and default.kwargs["data_collator"]._cache == {}
    )
    made.clear()
    with pytest.raises(UserError, match="needs non-empty 'process'"):
        sft.run_sft("m", processor, [sft_records[0], {"problem_id": "x"}], "r", SAMPLING, SimpleNamespace())
    assert made == []  # refused before the Trainer is built


def test_skips_are_named_by_problem_id_with_the_decoder_reason(records, synthetic_data, caplog):
    total = probe_video(synthetic_data["root"] / records[0]["path"]).total_frames
    outside = {**records[0], "frame_indices": [0, total]}
    with caplog.at_level(logging.WARNING, logger="videoktr.training.data"):
        prepared = D.prepare_rl_rows([outside, records[1]], synthetic_data["root"], SAMPLING, "short")
    path = synthetic_data["root"] / records[0]["path"]
    reason = (
        f"cannot decode video {path}: frame indices [0, {total}] fall outside the video's {total} frames "
        f"(0..{total - 1})"
    )
    assert prepared.skipped == [{"problem_id": records[0]["problem_id"], "path": str(path), "reason": reason}]
    assert [r.getMessage() for r in caplog.records] == [
        f"skipping record {records[0]['problem_id']}: {reason}"
    ]


def test_no_usable_record_shows_the_first_skip_only(records, synthetic_data):
    gone = [{**records[i], "path": f"videos/gone{i}.mp4"} for i in (0, 1)]
    text = message(D.prepare_rl_rows, gone, synthetic_data["root"], SAMPLING, "short")
    assert text.startswith(
        f"no usable record: all 2 were skipped (first: [{{'problem_id': '{records[0]['problem_id']}'"
    )
    assert "gone0.mp4" in text and "gone1.mp4" not in text


def test_progress_bar_columns():
    trainer = SimpleNamespace(remove_callback=lambda c: None, added=[])
    trainer.add_callback = trainer.added.append
    callbacks.quiet_progress(trainer, "RL")
    assert [type(c).__name__ for c in trainer.added[0].progress.columns] == [
        "TextColumn", "BarColumn", "MofNCompleteColumn", "TimeElapsedColumn", "TextColumn",
    ]  # fmt: skip


def test_fsdp_on_cpu_is_refused_before_anything_loads(tmp_path, monkeypatch):
    import videoktr.training.recipe

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setattr(videoktr.training.recipe, "build_trainer", lambda *a, **k: pytest.fail("built"))
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(
        f"model: m\ndata: {{train: t.json}}\ntrainer: {{output_dir: {tmp_path}, use_cpu: true}}\n"
    )
    args = SimpleNamespace(list_fields=False, config=str(recipe_path), skip_plan_check=True, overrides=[])
    assert message(commands.run, args).startswith("an FSDP accelerate config with use_cpu: ")


def test_resume_needs_the_optimizer_unless_only_the_model_is_saved(tmp_path, monkeypatch):
    import videoktr.training.recipe

    monkeypatch.setattr(videoktr.training.recipe, "build_trainer", lambda *a, **k: pytest.fail("built"))
    out = tmp_path / "out"
    (out / "checkpoint-3").mkdir(parents=True)
    for name in ("model.safetensors", "trainer_state.json"):
        (out / "checkpoint-3" / name).write_text("{}")
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(
        f"model: m\ndata: {{train: t.json}}\ntrainer: {{output_dir: {out}, use_cpu: true}}\n"
    )
    args = SimpleNamespace(
        list_fields=False,
        config=str(recipe_path),
        skip_plan_check=True,
        overrides=["resume_from_checkpoint=true"],
    )
    assert message(commands.run, args).startswith("resume_from_checkpoint=true: no complete checkpoint-N in ")


def test_sft_collator_defaults_and_pad_token(processor, sft_records, synthetic_data):
    collator = sft.SFTCollator(processor, synthetic_data["root"], SAMPLING)
    assert collator.template == "video-r1" and collator._cache == {}
    collator.pad_id = 7  # the tiny tokenizer's pad id is 0, as the default fill: use another to see it
    batch = collator([{**sft_records[0], "process": "<think>x</think>"}, sft_records[1]])
    a = collator.example({**sft_records[0], "process": "<think>x</think>"})
    pad = batch["input_ids"].shape[1] - a["input_ids"].numel()
    assert pad > 0 and batch["input_ids"][0].tolist()[-pad:] == [7] * pad


def test_sft_pixel_budget_comes_from_the_sampling(processor, sft_records, synthetic_data):
    # 56x112 frames within a 28*56-pixel budget are resized to 28x56: 2x4 patches of 14 pixels
    small = VideoSamplingConfig(num_frames=4, max_pixels=28 * 56)
    example = sft.SFTCollator(processor, synthetic_data["root"], small, "short").example(sft_records[0])
    assert example["video_grid_thw"].tolist() == [[2, 2, 4]]


def test_sft_without_timestamps_per_grid(processor, sft_records, synthetic_data, monkeypatch):
    # Qwen3-VL / Qwen3.5 processors write the timestamps in the text: no second_per_grid_ts in the example or batch
    import videoktr.models.qwen2_5_vl as qwen

    original = qwen.build_video_inputs

    def without(*args, **kwargs):
        inputs = dict(original(*args, **kwargs))
        inputs.pop("second_per_grid_ts")
        return inputs

    monkeypatch.setattr(qwen, "build_video_inputs", without)
    collator = sft.SFTCollator(processor, synthetic_data["root"], SAMPLING, "short")
    assert "second_per_grid_ts" not in collator.example(sft_records[0])
    assert "second_per_grid_ts" not in collator([sft_records[0]])
    with_ts = sft.SFTCollator(processor, synthetic_data["root"], SAMPLING, "short", cache_examples=False)
    monkeypatch.setattr(qwen, "build_video_inputs", original)
    one = with_ts([sft_records[0]])  # a batch of one example
    assert one["second_per_grid_ts"].shape == (1,) and one["input_ids"].shape[0] == 1
