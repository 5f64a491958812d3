"""Learning you can see: held-out accuracy during RL beside the training reward, and how noisy the reward curve is.

The demo's RL logs one training reward per step: the mean over that step's rollouts (``rl_prompts`` training
prompts x G completions, sampled at the rollout temperature), accuracy plus format reward in ``reward`` and the
accuracy alone in ``rewards/accuracy/mean``. :class:`videoktr.training.callbacks.HeldOutEval` adds held-out accuracy
points (greedy, and sampled as the rollouts sample) every few steps into ``rl/heldout_eval.jsonl``.
:func:`learning_summary` puts both side by side with their noise:

- ``windows``: the training accuracy averaged over consecutive windows of ``window`` steps, with the standard
  error measured from the spread of the per-step means (sd / sqrt(steps)) and two binomial references: as if the
  window's completions were independent (p(1-p) / (steps x prompts x G)), and as if only its prompts were
  (p(1-p) / (steps x prompts); the G completions of one prompt share its difficulty);
- ``points``: the held-out points, each with its binomial standard error sqrt(p(1-p)/n_items).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "HELDOUT_FILE",
    "attach_heldout_eval",
    "demo_learning",
    "learning_summary",
    "plot_learning",
    "read_points",
]

HELDOUT_FILE = "heldout_eval.jsonl"


def attach_heldout_eval(trainer: Any, cfg: Any, paths: Mapping[str, Path], rl_dir: Path) -> Any:
    """Add a HeldOutEval callback writing ``rl_dir/heldout_eval.jsonl`` to ``trainer`` when ``cfg.rl_eval_every``
    (a ``DemoConfig``) is > 0; returns it (its ``seconds`` are left out of the RL time budget) or None. It runs
    on the first ``cfg.rl_eval_items`` test questions (0: all; the synthetic test split alternates question
    kinds, so a prefix keeps them balanced)."""
    from videoktr.demo import sampling_for
    from videoktr.errors import UserError
    from videoktr.eval.benchmarks import load_benchmark
    from videoktr.training.callbacks import HeldOutEval

    if cfg.rl_eval_every < 0 or cfg.rl_eval_items < 0:
        raise UserError(
            f"rl_eval_every={cfg.rl_eval_every}, rl_eval_items={cfg.rl_eval_items}: use >= 0 (rl_eval_every=0 "
            "turns the held-out evaluations during RL off; rl_eval_items=0 uses the whole test split)"
        )
    if cfg.rl_eval_every == 0:
        return None
    items = load_benchmark("video-r1", paths["test"])
    items = items[: cfg.rl_eval_items] if cfg.rl_eval_items > 0 else items
    callback = HeldOutEval(items, sampling_for(cfg), paths["root"], cfg.template, cfg.rl_eval_every,
                           rl_dir / HELDOUT_FILE, batch_size=cfg.eval_batch_size)  # fmt: skip
    trainer.add_callback(callback)
    return callback


def demo_learning(
    cfg: Any, out: Path, log_history: Sequence[Mapping[str, Any]], key: str
) -> tuple[dict, Path]:
    """(``learning_summary`` of the demo run in ``out`` with "plot": the PNG's file name, the PNG's path)."""
    summary = learning_summary(
        read_points(out / "rl" / HELDOUT_FILE), log_history, key, cfg.rl_prompts, cfg.num_generations
    )
    png = plot_learning(summary, log_history, out / "rl_learning.png")
    summary["plot"] = png.name
    return summary, png


def read_points(path: str | Path) -> list[dict[str, Any]]:
    """The held-out points of ``HeldOutEval`` (empty when the file does not exist), in step order."""
    path = Path(path)
    if not path.is_file():
        return []
    return sorted((json.loads(line) for line in path.read_text().splitlines() if line.strip()),
                  key=lambda p: p["step"])  # fmt: skip


def _binomial_se(p: float, n: int) -> float | None:
    """sqrt(p(1-p)/n); None when it does not apply (no items, or p outside [0, 1]: a reward that is no rate)."""
    return math.sqrt(p * (1 - p) / n) if n > 0 and 0.0 <= p <= 1.0 else None


def reward_windows(
    log_history: Sequence[Mapping[str, Any]], key: str, window: int, prompts: int, generations: int
) -> list[dict[str, Any]]:
    """Consecutive windows of ``window`` logged steps of ``key`` (a per-step mean over prompts x generations).

    Returns [{"first_step", "last_step", "steps", "mean", "se_measured", "se_binomial_completions",
    "se_binomial_prompts"}]; a last partial window is kept; ``se_measured`` is None for a one-step window, the
    binomial ones for a mean outside [0, 1] (e.g. ``reward``, accuracy plus format).
    """
    logged = [(e["step"], float(e[key])) for e in log_history if key in e and "step" in e]
    out = []
    for begin in range(0, len(logged), window):
        chunk = logged[begin : begin + window]
        values = [v for _, v in chunk]
        n, mean = len(values), sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
        out.append(
            {
                "first_step": chunk[0][0],
                "last_step": chunk[-1][0],
                "steps": n,
                "mean": mean,
                "se_measured": None if sd is None else sd / math.sqrt(n),
                "se_binomial_completions": _binomial_se(mean, n * prompts * generations),
                "se_binomial_prompts": _binomial_se(mean, n * prompts),
            }
        )
    return out


def learning_summary(
    points: Sequence[Mapping[str, Any]],
    log_history: Sequence[Mapping[str, Any]],
    key: str,
    prompts: int,
    generations: int,
    window: int = 25,
) -> dict[str, Any]:
    """{"points": held-out points with "greedy_se"/"sampled_se", "windows": :func:`reward_windows` of ``key``,
    "reward_key", "window", "completions_per_step"} (see the module docstring)."""
    shown = [
        {
            **p,
            "greedy_se": _binomial_se(p["greedy"], p["n_items"]),
            "sampled_se": _binomial_se(p["sampled"], p["n_items"]),
        }
        for p in points
    ]
    return {
        "reward_key": key,
        "window": window,
        "completions_per_step": prompts * generations,
        "points": shown,
        "windows": reward_windows(log_history, key, window, prompts, generations),
    }


def plot_learning(
    summary: Mapping[str, Any], log_history: Sequence[Mapping[str, Any]], out_png: str | Path
) -> Path:
    """Training accuracy per step (faint), its window means with +-2 measured SE, and the held-out greedy and
    sampled accuracy with +-2 binomial SE, on one step axis."""
    from videoktr.analysis.plots import _new_figure, _save, curve_points

    fig = _new_figure(8.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    key = summary["reward_key"]
    steps, values = curve_points(log_history, key)
    ax.plot(steps, values, color="tab:gray", alpha=0.35, linewidth=0.8, label=f"training {key} (per step)")
    for w in summary["windows"]:
        se = w["se_measured"] or 0.0
        mid = (w["first_step"] + w["last_step"]) / 2
        half = (w["last_step"] - w["first_step"]) / 2
        ax.errorbar(mid, w["mean"], xerr=half, yerr=2 * se, color="black", capsize=3, fmt="s", markersize=4,
                    label=f"training, {summary['window']}-step mean +-2 SE" if w is summary["windows"][0] else None)  # fmt: skip
    for name, color in (("greedy", "tab:blue"), ("sampled", "tab:red")):
        pts = summary["points"]
        if pts:
            ax.errorbar([p["step"] for p in pts], [p[name] for p in pts], yerr=[2 * (p[f"{name}_se"] or 0) for p in pts],
                        color=color, marker="o", capsize=3,
                        label=f"held-out {name} ({pts[0]['n_items']} questions) +-2 SE")  # fmt: skip
    ax.set_xlabel("RL step")
    ax.set_ylabel("accuracy")
    ax.set_title("Training reward (accuracy column) and held-out accuracy during RL")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return _save(fig, out_png)
