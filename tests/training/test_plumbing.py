"""TRL-native plumbing of the recipe: any peft.LoraConfig field under ``lora:``, an ``eval`` data file evaluated by
TRL's evaluation loop during training (with the video in its forwards)."""

from __future__ import annotations

import pytest
import torch

from videoktr.errors import UserError
from videoktr.training.recipe import lora_config


def test_lora_takes_any_lora_config_field():
    config = lora_config({"r": 4, "lora_alpha": 8, "use_rslora": True, "bias": "lora_only"})
    assert config.r == 4 and config.use_rslora is True and config.bias == "lora_only"


def test_lora_aliases_and_defaults():
    config = lora_config({"alpha": 7, "dropout": 0.0, "target_modules": ["q_proj"]})
    assert config.lora_alpha == 7 and config.lora_dropout == 0.0 and config.target_modules == {"q_proj"}
    assert config.r == 16 and config.task_type == "CAUSAL_LM"


@pytest.mark.parametrize(
    "lora, message",
    [
        ({"rank": 4}, r"unknown lora keys \['rank'\]; valid \(peft.LoraConfig fields"),
        ({"alpha": 4, "lora_alpha": 8}, "'alpha' and 'lora_alpha' both given"),
        ({"layers_pattern": "x"}, "lora: When `layers_pattern` is specified"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_lora_keys_are_refused_with_the_valid_ones(lora, message):
    with pytest.raises(UserError, match=message) as err:
        lora_config(lora)
    if "unknown lora keys" in message:
        assert "lora_alpha" in str(err.value) and "use_rslora" in str(err.value)


def test_lora_recipe_trains_only_the_adapter(make_trainer):
    trainer = make_trainer(
        method="grpo", recipe={"lora": {"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}}
    )
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert trainer.model.peft_config["default"].r == 2


def test_eval_file_runs_trls_evaluation_loop_with_the_video(make_trainer, synthetic_data):
    data = {
        "train": str(synthetic_data["train"]),
        "root": str(synthetic_data["root"]),
        "eval": str(synthetic_data["train"]),
    }
    trainer = make_trainer(
        method="ktr", data=data, eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=4
    )
    assert trainer.eval_dataset is not None and len(trainer.eval_dataset) == 2
    pixels_seen = []
    visual = trainer.model.model.visual
    handle = visual.register_forward_hook(lambda m, a, o: pixels_seen.append(m.training))
    try:
        trainer.train()
    finally:
        handle.remove()
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 2  # eval_steps=1, max_steps=2
    assert all(torch.isfinite(torch.tensor(h["eval_loss"])) for h in evals)
    assert all("eval_reward" in h for h in evals)
    assert False in pixels_seen  # the vision tower ran in eval mode: the eval forwards carry the video


@pytest.mark.parametrize(
    "data_extra, fields, message",
    [
        ({"eval": "x.json"}, {}, "data.eval is set but trainer.eval_strategy is 'no'"),
        ({}, {"eval_strategy": "steps", "eval_steps": 1}, "no data.eval file"),
        ({"valid": "x.json"}, {}, r"unknown keys \[.valid.\]"),
    ],
)
def test_eval_data_and_schedule_go_together(make_trainer, synthetic_data, data_extra, fields, message):
    data = {"train": str(synthetic_data["train"]), "root": str(synthetic_data["root"]), **data_extra}
    with pytest.raises(UserError, match=message):
        make_trainer(data=data, **fields)


def test_each_video_is_decoded_once_per_generation_batch(make_trainer, rows_of, monkeypatch):
    """T-GRPO tokenizes the batch's prompts twice (rollout, shuffled rollouts): the decoded frames are reused."""
    import videoktr.data.video as video_module

    calls = []
    original = video_module.decode_video
    monkeypatch.setattr(
        video_module,
        "decode_video",
        lambda path, cfg, indices=None: calls.append(path) or original(path, cfg, indices=indices),
    )
    trainer = make_trainer(method="t_grpo", tgrpo_num_shuffled=1)
    trainer.model.train()
    rows = rows_of(trainer)
    trainer._generate_and_score_completions(rows)
    distinct = {row["prompt"][0]["content"][0]["video"] for row in rows}
    assert sorted(calls) == sorted(distinct)
    calls.clear()
    trainer._generate_and_score_completions(rows)  # the next batch decodes again (nothing kept across steps)
    assert sorted(calls) == sorted(distinct)
