"""Passes per step of each method (counted from training/ and TRL's GRPOTrainer) and the memory estimate's rules."""

from __future__ import annotations

import pytest

from videoktr.plan.commands import trainer_fields
from videoktr.plan.memory import GiB, Setup, count_passes, estimate_memory
from videoktr.plan.models import KNOWN_CONFIGS, model_sizes
from videoktr.plan.tokens import sample_tokens

PAPER = dict(per_device_train_batch_size=4, gradient_accumulation_steps=8, num_generations=8,
             max_completion_length=768, video_frames=16, video_min_pixels=100352, video_max_pixels=100352,
             model_init_kwargs={"dtype": "bfloat16"}, bf16=True, gradient_checkpointing=True)  # fmt: skip


def passes(**fields):
    p = count_passes(trainer_fields({**PAPER, **fields}))
    return p.vision, p.lm, p.generate


def test_passes_per_method():
    # R = 4 x 8 = 32 rows per generation batch; 8 micro-batches of 4, each one vision + one LM forward/backward
    loss = {"loss": 8}
    assert passes(method="grpo") == ({"rollout": 1, "ref_logps": 1, **loss}, {"ref_logps": 1, **loss}, 1)
    # ktr: one shared vision pass; the masked and the shuffled LM passes; entropy from the generation pass
    assert passes(method="ktr") == (
        {"rollout": 1, "ref_logps": 1, "selection": 1, **loss},
        {"ref_logps": 1, "selection": 2, **loss},
        1,
    )
    assert passes(method="ktr", ktr_full_logps="forward")[1]["selection"] == 3
    assert passes(method="ktr", ktr_distance="kl")[1]["selection"] == 4  # full + perturbed logits per signal
    assert passes(method="ktr", ktr_temporal_level="frame")[0]["selection"] == 2  # re-encoded shuffled frames
    assert passes(method="entropy")[1]["selection"] == 0 and passes(method="entropy")[0]["selection"] == 1
    assert passes(method="t_grpo")[2] == 2 and passes(method="t_grpo")[0]["rollout"] == 2
    # tw_grpo: beta 0 (no reference pass); weights in the loss forward, or one full-logits pass at the rollout
    assert passes(method="tw_grpo", steps_per_generation=1, gradient_accumulation_steps=1)[1] == {"loss": 1}
    assert passes(method="tw_grpo", tw_weight_grad=False)[1] == {"selection": 1, **loss}
    # old log-probs only when generation and optimizer steps are misaligned
    assert "old_logps" in passes(method="grpo", steps_per_generation=3, gradient_accumulation_steps=8)[1]
    assert "ref_logps" not in passes(method="grpo", beta=0.0)[1]
    assert "old_logps" in passes(method="grpo", use_vllm=True)[1]  # TRL's importance sampling with vLLM


@pytest.fixture(scope="module")
def seven_b():
    return model_sizes(KNOWN_CONFIGS["Qwen2.5-VL-7B-Instruct"])


def estimate(sizes, setup=None, lora=None, freeze_vision=False, **fields):
    setup = setup or Setup()
    t = trainer_fields({**PAPER, "method": "ktr", **fields})
    tokens = sample_tokens(t, sizes, (360, 640), 256)
    return estimate_memory(t, sizes, tokens, setup, lora, freeze_vision)


def test_static_memory_by_zero_stage(seven_b):
    p = seven_b.params
    plain = estimate(seven_b, Setup(gpus=8, zero=0))
    assert plain.parts["weights"] == plain.parts["reference model"] == 2 * p  # bf16
    assert (
        plain.parts["optimizer (AdamW moments)"] == 4 * p and plain.parts["gradients (loss phase)"] == 2 * p
    )
    z2 = estimate(seven_b, Setup(gpus=8, zero=2))
    assert z2.parts["weights"] == 2 * p and z2.parts["gradients (loss phase)"] == 2 * p / 8
    assert z2.parts["optimizer (fp32 master + Adam)"] == 12 * p / 8
    z3 = estimate(seven_b, Setup(gpus=8, zero=3))
    assert z3.parts["weights"] == z3.parts["reference model"] == 2 * p / 8
    assert z3.peak < z2.peak < plain.peak


def test_lora_checkpointing_and_batch(seven_b):
    full = estimate(seven_b)
    lora = estimate(seven_b, lora={"r": 16})
    assert "reference model" not in lora.parts  # the adapter is disabled for the reference
    assert lora.parts["optimizer (AdamW moments)"] < full.parts["optimizer (AdamW moments)"] / 100
    assert full.peak_gc < full.peak_no_gc
    assert estimate(seven_b, per_device_train_batch_size=2).phases["loss (forward+backward)"] < full.phases[
        "loss (forward+backward)"]  # fmt: skip
    # the attribution forward over all R rows by default; ktr_score_batch_size bounds it
    assert (
        estimate(seven_b, ktr_score_batch_size=4).phases["scoring (no grad)"]
        < full.phases["scoring (no grad)"]
    )
    frozen = estimate(seven_b, freeze_vision=True)
    assert frozen.parts["optimizer (AdamW moments)"] == 4 * (seven_b.params - seven_b.vision_params)


def test_vllm_colocate_reserves_its_share(seven_b):
    hf = estimate(seven_b, Setup(gpus=8, zero=3, gpu_mem_gib=80))
    vllm = estimate(
        seven_b, Setup(gpus=8, zero=3, gpu_mem_gib=80), use_vllm=True, vllm_gpu_memory_utilization=0.4
    )
    assert vllm.parts["vLLM reservation (0.4 x GPU)"] == 0.4 * 80 * GiB
    assert vllm.phases["rollout (generate)"] < hf.phases["rollout (generate)"]  # no KV cache in the trainer


def test_a_seven_b_full_fine_tune_does_not_fit_one_80gb_gpu(seven_b):
    # 8.3 B parameters x (2 weights + 2 reference + 4 AdamW + 2 gradients) bytes = 83 GB before activations
    assert estimate(seven_b, Setup(gpus=1)).peak > 80 * GiB
