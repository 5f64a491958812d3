"""The shipped accelerate configs parse and their headers give the command that launches them."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


@pytest.mark.parametrize(
    "name, distributed_type, zero_stage",
    [("multi_cpu", "MULTI_GPU", None), ("zero2", "DEEPSPEED", 2), ("zero3", "DEEPSPEED", 3)],
)
def test_accelerate_config_parses(name, distributed_type, zero_stage):
    from accelerate.commands.config.config_args import load_config_from_file

    path = CONFIGS / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert config.distributed_type.name == distributed_type
    assert (config.deepspeed_config or {}).get("zero_stage") == zero_stage
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert f"accelerate launch --config_file configs/accelerate/{name}.yaml" in header
    assert "-m videoktr.cli train --config" in header
    if name == "multi_cpu":
        assert config.use_cpu  # with the recipe's use_cpu: true -> gloo (see test_distributed.py)


RECIPES = Path(__file__).resolve().parents[2] / "configs" / "paper"


def _launch(recipe_path: Path) -> tuple[str, int]:
    """(accelerate config name, --num_processes) of the command in a recipe's header (or its base's)."""
    import re

    from videoktr.training.recipe import read_yaml

    text = recipe_path.read_text()
    found = re.search(r"--config_file configs/accelerate/(\w+)\.yaml --num_processes (\d+)", text)
    if found is None:
        base = read_yaml(recipe_path).get("base")
        assert base, f"{recipe_path.name}: no accelerate launch command in its header and no base"
        return _launch(recipe_path.parent / base)
    return found.group(1), int(found.group(2))


def _launched(path: Path) -> bool:
    """A paper recipe trained with `accelerate launch` (its header or its base's); not e.g. the frames recipe."""
    from videoktr.training.recipe import read_yaml

    base = read_yaml(path).get("base")
    return "accelerate launch" in path.read_text() or bool(base and _launched(path.parent / base))


@pytest.mark.parametrize(
    "recipe", [p for p in sorted(RECIPES.glob("*.yaml")) if _launched(p)], ids=lambda p: p.name
)
def test_paper_recipes_agree_with_their_deepspeed_config(recipe):
    """The launch in each paper recipe's header: the DeepSpeed config it names exists and says ZeRO-2/3 with the
    recipe's precision (bf16 both or neither); whole groups per optimizer step on the header's --num_processes
    (which overrides the config's num_processes)."""
    from accelerate.commands.config.config_args import load_config_from_file

    from videoktr.plan.commands import trainer_fields
    from videoktr.training.recipe import load_recipe

    name, processes = _launch(recipe)
    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    t = trainer_fields(load_recipe(recipe).trainer)
    assert config.distributed_type.name == "DEEPSPEED" and config.deepspeed_config["zero_stage"] in (2, 3)
    assert (config.mixed_precision == "bf16") == bool(t.get("bf16"))
    completions = t["per_device_train_batch_size"] * processes * t["gradient_accumulation_steps"]
    assert completions % t["num_generations"] == 0


def test_main_recipe_is_the_paper_batch():
    """Section 4.1: global batch 32 prompts, rollout batch 256 = 32 x G=8, bf16, ZeRO-3 (the authors' launch)."""
    from accelerate.commands.config.config_args import load_config_from_file

    from videoktr.plan.commands import trainer_fields
    from videoktr.training.recipe import load_recipe

    recipe = RECIPES / "qwen2_5_vl_7b_ktr.yaml"
    name, processes = _launch(recipe)
    t = trainer_fields(load_recipe(recipe).trainer)
    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert name == "zero3" and config.deepspeed_config["zero_stage"] == 3 and config.mixed_precision == "bf16"
    rollouts = t["per_device_train_batch_size"] * processes * t["gradient_accumulation_steps"]
    assert rollouts == 256 and rollouts // t["num_generations"] == 32 and t["num_generations"] == 8


def test_fsdp_on_cpu_is_refused(monkeypatch, tmp_path, capsys):
    """accelerate 1.16 runs an FSDP config with use_cpu as plain DDP; train refuses it before the model loads."""
    from videoktr.cli import main

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {tmp_path}/m\ndata: {{train: {tmp_path}/t.json}}\n"
        f"trainer: {{use_cpu: true, bf16: false, output_dir: {tmp_path}/o}}\n"
    )
    assert main(["train", "--config", str(recipe)]) == 2
    assert "runs it as plain DDP on CPU" in capsys.readouterr().err
