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
