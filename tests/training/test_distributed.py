"""`videoktr train` under `accelerate launch` with 2 CPU processes (gloo) finishes and trains in both processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
ACCELERATE_CONFIG = REPO / "configs" / "accelerate" / "multi_cpu.yaml"

# A reward module the launched processes import by dotted path; it also records which process scored what.
REWARD_MODULE = """
import json, os
import torch.distributed as dist


def alternating(completions, **kwargs):
    rank = dist.get_rank() if dist.is_initialized() else -1
    info = {"rank": rank, "world": dist.get_world_size() if dist.is_initialized() else 1,
            "backend": dist.get_backend() if dist.is_initialized() else None, "rows": len(completions)}
    with open(os.path.join(os.environ["REWARD_LOG_DIR"], f"rank{rank}.jsonl"), "a") as f:
        f.write(json.dumps(info) + "\\n")
    return [float(i % 2) for i in range(len(completions))]
"""


@pytest.mark.distributed
def test_two_process_cpu_training_completes(synthetic_data, tiny_model_dir, tmp_path):
    (tmp_path / "dist_rewards.py").write_text(REWARD_MODULE)
    out = tmp_path / "out"
    recipe = {
        "model": str(tiny_model_dir),
        "data": {"train": str(synthetic_data["train"]), "root": str(synthetic_data["root"])},
        "rewards": ["dist_rewards:alternating"],
        "trainer": {
            "method": "ktr",
            "ktr_scope": "batch",  # the top fraction over both processes' tokens: a gloo all_gather
            "log_selected_examples": -1,  # every row of both processes -> selection.jsonl
            "output_dir": str(out),
            "use_cpu": True,
            "bf16": False,
            "report_to": "none",
            "seed": 0,
            "max_steps": 2,
            "num_generations": 2,
            "per_device_train_batch_size": 2,  # 2 processes x 2 rows = 2 prompts x G=2 per step
            "max_completion_length": 16,
            "learning_rate": 1e-3,
            "video_frames": 4,
            "video_max_pixels": 56 * 112,
            "prompt_template": "short",
            "length_bonus": False,
            "accuracy_reward": "alternating",
            "gradient_checkpointing": False,
            "logging_steps": 1,
            "save_strategy": "no",
            "disable_tqdm": True,
        },
    }
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "REWARD_LOG_DIR": str(tmp_path),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ACCELERATE_CONFIG), "--num_processes", "2",
        "-m", "videoktr.cli", "train", "--config", str(recipe_path),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    for rank in (0, 1):
        calls = [json.loads(line) for line in (tmp_path / f"rank{rank}.jsonl").read_text().splitlines()]
        assert len(calls) == 2  # one reward call per step in each process
        assert all(c == {"rank": rank, "world": 2, "backend": "gloo", "rows": 2} for c in calls)
    assert (out / "recipe.yaml").is_file() and (out / "skipped_videos.jsonl").is_file()
    _check_batch_scope_records(out / "selection.jsonl")
    from safetensors.torch import load_file

    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the 2 steps updated the weights


def _check_batch_scope_records(path: Path) -> None:
    """Every row's recorded union equals the batch-scope mask recomputed from the recorded scores of all rows of
    both processes at that step (so the threshold was the one of the whole generation batch of both processes)."""
    from videoktr import core
    from videoktr.training.selection import read_selection_records

    records = read_selection_records(path)
    steps = sorted({r["step"] for r in records})
    assert len(steps) == 2
    for step in steps:
        rows = [r for r in records if r["step"] == step]
        assert sorted(r["group_id"] for r in rows) == [0, 0, 1, 1]  # both processes' rows, gathered
        width = max(len(r["completion_ids"]) for r in rows)
        valid = torch.zeros(len(rows), width, dtype=torch.bool)
        scores, signal_valid = {}, {}
        for s in rows[0]["scores"]:
            scores[s] = torch.zeros(len(rows), width, dtype=torch.float64)
            for i, r in enumerate(rows):
                scores[s][i, : len(r["scores"][s])] = torch.tensor(r["scores"][s], dtype=torch.float64)
                valid[i, : len(r["scores"][s])] = True
        for s in scores:
            if s != "entropy":
                signal_valid[s] = scores[s] != 0
        union, _ = core.key_token_mask(
            scores, valid, {s: 0.2 for s in scores}, scope="batch", signal_valid=signal_valid
        )
        for i, r in enumerate(rows):
            assert union[i, : len(r["union"])].tolist() == r["union"]
