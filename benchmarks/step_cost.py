"""Step cost of each method on the demo recipe, measured in one run (not a test).

    python benchmarks/step_cost.py --demo-dir runs/demo [--reps 5]

Uses the demo's SFT checkpoint and data (built first if missing, as `videoktr demo` would). For each method, one
trainer from the same checkpoint and seed: the rollout (generation + rewards + advantages) is timed once, then the
loss + backward on that same batch is timed ``reps`` times (median). Per-step time = rollout + loss/backward.
KTR's attribution overhead = its loss/backward time minus grpo's on the same batch; its floor = two no-grad
language-model passes over the batch with precomputed video features (the masked and the shuffled pass: the
full-video log-probs and entropies come from the policy forward itself). Vision-tower calls are counted with a
forward hook. The last two lines are the figures to report.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

METHODS = ("grpo", "ktr", "t_grpo", "tw_grpo")


def build(method: str, cfg, out: Path, paths, sft_dir: Path):
    from videoktr.demo import rl_recipe
    from videoktr.training.recipe import build_trainer

    recipe = rl_recipe(cfg, out / f"bench_{method}", paths, sft_dir)
    recipe.trainer.update(method=method, log_selected_examples=0, max_steps=1, disable_tqdm=True)
    return build_trainer(recipe)


def one_batch(trainer) -> list[dict]:
    """The first generation batch of the trainer's dataloader (same seed -> same prompts for every method)."""
    return next(iter(trainer.get_train_dataloader()))


def time_method(method, cfg, out, paths, sft_dir, reps):
    from videoktr.models.qwen2_5_vl import VisionCallCounter

    trainer = build(method, cfg, out, paths, sft_dir)
    model = trainer.model
    model.train()
    batch = one_batch(trainer)
    torch.manual_seed(cfg.seed)
    with VisionCallCounter(model) as gen_calls:
        start = time.perf_counter()
        inputs = trainer._prepare_inputs(batch)
        rollout = time.perf_counter() - start
    times, loss_calls = [], []
    for _ in range(reps):
        model.zero_grad(set_to_none=True)
        with VisionCallCounter(model) as calls:
            start = time.perf_counter()
            loss = trainer.compute_loss(model, inputs)
            loss.backward()
            times.append(time.perf_counter() - start)
        loss_calls.append(calls.count)
    return (
        trainer,
        inputs,
        {
            "rollout_s": rollout,
            "loss_s": statistics.median(times),
            "vision_calls_rollout": gen_calls.count,
            "vision_calls_loss": statistics.median(loss_calls),
            "tokens": int(inputs["completion_mask"].sum()),
        },
    )


def floor_seconds(trainer, inputs, reps: int) -> float:
    """Two no-grad LM passes over the batch with precomputed (detached) video features."""
    model = trainer.model
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    video = trainer._batch_video(inputs)
    with torch.no_grad():
        feats = trainer._video_features(model, video["pixel_values_videos"], video["video_grid_thw"])
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(2):
                trainer._get_per_token_logps_and_entropies(
                    model, ids, mask, inputs["completion_ids"].size(1), video=video, video_features=feats
                )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from videoktr.demo import DemoConfig, make_data, make_model, run_sft_stage

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo-dir", default="runs/demo", help="demo output dir (its SFT stage is reused)")
    parser.add_argument("--reps", type=int, default=5, help="loss/backward repetitions per method (median)")
    args = parser.parse_args()
    cfg, out = DemoConfig(), Path(args.demo_dir)
    paths = make_data(cfg, out)
    sft_dir, _ = run_sft_stage(cfg, out, paths, make_model(cfg, out, paths))
    rows, floor = {}, None
    for method in METHODS:
        trainer, inputs, row = time_method(method, cfg, out, paths, sft_dir, args.reps)
        row["step_s"] = row["rollout_s"] + row["loss_s"]
        rows[method] = row
        if method == "ktr":
            floor = floor_seconds(trainer, inputs, args.reps)
    grpo = rows["grpo"]
    print(
        f"{'method':8s} {'rollout s':>9s} {'loss+bwd s':>10s} {'step s':>7s} {'/grpo':>6s} "
        f"{'vision calls (rollout, loss)':>28s} {'tokens':>6s}"
    )
    for method, row in rows.items():
        print(
            f"{method:8s} {row['rollout_s']:9.3f} {row['loss_s']:10.3f} {row['step_s']:7.3f} "
            f"{row['step_s'] / grpo['step_s']:6.2f} {row['vision_calls_rollout']:>14} {row['vision_calls_loss']:>13} "
            f"{row['tokens']:6d}"
        )
    overhead = rows["ktr"]["loss_s"] - grpo["loss_s"]
    extra_vision = rows["ktr"]["vision_calls_loss"] - grpo["vision_calls_loss"]
    print(
        f"ktr attribution overhead: {overhead:.3f} s; floor (2 no-grad LM passes): {floor:.3f} s; "
        f"extra vision passes per step: {extra_vision}"
    )
    print(f"ktr/grpo step-time ratio: {rows['ktr']['step_s'] / grpo['step_s']:.2f}")
    print(f"ktr overhead/floor ratio: {overhead / floor:.2f}")


if __name__ == "__main__":
    main()
