"""Shared fixtures of the training tests: a tiny synthetic video dataset, a tiny Qwen2.5-VL and small trainers.

Sizes are the smallest that still exercise every path: 2 prompts x G=2 completions of at most 16 tokens, 4 frames
of 56x112 pixels (one video = 2 temporal patches x 4x8 patches = 16 LLM tokens after the 2x2 merge).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from videoktr.data.schema import load_records
from videoktr.data.synthetic import make_synthetic, synthetic_corpus
from videoktr.models.tiny import build_tiny_model

# KTRConfig fields shared by the tests; each test overrides what it is about.
SMALL = dict(
    num_generations=2,
    per_device_train_batch_size=4,
    max_completion_length=16,
    max_steps=2,
    learning_rate=1e-3,
    use_cpu=True,
    bf16=False,
    report_to="none",
    logging_steps=1,
    save_strategy="no",
    video_frames=4,
    video_max_pixels=56 * 112,
    prompt_template="short",
    length_bonus=False,
    accuracy_reward="alternating",
    gradient_checkpointing=False,
    disable_tqdm=True,
    seed=0,
)


def alternating(completions, **kwargs) -> list[float]:
    """Test reward 0, 1, 0, 1, ... by row: every group of G (even) contiguous rows gets distinct rewards, so the
    group advantages are +-1 (never all zero) whatever the random model writes."""
    return [float(i % 2) for i in range(len(completions))]


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> dict[str, Path]:
    """make_synthetic paths (root, train, train_sft, test...) of 2 training and 1 test video records."""
    return make_synthetic(tmp_path_factory.mktemp("synthetic"), n_train=2, n_test=1, seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, synthetic_data) -> Path:
    """A saved tiny Qwen2.5-VL (random weights) whose tokenizer covers the synthetic texts."""
    records = load_records(synthetic_data["train_sft"]) + load_records(synthetic_data["test"])
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), corpus=synthetic_corpus(records))


@pytest.fixture(scope="session")
def reward_alternating():
    return alternating


@pytest.fixture(scope="session")
def make_trainer(synthetic_data, tiny_model_dir, tmp_path_factory):
    """Factory: make_trainer(rewards=None, recipe=None, data=None, **trainer_fields) -> KTRTrainer.

    Built by ``recipe.build_trainer`` on the synthetic videos (``data`` replaces the recipe's data mapping) with
    ``SMALL`` fields and a fresh output_dir; ``rewards`` defaults to the alternating test reward; ``recipe`` holds
    extra Recipe fields (freeze_vision...).
    """
    from videoktr.training.recipe import Recipe, build_trainer

    def make(rewards=None, recipe: dict | None = None, data: dict | None = None, **fields):
        out = tmp_path_factory.mktemp("out")
        trainer_fields = {**SMALL, "output_dir": str(out), **fields}
        default_data = {"train": str(synthetic_data["train"]), "root": str(synthetic_data["root"])}
        built = Recipe(
            model=str(tiny_model_dir),
            data=data or default_data,
            rewards=rewards if rewards is not None else [alternating],
            trainer=trainer_fields,
            **(recipe or {}),
        )
        return build_trainer(built)

    return make


def repeated_rows(trainer, num_prompts: int | None = None) -> list[dict]:
    """The rows of one generation batch as TRL's RepeatSampler yields them: each prompt G times in a row."""
    dataset = trainer.train_dataset
    n = len(dataset) if num_prompts is None else num_prompts
    return [dict(dataset[i]) for i in range(n) for _ in range(trainer.num_generations)]


@pytest.fixture(scope="session")
def rows_of():
    return repeated_rows


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.fixture(scope="session")
def param_snapshot():
    return snapshot


# 2 prompts x G = 3: group ids by row (0, 0, 0, 1, 1, 1) differ from every wrong reading of the row index that a
# G = 2 batch would hide (row % G, row // 2, ...).
G3 = 3


@pytest.fixture(scope="module")
def ktr_rollout(make_trainer):
    """(trainer, batch, captured): one KTR rollout of 2 prompts x G = 3 at temperature 0.7 (alternating rewards,
    every selection row recorded); per module, as other modules reset accelerate's state a trainer reads. ``captured`` holds what ``_signal_scores`` returned at the rollout: ``scores``,
    ``signal_valid`` (per signal, (6, T)) and the ``rows`` scored. Tests that change ``trainer.args`` restore them."""
    trainer = make_trainer(
        method="ktr", num_generations=G3, per_device_train_batch_size=2 * G3, temperature=0.7,
        log_selected_examples=-1,
    )  # fmt: skip
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    captured = spy_signal_scores(trainer)
    batch = trainer._generate_and_score_completions(repeated_rows(trainer))
    return trainer, batch, dict(captured)


def spy_signal_scores(trainer) -> dict:
    """Record the (scores, signal_valid) of every ``_signal_scores`` call of ``trainer`` (the last one is kept)."""
    captured, original = {}, trainer._signal_scores

    def spy(output, forward, video, valid, rows, group):
        scores, signal_valid = original(output, forward, video, valid, rows, group)
        captured.update(scores=scores, signal_valid=signal_valid, rows=rows, forward=forward, video=video)
        return scores, signal_valid

    trainer._signal_scores = spy
    return captured


def batch_rows(batch: dict, rows: torch.Tensor) -> dict:
    """The generation batch ``batch`` restricted to / reordered by ``rows`` (1-D index): per-row tensors and lists
    are indexed, everything else (``num_items_in_batch``...) kept, as TRL's shuffle and split do."""
    n = batch["completion_ids"].size(0)
    out = {}
    for key, value in batch.items():
        if isinstance(value, list) and len(value) == n:
            out[key] = [value[i] for i in rows.tolist()]
        elif isinstance(value, torch.Tensor) and value.dim() and value.size(0) == n:
            out[key] = value[rows]
        else:
            out[key] = value
    return out
