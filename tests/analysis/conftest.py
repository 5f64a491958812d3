"""A tiny recorded training run (2 Video-KTR steps on 2 synthetic videos) shared by the ``videoktr analyze`` tests."""

from __future__ import annotations

from pathlib import Path

import pytest


def alternating(completions, **kwargs) -> list[float]:
    """Rewards 0, 1, 0, 1... by row: every group gets advantages +-1, so every row is scored and has a gradient."""
    return [float(i % 2) for i in range(len(completions))]


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory) -> Path:
    """Output dir of a finished 2-step ``ktr`` run with every row in selection.jsonl, its recipe and final model."""
    from videoktr.data.schema import load_records
    from videoktr.data.synthetic import make_synthetic, synthetic_corpus
    from videoktr.models.tiny import build_tiny_model
    from videoktr.training.recipe import Recipe, build_trainer, save_run_files

    data = make_synthetic(tmp_path_factory.mktemp("synthetic"), n_train=2, n_test=1, seed=0)
    records = load_records(data["train_sft"]) + load_records(data["test"])
    model = build_tiny_model(tmp_path_factory.mktemp("tiny_model"), corpus=synthetic_corpus(records))
    out = tmp_path_factory.mktemp("run")
    recipe = Recipe(
        model=str(model),
        data={"train": str(data["train"]), "root": str(data["root"])},
        rewards=["tests.analysis.conftest.alternating"],
        trainer=dict(
            method="ktr", output_dir=str(out), num_generations=2, per_device_train_batch_size=4,
            max_completion_length=12, max_steps=2, learning_rate=1e-3, use_cpu=True, bf16=False,
            report_to="none", logging_steps=1, save_strategy="no", video_frames=4, video_max_pixels=56 * 112,
            prompt_template="short", length_bonus=False, gradient_checkpointing=False, disable_tqdm=True,
            seed=0, log_selected_examples=-1,
        ),
    )  # fmt: skip
    save_run_files(recipe, out)
    trainer = build_trainer(recipe)
    trainer.train()
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    return out
