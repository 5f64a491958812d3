"""KTRTrainer end to end on the tiny model: every method trains, the video reaches the loss and the vision tower,
the r = 1 KTR loss is vanilla GRPO bit for bit, reward errors name the sample, and training resumes exactly."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import TrainerCallback

from videoktr.rewards import RewardError

# What each method must log besides the loss (its own path ran): metric -> expected value (None: just present).
# t_grpo, G=2, one prompt per step, alternating reward [0, 1]; with tgrpo_num_shuffled=1 the shuffled completion
# is scored [0.0], so p_ordered = 0.5 >= mu * 0 and the correct row (reward 1 > 0.1) gets the bonus:
# bonus_frac = 1/2 and the logged accuracy-column mean = (0 + 1 + 0.3) / 2 = 0.65.
METHOD_METRICS = {
    "grpo": {"ktr/loss_token_frac": 1.0},
    "ktr": {
        "ktr/selected_frac/union": None,
        "ktr/selected_frac/visual": None,
        "ktr/selected_frac/temporal": None,
    },
    "entropy": {"ktr/selected_frac/entropy": None},
    "t_grpo": {"tgrpo/bonus_frac": 0.5, "rewards/alternating/mean": 0.65},
    "tw_grpo": {"tw/weight_mean": None},
}


@pytest.mark.parametrize("method", list(METHOD_METRICS))
def test_two_steps_change_every_trainable_parameter(make_trainer, param_snapshot, method):
    trainer = make_trainer(method=method, per_device_train_batch_size=2, tgrpo_num_shuffled=1)
    before = param_snapshot(trainer.model)
    trainer.train()

    assert trainer.state.global_step == 2
    after = dict(trainer.model.named_parameters())
    trainable = [n for n, p in after.items() if p.requires_grad]
    unchanged = [n for n in trainable if torch.equal(before[n], after[n])]
    assert not unchanged, f"{method}: parameters not updated by 2 steps: {unchanged}"
    assert any(n.startswith("model.visual.") for n in trainable)  # the vision tower is trained too
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2
    for log in logs:
        assert log["reward_std"] > 0  # the alternating reward gives non-zero advantages
        assert log["grad_norm"] > 0
        for name, expected in METHOD_METRICS[method].items():
            assert name in log, f"{method}: {name} not logged"
            if expected is not None:
                assert log[name] == pytest.approx(expected)
    if method != "ktr":
        assert "ktr/selected_frac/visual" not in logs[0]


# ------------------------------------------------------------------------------ one generated video batch
@pytest.fixture(scope="module")
def video_batch(make_trainer, rows_of):
    """(trainer, batch): method=grpo with a KL term (ref log-probs from the original pixels), 2 prompts x G=2."""
    trainer = make_trainer(method="grpo", beta=0.04)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); _compute_loss divides by it
    batch = trainer._generate_and_score_completions(rows_of(trainer))
    assert len(batch["pixel_values_videos"]) == 4 and batch["video_grid_thw"].tolist() == [[2, 4, 8]] * 4
    assert batch["advantages"].abs().min() > 0
    return trainer, batch


def _loss_and_grads(trainer, batch, model=None):
    model = model or trainer.model
    model.zero_grad(set_to_none=True)
    loss = trainer._compute_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_loss_depends_on_the_video_pixels(video_batch):
    trainer, batch = video_batch
    loss, _ = _loss_and_grads(trainer, batch)
    # ratio = 1 on-policy and the policy is the reference: loss = -mean(A) + beta * 0 = 0 (A sums to 0 per group)
    assert loss.abs() < 1e-6
    brighter = {**batch, "pixel_values_videos": [p + 1.0 for p in batch["pixel_values_videos"]]}
    loss_brighter, _ = _loss_and_grads(trainer, brighter)
    # other pixels -> other log-probs than the reference's -> k3 KL > 0 -> a different (larger) loss
    assert loss_brighter > loss + 1e-6


def test_vision_tower_receives_gradient(video_batch):
    trainer, batch = video_batch
    _, grads = _loss_and_grads(trainer, batch)
    visual = [n for n, _ in trainer.model.named_parameters() if n.startswith("model.visual.")]
    assert visual and all(n in grads and grads[n].abs().sum() > 0 for n in visual)


def test_frozen_vision_tower_gets_no_gradient(video_batch, make_trainer):
    trainer, batch = video_batch
    frozen = make_trainer(method="grpo", beta=0.04, recipe={"freeze_vision": True})
    frozen.model.train()
    frozen.current_gradient_accumulation_steps = 1
    visual = dict(frozen.model.model.visual.named_parameters())
    assert visual and not any(p.requires_grad for p in visual.values())
    _, grads = _loss_and_grads(frozen, batch)
    assert not any(n.startswith("model.visual.") for n in grads)
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith("model.language_model."))


@pytest.fixture(scope="module")
def grpo_reference(video_batch):
    """(off-policy batch, GRPO loss, GRPO grads): old log-probs = ref - noise, so the ratio, clipping and KL
    are all non-trivial."""
    trainer, batch = video_batch
    g = torch.Generator().manual_seed(0)
    noise = 0.3 * torch.rand(batch["ref_per_token_logps"].shape, generator=g)
    off_policy = {**batch, "old_per_token_logps": batch["ref_per_token_logps"] - noise}
    assert trainer.args.method == "grpo"
    loss, grads = _loss_and_grads(trainer, off_policy)
    assert loss.abs() > 1e-4
    return off_policy, loss, grads


def _select(trainer, batch, **fields):
    """``batch`` with the selection of ``fields`` (KTRConfig fields) attached, as the rollout attaches it."""
    args = trainer.args
    saved = {name: getattr(args, name) for name in fields}
    out = {k: v for k, v in batch.items() if not k.startswith("ktr_token_")}
    try:
        for name, value in fields.items():
            setattr(args, name, value)
        trainer._attach_selection(out, trainer._batch_video(out))
    finally:
        for name, value in saved.items():
            setattr(args, name, value)
    return out


@pytest.mark.parametrize(
    "fractions",
    [
        {"visual": 1.0, "temporal": 1.0, "entropy": 1.0},
        {"visual": 1.0, "temporal": 0.2, "entropy": 0.2},
        {"visual": 0.2, "temporal": 0.2, "entropy": 1.0},
    ],
    ids=["all", "visual", "entropy"],
)
def test_ktr_with_a_full_fraction_equals_grpo_bit_for_bit(video_batch, grpo_reference, fractions):
    trainer, _ = video_batch
    off_policy, grpo_loss, grpo_grads = grpo_reference
    selected = _select(
        trainer,
        off_policy,
        method="ktr",
        ktr_visual_fraction=fractions["visual"],
        ktr_temporal_fraction=fractions["temporal"],
        ktr_entropy_fraction=fractions["entropy"],
    )
    assert trainer._metrics["train"]["ktr/selected_frac/union"][-1] == 1.0
    assert torch.equal(selected["ktr_token_mask"], selected["completion_mask"].bool())
    ktr_loss, ktr_grads = _loss_and_grads(trainer, selected)
    assert torch.equal(ktr_loss, grpo_loss)
    assert grpo_grads.keys() == ktr_grads.keys()
    assert all(torch.equal(ktr_grads[n], grpo_grads[n]) for n in grpo_grads)


def _temporal_selection(trainer, batch, fraction):
    from videoktr.training.selection import read_selection_records

    path = trainer.args.output_dir + "/selection.jsonl"
    open(path, "w").close()
    _select(
        trainer,
        batch,
        method="ktr",
        ktr_signals=["temporal"],
        ktr_temporal_fraction=fraction,
        log_selected_examples=-1,
    )
    return [r["masks"]["temporal"] for r in read_selection_records(path)]


def _moving_rows(batch):
    moving = []
    for pixels, (t, h, w) in zip(batch["pixel_values_videos"], batch["video_grid_thw"].tolist(), strict=True):
        patches = pixels.view(t, h * w, -1)
        moving.append(not all(torch.equal(patches[0], patches[i]) for i in range(1, t)))
    return moving


def test_temporal_fraction_one_keeps_every_valid_token(video_batch):
    # METHOD 2: r = 1 for a signal selects every valid token, even of a video whose temporal patches are identical.
    trainer, batch = video_batch
    masks = _temporal_selection(trainer, batch, 1.0)
    assert len(masks) == batch["completion_ids"].size(0)
    assert all(all(m) for m in masks)
    assert trainer._metrics["train"]["ktr/selected_frac/temporal"][-1] == pytest.approx(1.0)


def test_unmoved_tokens_are_not_candidates_below_fraction_one(video_batch):
    # A static synthetic scene: shuffling identical temporal patches moves no log-prob (score exactly 0), so for
    # r < 1 none of its tokens is selected (the threshold does not "keep the ties" at zero); the moving video's
    # tokens still are.
    trainer, batch = video_batch
    moving = _moving_rows(batch)
    assert any(moving) and not all(moving)  # the fixture data has one static and one moving video
    masks = _temporal_selection(trainer, batch, 0.5)
    for mask, is_moving in zip(masks, moving, strict=True):
        assert any(mask) == is_moving


# ------------------------------------------------------------------------------------------- reward errors
def test_failing_reward_names_the_reward_and_the_sample(make_trainer, synthetic_data, tmp_path):
    # a record without a solution is refused before training (tests/test_faults.py); here a row loses it after
    # the check, so the reward itself must name the sample it cannot score
    records = json.loads(synthetic_data["train"].read_text())
    bad_id = records[1]["problem_id"]
    trainer = make_trainer(rewards=["accuracy"], accuracy_reward="accuracy", max_steps=1)
    trainer.train_dataset = trainer.train_dataset.map(
        lambda row: {"solution": None if row["problem_id"] == bad_id else row["solution"]}
    )
    with pytest.raises(
        RewardError, match=rf"reward .accuracy. cannot score sample problem_id=.?{re.escape(bad_id)}"
    ) as err:
        trainer.train()
    assert "missing solution" in str(err.value)


# ------------------------------------------------------------------------------------------------- resume
class _CaptureStart(TrainerCallback):
    """Global step and Adam exp_avg tensors as training starts (after a checkpoint's state was loaded)."""

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.start_step = state.global_step
        self.exp_avg = {k: v["exp_avg"].clone() for k, v in optimizer.state_dict()["state"].items()}


def test_resume_continues_from_the_checkpoint(make_trainer, tmp_path):
    out = str(tmp_path / "run")
    fields = dict(method="grpo", per_device_train_batch_size=2, output_dir=out)
    first = make_trainer(**fields, max_steps=2, save_strategy="steps", save_steps=2)
    first.train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    saved = torch.load(checkpoint / "optimizer.pt", weights_only=True)["state"]
    assert saved and all(s["exp_avg"].abs().sum() > 0 for s in saved.values())

    second = make_trainer(**fields, max_steps=3, save_strategy="no")
    capture = _CaptureStart()
    second.add_callback(capture)
    second.train(resume_from_checkpoint=str(checkpoint))

    assert capture.start_step == 2 and second.state.global_step == 3
    assert capture.exp_avg.keys() == saved.keys()
    assert all(torch.equal(capture.exp_avg[k], saved[k]["exp_avg"]) for k in saved)
    steps = [h["step"] for h in second.state.log_history if "loss" in h]
    assert steps == [1, 2, 3]  # the checkpoint's log history (steps 1-2) plus the one new step
