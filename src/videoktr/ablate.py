"""``videoktr ablate --config configs/ablations/synthetic.yaml --seeds 3``: Table-2-style ablation on the synthetic
suite. Every variant starts from the same SFT checkpoint (built once, as in the demo), trains with its own RL settings
for each seed, and is evaluated on the held-out split. Prints and saves held-out accuracy (overall, static, temporal)
as mean +- std over seeds. Finished (variant, seed) runs are kept in ``OUT/runs.jsonl`` and skipped on rerun.

Config::

    demo: {...}            # DemoConfig fields shared by every variant (data, model, SFT, RL budget)
    variants:
      - {name: "Vanilla GRPO", method: grpo}
      - {name: "V", method: ktr, trainer: {ktr_signals: [visual]}}
      - {name: "TW-GRPO binary", method: tw_grpo, rewards: [tw_exact_mc, tw_format]}  # rewards: optional

Then the paired comparison (:mod:`videoktr.analysis.ablation`): every variant's accuracy with a 95% bootstrap
interval over the held-out questions, and its difference to the reference (the first ``method: grpo`` variant, else
the first) paired by seed and question, resampling questions (seeds fixed, averaged) and questions and seeds; saved
to ``OUT/ablation.md``, ``OUT/ablation.json`` (``paired``) and plotted in ``OUT/ablation.png``. Runs with the same
seed see the same RL prompts in the same order (TRL's sampler is seeded with the run's seed, and every variant uses
the same generation batch).

With multi-answer kinds (a multi-answer template), the table also gives the mean partial credit (``score``) and
the paired difference of each variant to the first one, per seed, with a 95% t-interval over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path


def _load(path: str):
    from videoktr.demo import DemoConfig
    from videoktr.errors import UserError
    from videoktr.training.recipe import check_field_types, read_yaml

    raw = read_yaml(path) or {}
    if not isinstance(raw, dict) or not isinstance(raw.get("demo", {}), dict):
        raise UserError(f"{path}: expected a mapping with 'demo' (DemoConfig fields) and 'variants'")
    names = {f.name for f in dataclasses.fields(DemoConfig)}
    demo = raw.get("demo", {})
    unknown = sorted(set(demo) - names)
    if unknown:
        raise UserError(f"{path}: unknown demo settings {unknown}")
    check_field_types(DemoConfig, demo, f"{path}: demo.")
    variants = raw.get("variants") or []
    if not variants or not isinstance(variants, list):
        raise UserError(f"{path}: 'variants' is empty; list at least one {{name, method, trainer}}")
    for v in variants:
        if not isinstance(v, dict) or "name" not in v or "method" not in v:
            raise UserError(f"{path}: every variant needs 'name' and 'method' (got {v})")
        unknown_keys = sorted(set(v) - {"name", "method", "trainer", "rewards"})
        if unknown_keys:
            raise UserError(f"{path}: variant {v['name']!r} has unknown keys {unknown_keys}")
    return DemoConfig(**demo), variants


def _family_accuracy(summary: dict, family: str) -> float | None:
    return summary["by_category"].get(f"family/{family}")


def run_dir_of(out: Path, name: str, seed: int) -> Path:
    """The directory of one (variant, seed) run: its RL checkpoint and ``predictions.jsonl``."""
    return out / f"{name.replace(' ', '_').replace('&', 'and')}_seed{seed}"


def reference_variant(variants: list[dict]) -> str:
    """The variant the others are compared to: the first with ``method: grpo``, else the first."""
    return next((v["name"] for v in variants if v["method"] == "grpo"), variants[0]["name"])


def paired_comparison(
    out: Path, rows: list[dict], variants: list[dict], n_boot: int, reference: str | None = None
) -> dict:
    """The paired summary of the finished runs (their ``predictions.jsonl``) of ``variants`` against
    ``reference`` (default: :func:`reference_variant` of ``variants``; its runs are included when not listed)."""
    from videoktr.analysis.ablation import paired_summary, question_outcomes

    reference = reference or reference_variant(variants)
    names = [v["name"] for v in variants]
    outcomes: dict[str, dict[int, dict]] = {}
    for v in variants + ([{"name": reference}] if reference not in names else []):  # the reference's runs too
        for row in sorted((r for r in rows if r["variant"] == v["name"]), key=lambda r: r["seed"]):
            predictions = run_dir_of(out, v["name"], row["seed"]) / "predictions.jsonl"
            outcomes.setdefault(v["name"], {})[row["seed"]] = question_outcomes(predictions)
    sft = question_outcomes(out / "predictions_sft.jsonl")
    return paired_summary(outcomes, sft, reference, n_boot=n_boot)


def run_variant(base, variant: dict, seed: int, out: Path, paths, sft_dir: Path) -> dict:
    from videoktr.demo import evaluate_dir, run_rl_stage

    cfg = dataclasses.replace(
        base,
        method=variant["method"],
        seed=seed,
        rewards=list(variant.get("rewards", base.rewards)),
        trainer_overrides={**base.trainer_overrides, **variant.get("trainer", {})},
    )
    run_dir = run_dir_of(out, variant["name"], seed)
    trainer, stopped = run_rl_stage(cfg, run_dir, paths, sft_dir)
    summary = evaluate_dir(cfg, run_dir / "rl", paths, run_dir / "predictions.jsonl")
    return {
        "variant": variant["name"],
        "seed": seed,
        "accuracy": summary["accuracy"],
        "static": _family_accuracy(summary, "static"),
        "temporal": _family_accuracy(summary, "temporal"),
        "score": summary.get("mean_score"),
        "score_static": summary.get("by_category_mean_score", {}).get("family/static"),
        "score_temporal": summary.get("by_category_mean_score", {}).get("family/temporal"),
        "steps": trainer.state.global_step,
        "stopped_by_time_budget": stopped,
    }


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} +- {100 * std:.1f}"


def table(rows: list[dict], names: list[str], sft: dict) -> str:
    lines = ["| variant | seeds | overall | static | temporal |", "|---|---|---|---|---|"]
    lines.append(
        f"| SFT checkpoint (no RL) | - | {100 * sft['accuracy']:.1f} | "
        f"{100 * (_family_accuracy(sft, 'static') or 0):.1f} | {100 * (_family_accuracy(sft, 'temporal') or 0):.1f} |"
    )
    for name in names:
        mine = [r for r in rows if r["variant"] == name]
        if not mine:
            continue
        cols = [mean_std([r[k] for r in mine]) for k in ("accuracy", "static", "temporal")]
        lines.append(f"| {name} | {len(mine)} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


# Student t 0.975 quantiles by degrees of freedom (seeds - 1), for 95% intervals over a few seeds
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def interval(values: list[float]) -> str:
    """``mean [low, high]`` in points: a 95% t-interval of the mean over seeds (``n/a`` below 2 values)."""
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return "n/a" if not values else f"{100 * values[0]:.1f}"
    mean = statistics.mean(values)
    half = T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / len(values) ** 0.5
    return f"{100 * mean:+.1f} [{100 * (mean - half):+.1f}, {100 * (mean + half):+.1f}]"


def partial_credit_tables(rows: list[dict], names: list[str], sft: dict) -> str:
    """Multi-answer runs: mean partial credit per family, and each variant minus the first one, paired by seed
    (strict accuracy and partial credit), as a 95% t-interval over seeds."""
    keys = ("score", "score_static", "score_temporal")
    by_cat = sft.get("by_category_mean_score", {})
    sft_cols = [sft.get("mean_score"), by_cat.get("family/static"), by_cat.get("family/temporal")]
    lines = [
        "Mean partial credit (|P|/|G| if P is a subset of G, else 0):",
        "",
        "| variant | seeds | overall | static | temporal |",
        "|---|---|---|---|---|",
        "| SFT checkpoint (no RL) | - | " + " | ".join(f"{100 * (v or 0):.1f}" for v in sft_cols) + " |",
    ]
    for name in names:
        mine = [r for r in rows if r["variant"] == name]
        if mine:
            cols = [mean_std([r.get(k) for r in mine]) for k in keys]
            lines.append(f"| {name} | {len(mine)} | " + " | ".join(cols) + " |")
    reference = names[0]
    lines += ["", f"Paired by seed, minus {reference} (points, mean [95% t-interval]):", ""]
    lines += ["| variant | seeds | strict accuracy | partial credit |", "|---|---|---|---|"]
    ref = {r["seed"]: r for r in rows if r["variant"] == reference}
    for name in names[1:]:
        mine = [r for r in rows if r["variant"] == name and r["seed"] in ref]
        if mine:
            diffs = [
                interval([r[k] - ref[r["seed"]][k] for r in mine if r.get(k) is not None])
                for k in ("accuracy", "score")
            ]
            lines.append(f"| {name} | {len(mine)} | " + " | ".join(diffs) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from videoktr.demo import evaluate_dir, make_data, make_model, quiet_libraries, run_sft_stage
    from videoktr.errors import UserError
    from videoktr.eval.progress import ProgressReport

    quiet_libraries()
    console = Console()
    base, variants = _load(args.config)
    if args.bootstrap < 100:
        raise UserError(f"--bootstrap {args.bootstrap}: use at least 100 replicates (default 10000)")
    all_variants = variants  # tables: every variant with finished runs (also those of an earlier --only)
    if args.only:
        variants = [v for v in variants if v["name"] in args.only]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = make_data(base, out)
    model_dir = make_model(base, out, paths)
    sft_dir, _ = run_sft_stage(base, out, paths, model_dir)
    sft_file = out / "sft_summary.json"
    if not sft_file.exists():
        sft_file.write_text(json.dumps(evaluate_dir(base, sft_dir, paths, out / "predictions_sft.jsonl")))
    sft = json.loads(sft_file.read_text())
    done_file = out / "runs.jsonl"
    rows = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.exists() else []
    planned = [(seed, variant) for seed in range(args.seeds) for variant in variants]
    finished = {(r["variant"], r["seed"]) for r in rows}
    todo = [(seed, v) for seed, v in planned if (v["name"], seed) not in finished]
    # one line per finished run (runs done / total with the resumed ones, runs/s, time left): a live bar would
    # collide with the training bars of each run
    with ProgressReport(
        "ablate", len(planned), len(planned) - len(todo), unit="runs", every_percent=0, interactive=False
    ) as shown:
        for seed, variant in todo:
            console.rule(f"{variant['name']} seed {seed}")
            row = run_variant(base, variant, seed, out, paths, sft_dir)
            rows.append(row)
            with open(done_file, "a") as f:
                f.write(json.dumps(row) + "\n")
            shown.advance(1)
    with_runs = [v for v in all_variants if any(r["variant"] == v["name"] for r in rows)]
    text = table(rows, [v["name"] for v in with_runs], sft)
    from videoktr.data.prompts import PROMPT_TEMPLATES

    if PROMPT_TEMPLATES.get(base.template).multi_answer:
        text += "\n\n" + partial_credit_tables(rows, [v["name"] for v in with_runs], sft)
    from videoktr.analysis.ablation import paired_table, plot_paired

    paired = paired_comparison(out, rows, with_runs, args.bootstrap, reference_variant(all_variants))
    text += (
        f"\n\nHeld-out accuracy (%, mean over seeds, 95% bootstrap CI over the {paired['n_questions']} questions) and "
        f"the difference to {paired['reference']} paired by seed and question (points; seeds fixed, and seeds "
        f"resampled too):\n\n" + paired_table(paired)
    )
    plot_paired(paired, out / "ablation.png")
    console.print(text)
    (out / "ablation.md").write_text(
        f"Command: videoktr ablate --config {args.config} --seeds {args.seeds} --out {args.out}\n\n{text}\n"
    )
    (out / "ablation.json").write_text(json.dumps({"runs": rows, "sft": sft, "paired": paired}, indent=2))
    console.print(f"saved: {out / 'ablation.md'}, {out / 'ablation.json'}, {out / 'ablation.png'}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ablate",
        help="Table-2-style ablation (GRPO, E, V, T, V+T, E+V+T, T-GRPO, TW-GRPO) on the synthetic suite",
    )
    parser.add_argument("--config", required=True, help="ablation YAML (configs/ablations/synthetic.yaml)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (mean +- std)")
    parser.add_argument("--out", default="runs/ablate", help="output directory (reruns skip finished runs)")
    parser.add_argument("--only", nargs="*", help="run only these variant names")
    parser.add_argument(
        "--bootstrap", type=int, default=10000, help="bootstrap replicates of the paired intervals (>= 100)"
    )
    parser.set_defaults(func=run)
