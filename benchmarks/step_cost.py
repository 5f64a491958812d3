"""Step cost of each method on the demo recipe and at the paper's per-device shape, measured in one run (not a test).

    python benchmarks/step_cost.py --demo-dir runs/demo [--reps 7]

Uses the demo's SFT checkpoint and data (built first if missing, as `videoktr demo` would).

Demo recipe (32 rows = 4 prompts x G=8, one micro-batch): the rollout (generation + rewards + advantages, same
seed) is timed for grpo (shared by tw_grpo) and for ktr (which also records the sampled tokens' log-probs and
entropies during generation), interleaved. Their selection (KTR: the attribution passes and masks over whole
groups; TW-GRPO: the group weights; both at the end of the rollout) and their loss + backward are timed on that same
batch, methods interleaved round-robin. Per-step time = rollout + selection + loss/backward. t_grpo's rollout (with
its shuffled-video generations) is timed with its own trainer. Every figure is a median of ``reps`` repetitions after
one warm-up. KTR's attribution overhead = its selection + loss/backward time minus grpo's loss/backward on the same
batch; its floor = two no-grad language-model passes over the batch with precomputed video features (the masked and
the shuffled pass). Rows of groups whose advantages are all 0 are skipped where exact, so the overhead can be below
the floor; ``ktr_noskip`` is ktr with every row scored (ktr_skip_zero_advantage: false), for comparison. Vision-tower calls are counted with a forward hook.

Paper shape (tiny model, demo data): 4 completions per device, gradient accumulation 8 (steps_per_generation 8),
G = 8: one optimiser step = one generation batch of 32 rows (TRL shuffles it and splits it into 8 micro-batches) +
8 loss/backward calls; grpo and ktr steps are timed interleaved with the same seed.

The last lines are the figures to report.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def build(method: str, cfg, out: Path, paths, sft_dir: Path, **fields):
    from videoktr.demo import rl_recipe
    from videoktr.training.recipe import build_trainer

    recipe = rl_recipe(cfg, out / f"bench_{method}", paths, sft_dir)
    recipe.trainer.update(method=method, log_selected_examples=0, max_steps=1, disable_tqdm=True, **fields)
    trainer = build_trainer(recipe)
    trainer.current_gradient_accumulation_steps = recipe.trainer.get("gradient_accumulation_steps", 1)
    trainer.model.train()
    return trainer


def one_batch(trainer) -> list[dict]:
    """The first generation batch of the trainer's dataloader (same seed -> same prompts for every method)."""
    return next(iter(trainer.get_train_dataloader()))


def time_rollout(trainer, batch, seed: int, reps: int, methods=None) -> tuple[dict, int, dict]:
    """Median seconds of the rollout (generation + rewards + advantages; for ktr also recording the sampled
    tokens' log-probs and entropies, without its selection) per method, interleaved, same seed each time."""
    from videoktr.models.qwen2_5_vl import VisionCallCounter

    methods = methods or (trainer.args.method,)
    times, output, calls = {m: [] for m in methods}, None, 0
    for rep in range(1 + reps):  # the first repetition warms caches up and is not counted
        for method in methods:
            torch.manual_seed(seed)
            with VisionCallCounter(trainer.model) as counter:
                start = time.perf_counter()
                result = _with_method(trainer, method, lambda: _rollout_only(trainer, batch))
                if rep:
                    times[method].append(time.perf_counter() - start)
            if method == methods[-1]:
                output, calls = result, counter.count
    return {m: statistics.median(v) for m, v in times.items()}, calls, output


def _rollout_only(trainer, batch) -> dict:
    """The rollout without the selection (timed separately on the same batch)."""
    attach = trainer._attach_selection
    trainer._attach_selection = lambda output, video: None
    try:
        return trainer._generate_and_score_completions(batch)
    finally:
        trainer._attach_selection = attach


def _with_method(trainer, method: str, fn):
    """Run ``fn`` with ``method``; ``ktr_noskip`` is ktr scoring every row (ktr_skip_zero_advantage: false)."""
    args = trainer.args
    saved = (args.method, args.ktr_skip_zero_advantage)
    args.method, args.ktr_skip_zero_advantage = method.replace("_noskip", ""), not method.endswith("_noskip")
    try:
        return fn()
    finally:
        args.method, args.ktr_skip_zero_advantage = saved


def time_methods(trainer, output, methods, reps: int) -> tuple[dict[str, dict], float]:
    """Median seconds of selection and of loss + backward per method on the SAME batch, and of the floor (two
    no-grad LM passes), all interleaved round-robin."""
    from videoktr.models.qwen2_5_vl import VisionCallCounter

    model = trainer.model
    plain = {k: v for k, v in output.items() if not k.startswith("ktr_token_")}
    video = trainer._batch_video(plain)
    times = {m: {"select": [], "loss": []} for m in methods}
    calls, floors = {}, []
    floor = floor_passes(trainer, plain)
    for rep in range(1 + reps):  # repetition 0 is a warm-up
        start = time.perf_counter()
        floor()
        if rep:
            floors.append(time.perf_counter() - start)
        for method in methods:
            batch = dict(plain)
            with VisionCallCounter(model) as counter:
                start = time.perf_counter()
                _with_method(trainer, method, lambda b=batch: trainer._attach_selection(b, video))
                selected = time.perf_counter()
                model.zero_grad(set_to_none=True)
                _with_method(trainer, method, lambda b=batch: trainer.compute_loss(model, b).backward())
                done = time.perf_counter()
            if rep:
                times[method]["select"].append(selected - start)
                times[method]["loss"].append(done - selected)
            calls[method] = counter.count
    out = {}
    for m in methods:
        out[m] = {k: statistics.median(v) for k, v in times[m].items()}
        out[m]["vision_calls"] = calls[m]
    return out, statistics.median(floors)


def floor_passes(trainer, inputs):
    """A function running two no-grad LM passes over the batch with precomputed (detached) video features."""
    model = trainer.model
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    video = trainer._batch_video(inputs)
    with torch.no_grad():
        feats = trainer._video_features(model, video["pixel_values_videos"], video["video_grid_thw"])

    def run() -> None:
        with torch.no_grad():
            for _ in range(2):
                trainer._get_per_token_logps_and_entropies(
                    model, ids, mask, inputs["completion_ids"].size(1), video=video, video_features=feats
                )

    return run


def skipped_fraction(trainer) -> float:
    values = trainer._metrics["train"].get("ktr/skipped_frac") or [0.0]
    return values[-1]


def paper_shape(cfg, out, paths, sft_dir, reps: int) -> dict:
    """grpo and ktr optimiser steps at 4 completions per device, accumulation 8, G = 8, and the floor, interleaved."""
    fields = dict(per_device_train_batch_size=4, gradient_accumulation_steps=8, num_generations=8)
    trainers = {m: build(m, cfg, out, paths, sft_dir, **fields) for m in ("grpo", "ktr")}
    batch = one_batch(trainers["grpo"])
    times = {m: [] for m in trainers}
    skipped, floors, floor = 0.0, [], None
    for rep in range(1 + reps):  # repetition 0 is a warm-up
        if floor is not None:
            start = time.perf_counter()
            floor()
            floors.append(time.perf_counter() - start)
        for method, trainer in trainers.items():
            torch.manual_seed(cfg.seed + rep)
            trainer._buffered_inputs = None
            start = time.perf_counter()
            for micro in range(8):
                trainer._step = micro
                inputs = trainer._prepare_inputs(batch)
                trainer.compute_loss(trainer.model, inputs).backward()
            trainer.model.zero_grad(set_to_none=True)
            if rep:
                times[method].append(time.perf_counter() - start)
            if method == "ktr":
                skipped = skipped_fraction(trainer)
        if floor is None:  # the floor's batch: grpo's whole generation batch of the warm-up repetition
            floor = floor_passes(trainers["grpo"], _whole(trainers["grpo"]._buffered_inputs))
    grpo, ktr = statistics.median(times["grpo"]), statistics.median(times["ktr"])
    return {"grpo_s": grpo, "ktr_s": ktr, "floor_s": statistics.median(floors), "skipped": skipped}


def _whole(micro_batches: list[dict]) -> dict:
    """The generation batch back from its micro-batches (one padded generation: the same completion width)."""
    keys = (
        "prompt_ids",
        "prompt_mask",
        "completion_ids",
        "completion_mask",
        "video_grid_thw",
        "second_per_grid_ts",
    )
    whole = {k: torch.cat([b[k] for b in micro_batches]) for k in keys}
    whole["pixel_values_videos"] = [p for b in micro_batches for p in b["pixel_values_videos"]]
    return whole


def main() -> None:
    from videoktr.demo import DemoConfig, make_data, make_model, run_sft_stage

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo-dir", default="runs/demo", help="demo output dir (its SFT stage is reused)")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per method (median)")
    parser.add_argument("--skip-paper-shape", action="store_true", help="only the demo recipe")
    args = parser.parse_args()
    cfg, out = DemoConfig(), Path(args.demo_dir)
    paths = make_data(cfg, out)
    sft_dir, _ = run_sft_stage(cfg, out, paths, make_model(cfg, out, paths))
    # grpo, ktr and tw_grpo differ only in the selection and the loss: one rollout, timed on the same batch.
    trainer = build("ktr", cfg, out, paths, sft_dir)
    batch = one_batch(trainer)
    rollouts, rollout_calls, output = time_rollout(trainer, batch, cfg.seed, args.reps, ("grpo", "ktr"))
    methods, floor = time_methods(trainer, output, ("grpo", "ktr", "ktr_noskip", "tw_grpo"), args.reps)
    _with_method(
        trainer, "ktr", lambda: trainer._attach_selection(dict(output), trainer._batch_video(output))
    )
    skipped = skipped_fraction(trainer)
    # t_grpo's rollout adds the shuffled-video generations; its loss is grpo's.
    t_trainer = build("t_grpo", cfg, out, paths, sft_dir)
    t_rollouts, t_calls, _ = time_rollout(t_trainer, batch, cfg.seed, args.reps)
    t_rollout = t_rollouts["t_grpo"]
    tokens = int(output["completion_mask"].sum())
    rows = {}
    for method, m in methods.items():
        rollout = rollouts["ktr" if method.startswith("ktr") else "grpo"]
        rows[method] = {"rollout_s": rollout + m["select"], "loss_s": m["loss"], "calls": m["vision_calls"]}
    rows["t_grpo"] = {"rollout_s": t_rollout, "loss_s": methods["grpo"]["loss"], "calls": None}
    for row in rows.values():
        row["step_s"] = row["rollout_s"] + row["loss_s"]
    grpo = rows["grpo"]
    print(
        f"{'method':10s} {'rollout+select s':>16s} {'loss+bwd s':>10s} {'step s':>7s} {'/grpo':>6s} "
        f"{'vision calls (generation, select+loss)':>38s} {'tokens':>6s}"
    )
    for method, row in rows.items():
        calls = f"{t_calls}, 1" if method == "t_grpo" else f"{rollout_calls}, {row['calls']}"
        print(
            f"{method:10s} {row['rollout_s']:16.3f} {row['loss_s']:10.3f} {row['step_s']:7.3f} "
            f"{row['step_s'] / grpo['step_s']:6.2f} {calls:>38s} {tokens:6d}"
        )
    overhead = rows["ktr"]["step_s"] - grpo["step_s"]
    extra_vision = methods["ktr"]["vision_calls"] - methods["grpo"]["vision_calls"]
    print(
        f"ktr attribution overhead: {overhead:.3f} s; floor (2 no-grad LM passes): {floor:.3f} s; "
        f"extra vision passes per step: {extra_vision}; rows skipped (zero-advantage groups): {skipped:.2f}"
    )
    if not args.skip_paper_shape:
        paper = paper_shape(cfg, out, paths, sft_dir, max(1, args.reps // 2))
        paper_overhead = paper["ktr_s"] - paper["grpo_s"]
        print(
            f"paper shape (4 completions/device, accumulation 8, G 8; one optimiser step): grpo "
            f"{paper['grpo_s']:.3f} s, ktr {paper['ktr_s']:.3f} s, floor {paper['floor_s']:.3f} s, "
            f"rows skipped {paper['skipped']:.2f}"
        )
        print(f"paper-shape ktr/grpo step-time ratio: {paper['ktr_s'] / paper['grpo_s']:.2f}")
        print(f"paper-shape ktr overhead/floor ratio: {paper_overhead / paper['floor_s']:.2f}")
    noskip = rows["ktr_noskip"]["step_s"]
    print(
        f"without skipping (every row scored): ktr/grpo step-time ratio {noskip / grpo['step_s']:.2f}, "
        f"overhead/floor ratio {(noskip - grpo['step_s']) / floor:.2f}"
    )
    print(f"rows skipped (demo batch): {skipped:.2f}")
    print(f"ktr/grpo step-time ratio: {rows['ktr']['step_s'] / grpo['step_s']:.2f}")
    print(f"ktr overhead/floor ratio: {overhead / floor:.2f}")


if __name__ == "__main__":
    main()
