"""`videoktr plan` on every shipped recipe, its refusals, and `videoktr train`'s check before the model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videoktr.cli import main
from videoktr.training.recipe import TOP_LEVEL, read_yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONFIG_FILES = sorted(p for p in CONFIGS.rglob("*.yaml") if "accelerate" not in p.parts)
# training recipes (only recipe keys, or a base recipe); the others are demo / ablation configs of other commands
RECIPES = [p for p in CONFIG_FILES if set(read_yaml(p)) <= {*TOP_LEVEL, "base"}]
PAPER = CONFIGS / "paper" / "qwen2_5_vl_7b_ktr.yaml"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_plan_runs_on_every_recipe(recipe, capsys):
    gpu = "paper" in recipe.parts  # the paper recipes' launch: ZeRO-3 (their header)
    args = ["--gpus", "8", "--zero", "3"] if gpu else ["--model", "tiny", "--cpu"]
    assert (
        main(["plan", "--config", str(recipe), "--json", *args]) == 0
    )  # no --gpu-mem: the sequence check only
    plan = json.loads(capsys.readouterr().out)
    assert plan["visual_tokens"] > 0 and plan["sequence"] > plan["visual_tokens"] and not plan["problems"]
    assert plan["lm_passes"]["loss"] >= 1 and plan["peak_bytes"] > plan["memory_parts"]["weights"]


def test_non_recipe_configs_are_refused_clearly(capsys):
    others = [p for p in CONFIG_FILES if p not in RECIPES]
    assert {p.name for p in others} >= {"demo.yaml", "frames_demo.yaml", "synthetic.yaml"}
    for path in others:
        assert main(["plan", "--config", str(path), "--model", "tiny"]) == 2
    assert "unknown top-level keys" in capsys.readouterr().err


def test_paper_recipe_plan(capsys):
    assert main(["plan", "--config", str(PAPER), "--gpus", "8", "--zero", "3", "--gpu-mem", "80"]) == 0
    out = capsys.readouterr().out
    assert "960 video tokens per sample" in out  # 8 temporal patches x 16 x 30 patches / 4
    assert "256 completions per step (32 prompts x G=8)" in out  # 4 x 8 GPUs x 8 accumulation
    assert "fits" in out.splitlines()[-1]


def test_sequence_longer_than_the_model_is_flagged(capsys):
    code = main(
        ["plan", "--config", str(PAPER), "--gpus", "8", "--zero", "3", "max_completion_length=130000"]
    )
    captured = capsys.readouterr()
    assert code == 1 and "does not fit" in captured.err
    assert (
        "> the model's max_position_embeddings 128000" in captured.out
        and "max_completion_length" in captured.out
    )


def test_memory_above_the_gpu_is_flagged(capsys):
    assert main(["plan", "--config", str(PAPER), "--gpus", "1", "--gpu-mem", "80"]) == 1
    out = capsys.readouterr().out
    assert "> --gpu-mem 80 GiB" in out and "gradient_checkpointing" in out and "zero3.yaml" in out


def test_bad_arguments_are_refused(capsys):
    assert main(["plan", "--config", str(PAPER), "--frame-size", "big"]) == 2
    assert main(["plan", "--config", str(PAPER), "--model", "nope/unknown"]) == 2
    assert main(["plan", "--config", str(PAPER), "--gpus", "0"]) == 2
    err = capsys.readouterr().err
    assert "HEIGHTxWIDTH" in err and "not a known name" in err and "--gpus must be >= 1" in err


def test_train_refuses_before_the_model_loads(tiny_dir, tmp_path, monkeypatch, capsys):
    import videoktr.training.recipe as recipe_module

    def no_load(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(recipe_module, "build_trainer", no_load)
    recipe = tmp_path / "r.yaml"  # the tiny model's limit is 4096 positions
    recipe.write_text(
        f"model: {tiny_dir}\ndata: {{train: {tmp_path}/train.json, root: {tmp_path}}}\n"
        f"trainer: {{use_cpu: true, bf16: false, output_dir: {tmp_path}/out, max_completion_length: 5000, "
        "video_frames: 4, video_max_pixels: 6272}\n"
    )
    assert main(["train", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "refuses this recipe before loading the model" in err and "max_position_embeddings 4096" in err
    assert "--skip-plan-check" in err
    with pytest.raises(AssertionError, match="must not load"):  # past the check: would load the model
        main(["train", "--config", str(recipe), "--skip-plan-check"])
