"""method=grpo on an image dataset reproduces TRL's own GRPOTrainer step for step (same model, seed, data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from videoktr.errors import UserError

STEPS = 2
COMMON = dict(
    num_generations=2,
    per_device_train_batch_size=2,
    max_completion_length=16,
    max_steps=STEPS,
    learning_rate=1e-3,
    beta=0.04,  # step 2 then has a non-zero KL term (the policy moved away from the reference in step 1)
    use_cpu=True,
    bf16=False,
    report_to="none",
    logging_steps=1,
    save_strategy="no",
    gradient_checkpointing=False,
    disable_tqdm=True,
    seed=0,
)


def image_dataset():
    """Two prompts in TRL's image format: a conversational prompt with an {"type": "image"} part + column image."""
    from datasets import Dataset
    from PIL import Image

    rows = []
    for color, name in (((255, 0, 0), "red"), ((0, 0, 255), "blue")):
        image = Image.fromarray(np.full((56, 56, 3), color, dtype=np.uint8))
        content = [{"type": "image"}, {"type": "text", "text": f"Is the square {name}?"}]
        rows.append({"prompt": [{"role": "user", "content": content}], "image": image})
    return Dataset.from_list(rows)


def _train(trainer_cls, config, model_dir, reward):
    from videoktr.models.tiny import load_model_and_processor

    model, processor = load_model_and_processor(model_dir)
    trainer = trainer_cls(
        model=model,
        reward_funcs=[reward],
        args=config,
        processing_class=processor,
        train_dataset=image_dataset(),
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    return logs, params


def test_grpo_on_images_matches_trl(tiny_model_dir, reward_alternating, tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    from videoktr.models.tiny import load_model_and_processor, vision_token_ids
    from videoktr.training.config import KTRConfig
    from videoktr.training.trainer import KTRTrainer

    _, processor = load_model_and_processor(tiny_model_dir)
    # KTRTrainer suppresses every vision placeholder token in generation; TRL only the image one. Give TRL the
    # same list so both sample the same completions. TRL's default bias-corrected KL gradient is an estimator
    # KTRTrainer does not implement (it uses the plain k3 KL of METHOD 3): compare with it off.
    trl_config = GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        loss_type="grpo",
        use_bias_correction_kl=False,
        generation_kwargs={"suppress_tokens": sorted(vision_token_ids(processor))},
        **COMMON,
    )
    ktr_config = KTRConfig(
        output_dir=str(tmp_path / "ktr"),
        method="grpo",
        aggregation="seq-mean-token-mean",
        length_bonus=False,
        **COMMON,
    )
    trl_logs, trl_params = _train(GRPOTrainer, trl_config, tiny_model_dir, reward_alternating)
    ktr_logs, ktr_params = _train(KTRTrainer, ktr_config, tiny_model_dir, reward_alternating)

    assert len(trl_logs) == len(ktr_logs) == STEPS
    assert trl_logs[-1]["kl"] > 0  # the KL term is exercised
    # Same float32 operations, possibly in another order: differences stay at rounding level (~1e-7 relative).
    # rtol=1e-5 is far below what a real difference causes: TRL's bias-corrected KL gradient alone moved
    # grad_norm of step 2 by ~1e-4 relative.
    for trl_log, ktr_log in zip(trl_logs, ktr_logs, strict=True):
        assert ktr_log["loss"] == pytest.approx(trl_log["loss"], rel=1e-5, abs=1e-9)
        assert ktr_log["grad_norm"] == pytest.approx(trl_log["grad_norm"], rel=1e-5)
        assert ktr_log["entropy"] == pytest.approx(trl_log["entropy"], rel=1e-5)
    assert trl_params.keys() == ktr_params.keys()
    assert all(torch.allclose(ktr_params[n], trl_params[n], rtol=1e-5, atol=1e-7) for n in trl_params)


def test_video_only_signals_are_refused_for_an_image_dataset(tiny_model_dir, reward_alternating, tmp_path):
    from videoktr.models.tiny import load_model_and_processor
    from videoktr.training.config import KTRConfig
    from videoktr.training.trainer import KTRTrainer

    model, processor = load_model_and_processor(tiny_model_dir)
    for fields, message in (
        (
            {"method": "ktr"},
            r"ktr_signals \['temporal'\] need video prompts.*\(image prompts\).*ktr_signals: \[visual, entropy\]",
        ),
        ({"method": "ktr", "ktr_signals": ["temporal"]}, r"\['temporal'\] need video prompts"),
        ({"method": "t_grpo"}, r"t_grpo.*no video prompts; use method: grpo"),
    ):
        config = KTRConfig(
            output_dir=str(tmp_path),
            length_bonus=False,
            accuracy_reward="alternating",
            **{**COMMON, **fields},
        )
        with pytest.raises(UserError, match=message):
            KTRTrainer(
                model=model,
                reward_funcs=[reward_alternating],
                args=config,
                processing_class=processor,
                train_dataset=image_dataset(),
            )


def test_ktr_on_images_uses_the_visual_and_entropy_signals(tiny_model_dir, reward_alternating, tmp_path):
    # METHOD 1: an image-only sample gets V (image features masked) and E; r = 1 keeps every token (= GRPO).
    from videoktr.models.tiny import load_model_and_processor
    from videoktr.training.config import KTRConfig
    from videoktr.training.selection import read_selection_records
    from videoktr.training.trainer import KTRTrainer

    params = {}
    for name, fields in (
        ("ktr", {"method": "ktr", "ktr_signals": ["visual", "entropy"], "log_selected_examples": -1}),
        ("ktr_r1", {"method": "ktr", "ktr_signals": ["visual", "entropy"], "ktr_visual_fraction": 1.0}),
        ("grpo", {"method": "grpo"}),
    ):
        model, processor = load_model_and_processor(tiny_model_dir)
        config = KTRConfig(output_dir=str(tmp_path / name), length_bonus=False, **{**COMMON, **fields})
        trainer = KTRTrainer(
            model=model,
            reward_funcs=[reward_alternating],
            args=config,
            processing_class=processor,
            train_dataset=image_dataset(),
        )
        trainer.train()
        params[name] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        if name == "ktr":
            logs = [h for h in trainer.state.log_history if "loss" in h]
            assert all(0 < h["ktr/selected_frac/union"] < 1 for h in logs)
            records = read_selection_records(tmp_path / name / "selection.jsonl")
            assert len(records) == STEPS * 2 and set(records[0]["scores"]) == {"visual", "entropy"}
            # masking the image moves the log-probs: the visual scores are not all zero
            assert any(x > 0 for r in records for x in r["scores"]["visual"])
    assert all(torch.equal(params["ktr_r1"][n], params["grpo"][n]) for n in params["grpo"])
    assert any(not torch.equal(params["ktr"][n], params["grpo"][n]) for n in params["grpo"])


def test_a_dataset_mixing_images_and_videos_is_refused(tiny_model_dir, synthetic_data, tmp_path):
    from datasets import Dataset

    from videoktr.models.tiny import load_model_and_processor
    from videoktr.training.config import KTRConfig
    from videoktr.training.trainer import KTRTrainer

    images = image_dataset().to_list()
    video = {"type": "video", "video": str(next(Path(synthetic_data["root"]).rglob("*.mp4")))}
    mixed = images + [
        {"prompt": [{"role": "user", "content": [video, {"type": "text", "text": "?"}]}], "image": None}
    ]
    model, processor = load_model_and_processor(tiny_model_dir)
    config = KTRConfig(output_dir=str(tmp_path), method="grpo", length_bonus=False, **COMMON)
    with pytest.raises(UserError, match=r"mixes 1 video and 2 image prompts.*separate runs"):
        KTRTrainer(
            model=model,
            reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
            args=config,
            processing_class=processor,
            train_dataset=Dataset.from_list(mixed),
        )
