"""Step cost of each method on the demo recipe, measured in one run (not a test).

    python benchmarks/step_cost.py --demo-dir runs/demo [--reps 5]

Uses the demo's SFT checkpoint and data (built first if missing, as `videoktr demo` would). grpo, ktr and tw_grpo
share the rollout code, so one rollout (generation + rewards + advantages, same seed) is timed and their loss +
backward are timed on that same batch, interleaved round-robin; t_grpo's rollout (with its shuffled-video
generations) is timed with its own trainer. Every figure is a median of ``reps`` repetitions after one warm-up. Per-step time = rollout + loss/backward.
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


def build(method: str, cfg, out: Path, paths, sft_dir: Path):
    from videoktr.demo import rl_recipe
    from videoktr.training.recipe import build_trainer

    recipe = rl_recipe(cfg, out / f"bench_{method}", paths, sft_dir)
    recipe.trainer.update(method=method, log_selected_examples=0, max_steps=1, disable_tqdm=True)
    return build_trainer(recipe)


def one_batch(trainer) -> list[dict]:
    """The first generation batch of the trainer's dataloader (same seed -> same prompts for every method)."""
    return next(iter(trainer.get_train_dataloader()))


def time_rollout(trainer, batch, seed: int, reps: int) -> tuple[float, int, dict]:
    """Median seconds of the rollout (generation + rewards + advantages) with the same seed each time."""
    from videoktr.models.qwen2_5_vl import VisionCallCounter

    times, inputs, calls = [], None, 0
    for _ in range(1 + reps):  # the first repetition warms caches up and is not counted
        torch.manual_seed(seed)
        trainer._buffered_inputs = None
        with VisionCallCounter(trainer.model) as counter:
            start = time.perf_counter()
            inputs = trainer._prepare_inputs(batch)
            times.append(time.perf_counter() - start)
        calls = counter.count
    return statistics.median(times[1:]), calls, inputs


def time_losses(trainer, inputs, methods, reps: int) -> dict[str, tuple[float, int]]:
    """Median seconds of loss + backward per method on the SAME batch, methods interleaved round-robin."""
    from videoktr.models.qwen2_5_vl import VisionCallCounter

    model, saved = trainer.model, trainer.args.method
    times = {m: [] for m in methods}
    calls = {}
    try:
        for rep in range(1 + reps):
            for method in methods:
                trainer.args.method = method
                model.zero_grad(set_to_none=True)
                with VisionCallCounter(model) as counter:
                    start = time.perf_counter()
                    trainer.compute_loss(model, inputs).backward()
                    elapsed = time.perf_counter() - start
                if rep:  # repetition 0 is a warm-up
                    times[method].append(elapsed)
                calls[method] = counter.count
    finally:
        trainer.args.method = saved
    return {m: (statistics.median(times[m]), calls[m]) for m in methods}


def floor_seconds(trainer, inputs, reps: int) -> float:
    """Two no-grad LM passes over the batch with precomputed (detached) video features."""
    model = trainer.model
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    video = trainer._batch_video(inputs)
    with torch.no_grad():
        feats = trainer._video_features(model, video["pixel_values_videos"], video["video_grid_thw"])
    times = []
    for _ in range(1 + reps):
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(2):
                trainer._get_per_token_logps_and_entropies(
                    model, ids, mask, inputs["completion_ids"].size(1), video=video, video_features=feats
                )
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    from videoktr.demo import DemoConfig, make_data, make_model, run_sft_stage

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo-dir", default="runs/demo", help="demo output dir (its SFT stage is reused)")
    parser.add_argument("--reps", type=int, default=7, help="loss/backward repetitions per method (median)")
    args = parser.parse_args()
    cfg, out = DemoConfig(), Path(args.demo_dir)
    paths = make_data(cfg, out)
    sft_dir, _ = run_sft_stage(cfg, out, paths, make_model(cfg, out, paths))
    # grpo, ktr and tw_grpo differ only in the loss: one trainer, one rollout, their losses timed on the same batch.
    trainer = build("ktr", cfg, out, paths, sft_dir)
    trainer.current_gradient_accumulation_steps = (
        1  # set by Trainer.train(); we call the step pieces directly
    )
    trainer.model.train()
    batch = one_batch(trainer)
    rollout, rollout_calls, inputs = time_rollout(trainer, batch, cfg.seed, args.reps)
    losses = time_losses(trainer, inputs, ("grpo", "ktr", "tw_grpo"), args.reps)
    floor = floor_seconds(trainer, inputs, args.reps)
    # t_grpo's rollout adds the shuffled-video generations; its loss is grpo's.
    t_trainer = build("t_grpo", cfg, out, paths, sft_dir)
    t_trainer.current_gradient_accumulation_steps = 1
    t_trainer.model.train()
    t_rollout, t_calls, _ = time_rollout(t_trainer, batch, cfg.seed, args.reps)
    tokens = int(inputs["completion_mask"].sum())
    rows = {}
    for method, (loss_s, loss_calls) in losses.items():
        rows[method] = {
            "rollout_s": rollout,
            "loss_s": loss_s,
            "vision_calls_rollout": rollout_calls,
            "vision_calls_loss": loss_calls,
            "tokens": tokens,
        }
    rows["t_grpo"] = {
        "rollout_s": t_rollout,
        "loss_s": losses["grpo"][0],
        "vision_calls_rollout": t_calls,
        "vision_calls_loss": losses["grpo"][1],
        "tokens": tokens,
    }
    for row in rows.values():
        row["step_s"] = row["rollout_s"] + row["loss_s"]
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
