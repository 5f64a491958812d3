"""vLLM video rollouts on CPU, with a fake engine in place of ``vllm.LLM``: the whole path from prompt to loss runs
through TRL 1.16's colocate generation (``trl/generation/vllm_generation.py``), only the engine is fake.

The fake returns given completion tokens and log-probs; everything else (the video requests, weight sync, TRL's
old log-probs and importance-sampling ratio, our loss) is the real code.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from videoktr.vllm import install
from videoktr.vllm.payload import collapse_video_placeholders, video_token_id

SAMPLING_LOGP = -0.25  # the fake engine's log-prob of every token it samples

# vLLM 0.33.0 SamplingParams fields TRL may pass (vllm/sampling_params.py, class SamplingParams)
SAMPLING_FIELDS = {
    "n", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p", "top_k", "min_p",
    "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens", "min_tokens", "logprobs", "skip_special_tokens",
    "structured_outputs", "logit_bias", "allowed_token_ids", "bad_words",
}  # fmt: skip


class FakeSamplingParams(SimpleNamespace):
    def __init__(self, **kwargs):
        unknown = set(kwargs) - SAMPLING_FIELDS
        if unknown:
            raise TypeError(f"SamplingParams got unexpected keyword arguments {sorted(unknown)}")
        super().__init__(**kwargs)


class FakeLLM:
    """``vllm.LLM`` stand-in: records its construction, weight loads and requests; samples ``completions``."""

    made: list[FakeLLM] = []
    completions: list[list[int]] = []

    def __init__(self, model, **kwargs):
        self.model, self.kwargs, self.requests, self.loaded = model, kwargs, [], []
        runner = SimpleNamespace(model=SimpleNamespace(load_weights=self.loaded.extend))
        self.llm_engine = SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner))
        )
        FakeLLM.made.append(self)

    def reset_prefix_cache(self):
        pass

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        self.requests.append((prompts, sampling_params))
        outputs = []
        for k, request in enumerate(prompts):
            ids = FakeLLM.completions[k % len(FakeLLM.completions)]
            logprobs = [{t: SimpleNamespace(logprob=SAMPLING_LOGP, rank=1)} for t in ids]
            sample = SimpleNamespace(token_ids=list(ids), logprobs=logprobs)
            outputs.append(SimpleNamespace(prompt_token_ids=request["prompt_token_ids"], outputs=[sample]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch, tiny_model_dir):
    """TRL's vLLM generation with FakeLLM; vLLM reported installed; TRL's rank variables restored after."""
    from transformers import AutoProcessor
    from trl.generation import vllm_generation

    monkeypatch.setattr(install, "vllm_problem", lambda: None)
    monkeypatch.setattr(vllm_generation, "is_vllm_available", lambda: True)
    monkeypatch.setattr(vllm_generation, "LLM", FakeLLM, raising=False)
    monkeypatch.setattr(vllm_generation, "SamplingParams", FakeSamplingParams, raising=False)
    for name in (
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    ):  # TRL's colocate sets them
        monkeypatch.setenv(name, "")  # records the original, restored at teardown
        monkeypatch.delenv(name)
    tokenizer = AutoProcessor.from_pretrained(str(tiny_model_dir)).tokenizer
    eos = tokenizer.eos_token_id
    FakeLLM.made, FakeLLM.completions = (
        [],
        [
            tokenizer("<answer>A</answer>")["input_ids"] + [eos],
            tokenizer("<answer>B</answer>")["input_ids"] + [eos],
            tokenizer("<think>x</think>")["input_ids"],
        ],
    )
    return FakeLLM


def vllm_trainer(make_trainer, **fields):
    return make_trainer(use_vllm=True, ktr_full_logps="forward", **fields)


def test_rollout_sends_video_requests_and_the_loss_applies_the_is_ratio(fake_vllm, make_trainer, rows_of):
    trainer = vllm_trainer(make_trainer, vllm_importance_sampling_mode="token_truncate")
    (llm,) = fake_vllm.made
    assert llm.kwargs["limit_mm_per_prompt"] == {"image": 0, "video": 1}
    assert llm.kwargs["logprobs_mode"] == "processed_logprobs"  # TRL's: logprobs after temperature
    trainer.current_gradient_accumulation_steps = 1
    rows = rows_of(trainer)
    batch = trainer._generate_and_score_completions(rows)

    assert llm.loaded, "TRL synced the policy weights into the engine"
    ((requests, params),) = llm.requests
    from videoktr.models.tiny import vision_token_ids

    vision = set(vision_token_ids(trainer.processing_class))
    assert vision and all(params.logit_bias[t] == -100.0 for t in vision)  # suppress_tokens, as a logit bias
    assert "suppress_tokens" not in vars(params)
    token = video_token_id(trainer.processing_class)
    prompt_ids = [ids[m.bool()].tolist() for ids, m in zip(batch["prompt_ids"], batch["prompt_mask"])]
    assert len(requests) == len(rows)
    for ids, request in zip(prompt_ids, requests, strict=True):
        assert request["prompt_token_ids"] == collapse_video_placeholders(ids, token)
        frames, meta = request["multi_modal_data"]["video"]
        assert frames.shape[-1] == 3 and frames.shape[0] == 4 and meta["frames_indices"]
        assert request["mm_processor_kwargs"]["do_sample_frames"] is False
    # completions are the engine's tokens; sampling log-probs are its log-probs on the valid tokens
    first = fake_vllm.completions[0]
    assert batch["completion_ids"][0, : len(first)].tolist() == first
    valid = batch["completion_mask"].bool()
    assert torch.all(batch["sampling_per_token_logps"][valid] == SAMPLING_LOGP)
    # TRL's token_truncate ratio: exp(old - sampling) clipped at 3 (old = our video forward)
    expected = torch.exp(batch["old_per_token_logps"] - SAMPLING_LOGP).clamp(max=3.0)
    ratio = batch["importance_sampling_ratio"]
    torch.testing.assert_close(ratio[valid], expected[valid])
    assert not torch.allclose(ratio[valid], torch.ones_like(ratio[valid]))

    # the loss multiplies the policy term by TRL's ratio: beta = 0, so loss(c * ratio) is linear in c
    model = trainer.model
    trainer.beta = 0.0
    base = trainer._compute_loss(model, batch).item()
    halved = trainer._compute_loss(model, {**batch, "importance_sampling_ratio": ratio * 0.5}).item()
    without = trainer._compute_loss(
        model, {k: v for k, v in batch.items() if k != "importance_sampling_ratio"}
    )
    assert halved == pytest.approx(0.5 * base, rel=1e-5, abs=1e-7)
    assert without.item() != pytest.approx(base, rel=1e-4)


def test_a_training_step_runs_through_the_fake_engine(fake_vllm, make_trainer, param_snapshot):
    trainer = vllm_trainer(make_trainer, max_steps=1)
    before = param_snapshot(trainer.model)
    trainer.train()
    (llm,) = fake_vllm.made
    assert len(llm.requests) == 1 and llm.loaded
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["sampling/importance_sampling_ratio/mean"])
    assert "vllm/positions_differ" in logged


def test_t_grpo_shuffled_rollouts_go_through_the_engine_with_shuffled_frames(
    fake_vllm, make_trainer, rows_of, monkeypatch
):
    from videoktr.training import bonuses

    made = []  # (frames in, permutation, frames out) of every shuffled clip built for the engine

    def spy(frames, perm, temporal):
        out = real(frames, perm, temporal)
        made.append((frames, perm, out))
        return out

    real = bonuses.patch_shuffled_video
    monkeypatch.setattr(bonuses, "patch_shuffled_video", spy)
    trainer = vllm_trainer(make_trainer, method="t_grpo", tgrpo_num_shuffled=1)
    trainer.model.train()  # the temporal bonus runs in training mode
    rows = rows_of(trainer)
    trainer._generate_and_score_completions(rows)
    (llm,) = fake_vllm.made
    (ordered, _), (shuffled, _) = llm.requests  # the rollout, then one call for the shuffled clips
    n_prompts = len(rows) // trainer.num_generations
    assert len(shuffled) == len(made) == n_prompts
    by_ids = {tuple(r["prompt_token_ids"]): r for r in ordered}
    for request, (frames_in, perm, frames_out) in zip(shuffled, made, strict=True):
        original = by_ids[tuple(request["prompt_token_ids"])]["multi_modal_data"]["video"][0]
        assert torch.equal(frames_in.permute(0, 2, 3, 1), torch.from_numpy(original))  # the rollout's frames
        assert perm.tolist() != sorted(perm.tolist())  # a real shuffle
        assert torch.equal(
            torch.from_numpy(request["multi_modal_data"]["video"][0]), frames_out.permute(0, 2, 3, 1)
        )


def test_datasets_without_video_are_refused_with_use_vllm(
    fake_vllm, tiny_model_dir, reward_alternating, tmp_path
):
    from datasets import Dataset

    from videoktr.errors import UserError
    from videoktr.models.tiny import load_model_and_processor
    from videoktr.training.config import KTRConfig
    from videoktr.training.trainer import KTRTrainer

    install_ok = {"use_vllm": True, "ktr_full_logps": "forward", "method": "grpo"}
    config = KTRConfig(
        output_dir=str(tmp_path), length_bonus=False, use_cpu=True, report_to="none", **install_ok
    )
    model, processor = load_model_and_processor(tiny_model_dir)
    text = Dataset.from_list([{"prompt": [{"role": "user", "content": "1+1?"}]}] * 2)
    with pytest.raises(UserError, match="use_vllm: true sends video prompts to vLLM.*set use_vllm: false"):
        KTRTrainer(model, [reward_alternating], config, processing_class=processor, train_dataset=text)
