"""HeldOutEval: held-out accuracy points during a 2-step tiny RL run, without changing the training itself."""

import json

import pytest
import torch

from videoktr.data.video import VideoSamplingConfig
from videoktr.eval.benchmarks import load_benchmark
from videoktr.training.callbacks import HeldOutEval, rollout_generation


def test_rollout_generation_copies_the_trainer_sampling(make_trainer):
    trainer = make_trainer(temperature=0.7, top_k=5, top_p=0.9, repetition_penalty=1.1)
    g = rollout_generation(trainer.args)
    assert (g.temperature, g.top_k, g.top_p, g.repetition_penalty, g.max_new_tokens) == (0.7, 5, 0.9, 1.1, 16)


def test_points_at_start_every_step_and_end_and_training_unchanged(make_trainer, synthetic_data, tmp_path):
    items = load_benchmark("video-r1", synthetic_data["test"])
    sampling = VideoSamplingConfig(num_frames=4, max_pixels=56 * 112)
    plain = make_trainer()
    plain.train()
    watched = make_trainer()
    out = tmp_path / "heldout.jsonl"
    out.write_text('{"step": 7}\n')  # a stale line of an older run: a fresh run starts the file anew
    watched.add_callback(HeldOutEval(items, sampling, synthetic_data["root"], "short", 1, out, batch_size=4))
    watched.train()

    points = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["step"] for p in points] == [0, 1, 2]  # start, every step (the end is step 2: not repeated)
    for p in points:
        assert p["n_items"] == len(items) == 1 and 0.0 <= p["greedy"] <= 1.0 and 0.0 <= p["sampled"] <= 1.0
        assert set(p["greedy_by_category"]) == set(p["sampled_by_category"])
    assert watched.model.training
    # the evaluations (which reseed torch for sampling) leave the training identical, parameter for parameter
    for (name, a), (_, b) in zip(plain.model.named_parameters(), watched.model.named_parameters()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="every=0 must be >= 1"):
        HeldOutEval(items, sampling, synthetic_data["root"], "short", 0, out)
