"""``videoktr demo --out DIR``: the whole method on a CPU in minutes, with no download.

Stages (each writes into ``DIR`` and is skipped on rerun when its output exists with the same settings):
1. synthetic videos + Video-R1 records (``data/``), 2. tiny Qwen2.5-VL with a locally trained tokenizer (``model/``),
3. SFT warm start on a small subset, leaving headroom (``sft/``), 4. evaluation of the SFT checkpoint on the held-out
split, 5. RL with the chosen method (default Video-KTR) from the SFT checkpoint (``rl/``), 6. evaluation again,
7. attribution of each signal against the synthetic ground truth (counterfactual word labels: AUROC, precision and
lift with bootstrap intervals; the word lexicon as a second view), plots and ``report.md``/``report.html``.
``results.json`` holds the numbers. Settings: :class:`DemoConfig` (``configs/demo.yaml`` mirrors the defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videoktr.training.callbacks import TimeBudget, quiet_progress  # noqa: F401 (part of this module's API)


@dataclass
class DemoConfig:
    """Settings of the demo run (defaults: the embedded CPU demo, about 10 minutes on 2 cores)."""

    seed: int = field(default=0, metadata={"help": "Seed of data generation, model init, SFT and RL."})
    n_train: int = field(
        default=1536, metadata={"help": "Synthetic training records (RL prompts are drawn here)."}
    )
    n_test: int = field(
        default=1000, metadata={"help": "Held-out synthetic records for evaluation (~1.3-point binomial SE)."}
    )
    frames: int = field(default=8, metadata={"help": "Frames per synthetic video (all are sampled)."})
    height: int = field(default=56, metadata={"help": "Frame height (pixels)."})
    width: int = field(default=112, metadata={"help": "Frame width (pixels)."})
    kinds: list = field(
        default_factory=lambda: ["color", "first_color"],
        metadata={
            "help": "Question kinds (videoktr.data.synthetic.QUESTION_KINDS): one static, one temporal."
        },
    )
    template: str = field(default="short", metadata={"help": "Prompt template (tiny model: 'short')."})
    sft_samples: int = field(
        default=64,
        metadata={"help": "SFT records: few, memorised, so the checkpoint generalises partly (headroom)."},
    )
    sft_steps: int = field(default=600, metadata={"help": "SFT optimiser steps."})
    sft_lr: float = field(default=3e-3, metadata={"help": "SFT learning rate (cosine schedule)."})
    sft_batch_size: int = field(default=16, metadata={"help": "SFT batch size."})
    method: str = field(default="ktr", metadata={"help": "RL method (grpo, ktr, entropy, t_grpo, tw_grpo)."})
    rl_steps: int = field(default=150, metadata={"help": "RL optimiser steps."})
    rl_seconds: float = field(
        default=330.0,
        metadata={"help": "Wall-clock cap on RL (stops early, logged; a resumed run gets it anew)."},
    )
    rl_save_steps: int = field(
        default=25,
        metadata={
            "help": "RL checkpoint every N steps: a killed run resumes from the newest on rerun (0: none)."
        },
    )
    rl_eval_every: int = field(default=25, metadata={"help": "Held-out accuracy every N RL steps (0: off)."})
    rl_eval_items: int = field(default=200, metadata={"help": "Held-out questions used (first N; 0: all)."})
    rl_lr: float = field(default=1e-4, metadata={"help": "RL learning rate."})
    rl_prompts: int = field(default=4, metadata={"help": "Prompts per RL step."})
    num_generations: int = field(default=8, metadata={"help": "Completions per prompt (G)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of RL rollouts."})
    beta: float = field(
        default=0.0, metadata={"help": "KL coefficient (0: no reference model, faster on CPU)."}
    )
    max_completion_length: int = field(default=64, metadata={"help": "Tokens per sampled completion."})
    eval_batch_size: int = field(default=32, metadata={"help": "Evaluation batch size (greedy decoding)."})
    rewards: list = field(
        default_factory=lambda: ["accuracy", "format"],
        metadata={"help": "RL reward functions (names in videoktr.rewards, e.g. tw_soft_mc, tw_format)."},
    )
    trainer_overrides: dict = field(default_factory=dict, metadata={"help": "Extra KTRConfig fields for RL."})


def _stage_done(path: Path, settings: dict) -> bool:
    marker = path / "stage.json"
    return marker.is_file() and json.loads(marker.read_text()) == settings


def _mark_done(path: Path, settings: dict) -> None:
    (path / "stage.json").write_text(json.dumps(settings, indent=2, sort_keys=True))


def sampling_for(cfg: DemoConfig):
    from videoktr.data.video import VideoSamplingConfig

    return VideoSamplingConfig(num_frames=cfg.frames, max_pixels=cfg.height * cfg.width)


def make_data(cfg: DemoConfig, out: Path) -> dict[str, Path]:
    from videoktr.data.synthetic import make_synthetic

    settings = {
        k: getattr(cfg, k) for k in ("seed", "n_train", "n_test", "frames", "height", "width", "kinds")
    }
    data = out / "data"
    paths = {
        "root": data,
        "train": data / "train.json",
        "train_sft": data / "train_sft.json",
        "test": data / "test.json",
    }
    if _stage_done(data, settings):
        return paths
    made = make_synthetic(
        data,
        cfg.n_train,
        cfg.n_test,
        cfg.seed,
        num_frames=cfg.frames,
        height=cfg.height,
        width=cfg.width,
        kinds=cfg.kinds,
    )
    _mark_done(data, settings)
    return {k: made[k] for k in paths}


def make_model(cfg: DemoConfig, out: Path, paths: dict[str, Path]) -> Path:
    from videoktr.data.schema import load_records
    from videoktr.data.synthetic import synthetic_corpus
    from videoktr.models.tiny import TinyModelConfig, build_tiny_model

    settings = {"seed": cfg.seed, "template": cfg.template, "data": str(paths["train_sft"])}
    path = out / "model"
    if _stage_done(path, settings):
        return path
    records = load_records(paths["train_sft"]) + load_records(paths["test"])
    build_tiny_model(
        path, corpus=synthetic_corpus(records, cfg.template), config=TinyModelConfig(seed=cfg.seed)
    )
    _mark_done(path, settings)
    return path


def run_sft_stage(cfg: DemoConfig, out: Path, paths: dict[str, Path], model_dir: Path) -> tuple[Path, list]:
    from transformers import TrainingArguments

    from videoktr.data.schema import load_records
    from videoktr.models.tiny import load_model_and_processor
    from videoktr.training.sft import SFTOptions, run_sft

    keys = ("seed", "sft_samples", "sft_steps", "sft_lr", "sft_batch_size", "template")
    settings = {k: getattr(cfg, k) for k in keys}
    path = out / "sft"
    if _stage_done(path, settings):
        return path, json.loads((path / "log_history.json").read_text())
    model, processor = load_model_and_processor(model_dir)
    records = load_records(paths["train_sft"])[: cfg.sft_samples]
    args = TrainingArguments(
        output_dir=str(path),
        max_steps=cfg.sft_steps,
        learning_rate=cfg.sft_lr,
        per_device_train_batch_size=cfg.sft_batch_size,
        lr_scheduler_type="cosine",
        warmup_steps=5,
        logging_steps=10,
        save_strategy="steps" if cfg.rl_save_steps > 0 else "no",
        save_steps=max(cfg.rl_save_steps, 1),
        save_total_limit=2,  # the newest two: one is complete even when the run is killed while saving
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=cfg.seed,
        disable_tqdm=False,
    )
    trainer = run_sft(
        model,
        processor,
        records,
        paths["root"],
        sampling_for(cfg),
        args,
        SFTOptions(cfg.template),
        before_train=lambda t: quiet_progress(t, "SFT"),
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    (path / "log_history.json").write_text(json.dumps(trainer.state.log_history))
    _mark_done(path, settings)
    return path, trainer.state.log_history


def evaluate_dir(
    cfg: DemoConfig, model_dir: Path, paths: dict[str, Path], predictions: Path
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on the test split into ``predictions`` (resumed when it is the same run; a file of
    another run, e.g. of the model before this rerun's RL, is replaced: the demo owns it)."""
    from videoktr.errors import UserError
    from videoktr.eval.benchmarks import load_benchmark
    from videoktr.eval.identity import RunIdentity, eval_run_settings, open_predictions
    from videoktr.eval.runner import GenerationSettings, evaluate
    from videoktr.models.tiny import load_model_and_processor

    generation = GenerationSettings(max_new_tokens=cfg.max_completion_length, temperature=0.0)
    identity = RunIdentity(
        *eval_run_settings(
            model_dir=model_dir, bench="video-r1", data=paths["test"], sampling=sampling_for(cfg),
            generation=generation, template=cfg.template, backend="hf", scorer=_scorer(cfg),
        )
    )  # fmt: skip
    try:
        open_predictions(predictions, identity)
    except UserError:
        predictions.unlink()
    model, processor = load_model_and_processor(model_dir)
    model.eval()
    items = load_benchmark("video-r1", paths["test"])
    _, summary = evaluate(
        model,
        processor,
        items,
        sampling_for(cfg),
        video_root=paths["root"],
        generation=generation,
        predictions_path=predictions,
        batch_size=cfg.eval_batch_size,
        template=cfg.template,
        identity=identity,
        scorer=_scorer(cfg),
    )
    return summary


def _scorer(cfg: DemoConfig) -> str:
    """The evaluation scorer: TW-GRPO's (strict + partial credit) for a multi-answer template, else the default."""
    from videoktr.data.prompts import PROMPT_TEMPLATES
    from videoktr.eval.scorers import DEFAULT_SCORER

    return "tw-grpo" if PROMPT_TEMPLATES.get(cfg.template).multi_answer else DEFAULT_SCORER


def rl_recipe(cfg: DemoConfig, out: Path, paths: dict[str, Path], sft_dir: Path):
    from videoktr.training.recipe import Recipe

    trainer = dict(
        method=cfg.method,
        output_dir=str(out / "rl"),
        seed=cfg.seed,
        learning_rate=cfg.rl_lr,
        max_steps=cfg.rl_steps,
        num_generations=cfg.num_generations,
        per_device_train_batch_size=cfg.rl_prompts * cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
        video_frames=cfg.frames,
        video_max_pixels=cfg.height * cfg.width,
        prompt_template=cfg.template,
        logging_steps=1,
        save_strategy="steps" if cfg.rl_save_steps > 0 else "no",
        save_steps=max(cfg.rl_save_steps, 1),
        save_total_limit=2,  # the newest two: one is complete even when the run is killed while saving
        report_to="none",
        use_cpu=True,
        bf16=False,
        length_bonus=False,  # completions here are ~40 tokens; the 320..512-token bonus could never apply
        log_selected_examples=-1,  # every row's selection -> rl/selection.jsonl (read by the attribution table)
        lr_scheduler_type="constant",
        gradient_checkpointing=False,  # TRL defaults to True; recomputation only costs time on a tiny model
        disable_tqdm=False,
    )
    trainer.update(cfg.trainer_overrides)
    data = {"train": str(paths["train"]), "root": str(paths["root"])}
    return Recipe(model=str(sft_dir), data=data, rewards=list(cfg.rewards), trainer=trainer)


def run_rl_stage(cfg: DemoConfig, out: Path, paths: dict[str, Path], sft_dir: Path):
    """RL from ``sft_dir`` into ``out/rl``; returns (trainer, stopped by the time budget). A rerun with the same
    settings (recipe and SFT weights) skips a finished run (returning its saved state) and resumes a killed one from
    its newest complete checkpoint (every ``rl_save_steps``); other settings start over."""
    from videoktr.eval.identity import model_fingerprint
    from videoktr.training.checkpoint import finish_run_dir, finished_run, prepare_run_dir
    from videoktr.training.recipe import build_trainer, save_run_files

    recipe = rl_recipe(cfg, out, paths, sft_dir)
    rl_dir = out / "rl"
    settings = {"recipe": dataclasses.asdict(recipe), "sft": model_fingerprint(sft_dir)}
    if cfg.rl_eval_every > 0:  # the held-out points are part of the stage's outputs
        settings["heldout_eval"] = [cfg.rl_eval_every, cfg.rl_eval_items]
    done, resume = prepare_run_dir(rl_dir, settings)
    if done is not None:
        return finished_run(rl_dir, done), done["stopped_early"]
    save_run_files(recipe, rl_dir)
    trainer = build_trainer(recipe)
    from videoktr.analysis.learning import attach_heldout_eval

    budget = TimeBudget(cfg.rl_seconds, excluded=attach_heldout_eval(trainer, cfg, paths, rl_dir))
    trainer.add_callback(budget)
    quiet_progress(trainer, f"RL ({cfg.method})")
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(rl_dir))
    trainer.processing_class.save_pretrained(str(rl_dir))
    (rl_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history))
    finish_run_dir(
        rl_dir, settings, global_step=trainer.state.global_step, stopped_early=budget.stopped_early
    )
    return trainer, budget.stopped_early


def attribution(trainer, kinds: list[str], records_limit: int = 4000) -> tuple[dict[str, Any], list]:
    """``videoktr.analysis.attribution.selection_attribution`` of the RL run's ``selection.jsonl``."""
    from videoktr.analysis.attribution import selection_attribution
    from videoktr.training.selection import SELECTION_FILE

    path = Path(trainer.args.output_dir) / SELECTION_FILE
    return selection_attribution(path, trainer.processing_class.tokenizer, kinds, records_limit)


def moving_average(log_history: list[dict], keys: list[str], window: int) -> list[dict]:
    """Log entries with each key replaced by its mean over the last ``window`` logged values (a readable curve)."""
    out, seen = [], {k: [] for k in keys}
    for entry in log_history:
        row = {"step": entry.get("step")}
        for key in keys:
            if key in entry:
                seen[key].append(entry[key])
                row[key] = sum(seen[key][-window:]) / len(seen[key][-window:])
        if len(row) > 1:
            out.append(row)
    return out


def examples(records_list: list, n: int = 4) -> list[dict[str, str]]:
    from videoktr.analysis.highlight import render_example

    picked = records_list[-n:]
    return [render_example(r, caption=f"RL completion {i + 1}") for i, r in enumerate(picked)]


def run_demo(cfg: DemoConfig, out: Path, console=None) -> dict[str, Any]:
    from rich.console import Console

    from videoktr.analysis.plots import plot_bars, plot_curves
    from videoktr.analysis.report import write_report
    from videoktr.analysis.summary import accuracy_intervals, demo_sections

    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    start = time.time()
    timings = {}

    def stage(name):
        console.rule(f"[bold]{name}")
        timings[name] = time.time()

    stage("1/6 synthetic data")
    paths = make_data(cfg, out)
    stage("2/6 tiny Qwen2.5-VL + tokenizer")
    model_dir = make_model(cfg, out, paths)
    stage("3/6 SFT warm start")
    sft_dir, sft_log = run_sft_stage(cfg, out, paths, model_dir)
    stage("4/6 evaluate SFT checkpoint")
    before = evaluate_dir(cfg, sft_dir, paths, out / "predictions_before_rl.jsonl")
    console.print(f"accuracy before RL: {before['accuracy']:.3f}")
    stage(f"5/6 RL ({cfg.method})")
    trainer, stopped_early = run_rl_stage(cfg, out, paths, sft_dir)
    stage("6/6 evaluate RL checkpoint")
    after = evaluate_dir(cfg, out / "rl", paths, out / "predictions_after_rl.jsonl")
    console.print(f"accuracy after RL: {after['accuracy']:.3f}")
    attr, records_list = attribution(trainer, list(cfg.kinds))
    results = {
        "method": cfg.method,
        "accuracy_before_rl": before["accuracy"],
        "accuracy_after_rl": after["accuracy"],
        "accuracy_by_category_before_rl": before["by_category"],
        "accuracy_by_category_after_rl": after["by_category"],
        "attribution_precision": attr.get("precision", {}),
        "attribution": attr.get("table", {}),
        "attribution_labels": attr.get("labels", {}),
        "accuracy_intervals": {
            "before_rl": accuracy_intervals(before),
            "after_rl": accuracy_intervals(after),
        },
        "rl_steps_done": trainer.state.global_step,
        "rl_stopped_by_time_budget": stopped_early,
        "seconds": round(time.time() - start, 1),
    }
    first_reward = f"rewards/{cfg.rewards[0]}/mean"  # "accuracy" by default; tw_soft_mc etc. for TW-GRPO
    history = trainer.state.log_history
    smoothed = moving_average(history, ["reward", first_reward], window=10)
    plots = {
        "rl_reward": plot_curves(
            smoothed,
            ["reward", first_reward],
            out / "rl_reward.png",
            "RL reward (10-step moving mean)",
        ),
        "accuracy": plot_bars(
            {"SFT (before RL)": before["accuracy"], f"after RL ({cfg.method})": after["accuracy"]},
            out / "accuracy.png",
            "Held-out accuracy",
        ),
    }
    if cfg.rl_eval_every > 0:  # held-out points beside the training reward: results["learning"], its plot
        from videoktr.analysis.learning import demo_learning

        results["learning"], plots["learning"] = demo_learning(cfg, out, history, first_reward)
    if any("loss" in entry for entry in sft_log):
        plots["sft_loss"] = plot_curves(sft_log, ["loss"], out / "sft_loss.png", "SFT loss")
    keys = [  # absent when every group of the run had zero advantages (all attribution skipped)
        k
        for k in ("ktr/selected_frac/union", "ktr/selected_frac/visual", "ktr/selected_frac/temporal")
        if any(k in entry for entry in history)
    ]
    if cfg.method == "ktr" and keys:
        plots["selection"] = plot_curves(
            trainer.state.log_history, keys, out / "selection.png", "Selected fraction"
        )
    (out / "results.json").write_text(json.dumps(results, indent=2))
    summary, appendix = demo_sections(results, before, after)
    title = f"videoktr demo ({cfg.method})"
    write_report(out, summary, plots, examples(records_list), title, appendix=appendix)
    console.print_json(
        json.dumps({k: results[k] for k in ("accuracy_before_rl", "accuracy_after_rl", "seconds")})
    )
    console.print(f"report: {out / 'report.md'}")
    return results


def load_demo_config(path: str | None, overrides: list[str]) -> DemoConfig:
    from videoktr.errors import UserError
    from videoktr.training.recipe import check_field_types, parse_value, read_yaml

    raw = (read_yaml(path) or {}) if path else {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of DemoConfig fields, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(DemoConfig)}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (e.g. rl_steps=20)")
        key, value = item.split("=", 1)
        try:
            raw[key] = parse_value(value)
        except UserError as err:
            raise UserError(f"override {item!r}: {err}") from None
    unknown = sorted(set(raw) - names)
    if unknown:
        raise UserError(f"unknown demo settings {unknown}; valid: {', '.join(sorted(names))}")
    check_field_types(DemoConfig, raw, "demo setting ")
    return DemoConfig(**raw)


def quiet_libraries() -> None:
    """Keep the demo's console to its own progress: no per-checkpoint load bars or deprecation notices of the
    libraries (TRL 1.16 still calls transformers' deprecated gradient-checkpointing names)."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")


def run(args: argparse.Namespace) -> int:
    quiet_libraries()
    cfg = load_demo_config(args.config, args.overrides)
    run_demo(cfg, Path(args.out))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="synthetic videos + tiny model: SFT -> RL (Video-KTR) -> evaluation, with a report",
        description="Run the CPU demo end to end. Settings: --config YAML and/or key=value overrides "
        "(fields of videoktr.demo.DemoConfig, e.g. method=grpo rl_steps=20).",
    )
    parser.add_argument("--out", required=True, help="output directory (rerun skips finished stages)")
    parser.add_argument("--config", help="YAML of DemoConfig fields (configs/demo.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value DemoConfig overrides")
    parser.set_defaults(func=run)
