"""Each model family end to end through the CLI on its tiny model: ``videoktr build-tiny-model --arch``, two
training steps of every method (``videoktr train``), and ``videoktr eval``. The trainer and the evaluation pick the
family's adapter from the checkpoint's config."""

from __future__ import annotations

import json

import pytest
import yaml

from videoktr.cli import main
from videoktr.data.synthetic import make_synthetic

ARCHS = ["qwen2_5_vl", "qwen3_vl", "qwen3_5"]
METHODS = ["grpo", "ktr", "entropy", "t_grpo", "tw_grpo"]
TRAINER = dict(
    num_generations=2, per_device_train_batch_size=2, max_completion_length=8, max_steps=2, learning_rate=1e-3,
    use_cpu=True, bf16=False, report_to="none", logging_steps=1, save_strategy="steps", save_steps=2,
    video_frames=4, video_max_pixels=56 * 112, prompt_template="short", length_bonus=False,
    gradient_checkpointing=False, disable_tqdm=True, seed=0, tgrpo_num_shuffled=1, accuracy_reward="alternating",
)  # fmt: skip
# Reward 0, 1, 0, 1 by row: every group gets non-zero advantages whatever the random model writes (by dotted path).
REWARD_MODULE = (
    "def alternating(completions, **kwargs):\n    return [float(i % 2) for i in range(len(completions))]\n"
)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("families_data"), n_train=2, n_test=2, seed=0)


@pytest.fixture(scope="module")
def models(tmp_path_factory, synth):
    """arch -> tiny model directory built by ``videoktr build-tiny-model --arch`` (once per module)."""
    built = {}

    def get(arch):
        if arch not in built:
            out = tmp_path_factory.mktemp(f"cli_{arch}") / "model"
            assert (
                main(
                    [
                        "build-tiny-model",
                        "--out",
                        str(out),
                        "--arch",
                        arch,
                        "--corpus",
                        str(synth["train_sft"]),
                    ]
                )
                == 0
            )
            assert json.loads((out / "config.json").read_text())["model_type"] == arch
            built[arch] = out
        return built[arch]

    return get


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", ARCHS)
def test_two_training_steps_of_every_method(tmp_path, monkeypatch, synth, models, arch, method):
    (tmp_path / "family_rewards.py").write_text(REWARD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    recipe = {
        "model": str(models(arch)),
        "data": {"train": str(synth["train"]), "root": str(synth["root"])},
        "rewards": ["family_rewards.alternating", "format"],
        "trainer": {**TRAINER, "method": method, "output_dir": str(out)},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", "--config", str(path)]) == 0
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logs = [h for h in state["log_history"] if "loss" in h]
    assert state["global_step"] == 2 and len(logs) == 2
    assert all(h["reward_std"] > 0 and h["grad_norm"] > 0 for h in logs)
    if method == "ktr":
        assert all("ktr/selected_frac/union" in h for h in logs)
    if method == "t_grpo":
        assert all("tgrpo/bonus_frac" in h for h in logs)
    assert json.loads((out / "config.json").read_text())["model_type"] == arch


@pytest.mark.parametrize("arch", ARCHS)
def test_eval_through_the_cli(tmp_path, synth, models, arch):
    predictions = tmp_path / "p.jsonl"
    argv = [
        "eval", "--model", str(models(arch)), "--bench", "video-r1", "--data", str(synth["test"]),
        "--video-root", str(synth["root"]), "--frames", "4", "--max-pixels", str(56 * 112),
        "--max-new-tokens", "4", "--template", "short", "--predictions", str(predictions),
    ]  # fmt: skip
    assert main(argv) == 0
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    records = [r for r in lines if "id" in r or "problem_id" in r]
    assert len(records) == 2 and all("error" not in r or not r["error"] for r in records)


def test_checkpoint_of_an_unsupported_family_is_refused(tmp_path, synth, capsys):
    from transformers import Qwen2Config

    model = tmp_path / "text_only"
    Qwen2Config(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        model
    )
    argv = [
        "eval", "--model", str(model), "--bench", "video-r1", "--data", str(synth["test"]),
        "--video-root", str(synth["root"]), "--predictions", str(tmp_path / "p.jsonl"),
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "model type 'qwen2' has no videoktr adapter; supported families: " in err and "qwen3_vl" in err
    assert "Traceback" not in err
