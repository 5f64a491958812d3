"""Resume restores everything: an interrupted and resumed run equals an uninterrupted one, parameter by parameter,
with the same logged losses at every step (CPU, same seed)."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import TrainerCallback

from videoktr.data.synthetic import make_synthetic
from videoktr.errors import UserError

LOGGED = ("loss", "grad_norm", "reward", "learning_rate")


class StopAt(TrainerCallback):
    """Stop training after optimizer step ``step`` (after its checkpoint is written): a kill between steps."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


@pytest.fixture(scope="module")
def four_records(tmp_path_factory):
    paths = make_synthetic(tmp_path_factory.mktemp("four"), n_train=4, n_test=1, seed=1, num_frames=8)
    return {"train": str(paths["train"]), "root": str(paths["root"])}


def _logged(trainer) -> dict[int, dict[str, float]]:
    return {h["step"]: {k: h[k] for k in LOGGED if k in h} for h in trainer.state.log_history if "loss" in h}


def _params(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


def run_pair(make_trainer, tmp_path, stop: int, data=None, recipe=None, cut_last=False, **fields):
    """(uninterrupted trainer, resumed trainer) of the same run, the second stopped after ``stop`` then resumed
    (``cut_last``: its last checkpoint lost trainer_state.json, as if killed mid-save: resumed from the one before)."""
    fields = dict(save_strategy="steps", save_steps=1, **fields)
    full = make_trainer(data=data, recipe=recipe, output_dir=str(tmp_path / "full"), **fields)
    full.train()
    first = make_trainer(data=data, recipe=recipe, output_dir=str(tmp_path / "cut"), **fields)
    first.add_callback(StopAt(stop))
    first.train()
    assert first.state.global_step == stop
    if cut_last:
        (tmp_path / "cut" / f"checkpoint-{stop}" / "trainer_state.json").unlink()
    resumed = make_trainer(data=data, recipe=recipe, output_dir=str(tmp_path / "cut"), **fields)
    resumed.train(resume_from_checkpoint=True)
    return full, resumed


def assert_same_run(full, resumed):
    assert resumed.state.global_step == full.state.global_step
    assert _logged(resumed) == _logged(full)
    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys()
    different = [n for n in a if not torch.equal(a[n], b[n])]
    assert different == []


def test_resume_equals_uninterrupted_in_a_later_epoch(make_trainer, four_records, tmp_path, caplog):
    # 4 prompts, 1 per step: killed after step 6 while saving checkpoint-6, so the run resumes from checkpoint-5,
    # inside the second epoch (its order is the seed's second draw); 8 frames = 4 temporal patches, so the
    # temporal shuffle draws from the perturbation generator
    with caplog.at_level(logging.WARNING):
        full, resumed = run_pair(
            make_trainer, tmp_path, stop=6, cut_last=True, data=four_records, method="ktr",
            per_device_train_batch_size=2, max_steps=7, video_frames=8, log_selected_examples=-1,
        )  # fmt: skip
    assert "skipping incomplete checkpoint" in caplog.text and "checkpoint-6" in caplog.text
    assert_same_run(full, resumed)
    # the selection log holds each step once, as the uninterrupted run's (step 6, logged before the kill, is not
    # logged twice)
    lines = [(tmp_path / run / "selection.jsonl").read_text().splitlines() for run in ("full", "cut")]
    assert len(lines[0]) == 7 * 2 and lines[1] == lines[0]


def test_resume_between_a_generation_and_its_last_use(make_trainer, four_records, tmp_path):
    # accumulation 2, steps_per_generation 4, num_iterations 2: one generation feeds 4 optimizer steps; stopping
    # after step 2 leaves half of the buffered completions (and TRL's micro-step counter) to the checkpoint
    full, resumed = run_pair(
        make_trainer, tmp_path, stop=2, data=four_records, method="ktr", per_device_train_batch_size=2,
        gradient_accumulation_steps=2, steps_per_generation=4, num_iterations=2, max_steps=5,
    )  # fmt: skip
    assert_same_run(full, resumed)


def test_resume_with_lora(make_trainer, tmp_path):
    lora = {"lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}
    full, resumed = run_pair(
        make_trainer, tmp_path, stop=2, recipe=lora, method="grpo", per_device_train_batch_size=2, max_steps=3
    )
    assert any("lora_" in n for n, p in resumed.model.named_parameters() if p.requires_grad)
    assert_same_run(full, resumed)


# ---------------------------------------------------------------------------- choosing and checking a checkpoint
def _fake_checkpoint(path, complete=True):
    path.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "videoktr_state.pt"):
        (path / name).write_bytes(b"x")
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return path


def test_newest_complete_checkpoint_is_chosen_and_incomplete_ones_named(tmp_path, caplog):
    from videoktr.training.checkpoint import resolve_resume

    _fake_checkpoint(tmp_path / "checkpoint-2")
    _fake_checkpoint(tmp_path / "checkpoint-10")
    _fake_checkpoint(tmp_path / "checkpoint-12", complete=False)  # killed while saving
    with caplog.at_level(logging.WARNING):
        assert resolve_resume(True, tmp_path) == str(tmp_path / "checkpoint-10")  # 10 > 2 numerically
    assert "checkpoint-12" in caplog.text and "missing trainer_state.json" in caplog.text
    assert resolve_resume(None, tmp_path) is None
    with pytest.raises(UserError, match="not a complete checkpoint .missing trainer_state.json"):
        resolve_resume(str(tmp_path / "checkpoint-12"), tmp_path)


def test_resume_without_any_checkpoint_is_a_user_error(tmp_path):
    from videoktr.training.checkpoint import resolve_resume

    with pytest.raises(UserError, match="(?s)no complete checkpoint-N in .*resume_from_checkpoint=null"):
        resolve_resume(True, tmp_path / "never_trained")
    _fake_checkpoint(tmp_path / "checkpoint-1", complete=False)
    with pytest.raises(UserError, match="checkpoint-1: missing trainer_state.json"):
        resolve_resume(True, tmp_path)


def test_checkpoint_of_another_model_is_refused(tiny_model_dir, tmp_path):
    from safetensors.torch import save_file

    from videoktr.models.tiny import load_model_and_processor
    from videoktr.training.checkpoint import load_model_weights

    model, _ = load_model_and_processor(tiny_model_dir)
    (tmp_path / "ck").mkdir()
    save_file({"visual.other.weight": torch.zeros(2)}, str(tmp_path / "ck" / "model.safetensors"))
    with pytest.raises(UserError, match="does not match the model: .* missing keys .* 1 unexpected"):
        load_model_weights(model, tmp_path / "ck")


def test_saved_keys_are_renamed_to_the_model_layout(tiny_model_dir, tmp_path):
    # the bug: checkpoint keys are in the hub layout (visual.*, model.layers.*), the module's are model.visual.* /
    # model.language_model.*; loading must rename them, so +0.5 on every saved tensor shows in the model
    from safetensors.torch import load_file, save_file

    from videoktr.models.tiny import load_model_and_processor
    from videoktr.training.checkpoint import load_model_weights

    model, _ = load_model_and_processor(tiny_model_dir)
    model.save_pretrained(tmp_path / "ck")
    saved = load_file(str(tmp_path / "ck" / "model.safetensors"))
    assert any(k.startswith("visual.") for k in saved) and any(k.startswith("model.layers.") for k in saved)
    save_file({k: v + 0.5 for k, v in saved.items()}, str(tmp_path / "ck" / "model.safetensors"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert load_model_weights(model, tmp_path / "ck")
    assert all(torch.allclose(p, before[n] + 0.5) for n, p in model.named_parameters())


# --------------------------------------------------------------------------------------------- 2 processes
@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_resume_equals_uninterrupted(four_records, tiny_model_dir, tmp_path):
    """`accelerate launch` with 2 CPU processes: a run resumed from checkpoint-2 (each process restores its own RNG,
    rollout buffer and generator) ends with the weights and log of the uninterrupted 3-step run. 4 prompts, 2 per
    step: step 3 opens the second epoch, whose order must be the seed's second draw."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from safetensors.torch import load_file

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "full"
    trainer = dict(
        method="ktr", output_dir=str(out), use_cpu=True, bf16=False, report_to="none", seed=0, max_steps=3,
        num_generations=2, per_device_train_batch_size=2, max_completion_length=16, learning_rate=1e-3,
        video_frames=4, video_max_pixels=56 * 112, prompt_template="short", length_bonus=False,
        gradient_checkpointing=False, logging_steps=1, save_strategy="steps", save_steps=1, disable_tqdm=True,
    )  # fmt: skip
    recipe = {
        "model": str(tiny_model_dir), "rewards": ["resume_rewards:alternating"], "trainer": trainer,
        "data": four_records,
    }  # fmt: skip
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(repo / "configs" / "accelerate" / "multi_cpu.yaml"), "--num_processes", "2",
        "-m", "videoktr.cli", "train", "--config", str(tmp_path / "recipe.yaml"),
    ]  # fmt: skip
    # rewards 0, 1, 0, 1 by row (never all equal in a group): every step moves the weights
    (tmp_path / "resume_rewards.py").write_text(
        "def alternating(completions, **kwargs):\n    return [float(i % 2) for i in range(len(completions))]\n"
    )
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert {p.name for p in (out / "checkpoint-2").glob("videoktr_state*")} == {
        "videoktr_state_0.pt",
        "videoktr_state_1.pt",
    }
    cut = tmp_path / "cut"  # the same run, killed after checkpoint-2
    cut.mkdir()
    shutil.copytree(out / "checkpoint-1", cut / "checkpoint-1")
    shutil.copytree(out / "checkpoint-2", cut / "checkpoint-2")
    resumed = command + [f"output_dir={cut}", "resume_from_checkpoint=true"]
    done = subprocess.run(resumed, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    a, b = load_file(out / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []

    def logged(run):
        history = json.loads((run / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
        return [(h["step"], h["loss"], h["grad_norm"]) for h in history if "loss" in h]

    assert logged(cut) == logged(out) and len(logged(out)) == 3
    before = load_file(out / "checkpoint-2" / "model.safetensors")
    assert any(not torch.equal(before[k], a[k]) for k in a)  # step 3 changed the weights
