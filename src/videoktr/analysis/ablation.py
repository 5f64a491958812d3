"""Paired comparison of ablation variants on the same held-out questions: means, intervals, differences, a plot.

Every run of ``videoktr ablate`` starts from one SFT checkpoint, trains with the RL seed of its seed index (so two
variants with the same seed see the same prompts in the same order) and is evaluated greedily on one held-out
split. Its ``predictions.jsonl`` gives one outcome per question (1/0 correct). For a variant with S seeds these form
an (S, N) array in a fixed question order; :func:`videoktr.analysis.stats.paired_bootstrap` turns them into

- the variant's accuracy: mean over seeds and questions, 95% bootstrap interval over questions;
- its difference to the reference variant (``Vanilla GRPO``: the first variant whose method is ``grpo``), paired
  by seed and question: mean, 95% interval resampling questions (seeds fixed) and resampling questions and seeds.

Families (``static``/``temporal``: the ``family`` category of the synthetic questions) get the same numbers on
their questions. Only seeds present for both a variant and the reference enter its difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from videoktr.analysis.stats import paired_bootstrap
from videoktr.errors import UserError

__all__ = ["question_outcomes", "paired_summary", "paired_table", "plot_paired"]

Outcomes = dict[str, tuple[float, str | None]]


def question_outcomes(predictions: str | Path) -> Outcomes:
    """{question id: (1.0 correct / 0.0 not, family or None)} of a predictions file (errors count as wrong)."""
    from videoktr.eval.scoring import read_predictions

    rows = read_predictions(predictions)
    return {
        qid: (float(bool(row.get("correct"))), (row.get("categories") or {}).get("family"))
        for qid, row in rows.items()
    }


def _matrix(runs: Sequence[Outcomes], ids: Sequence[str]) -> list[list[float]]:
    return [[run[qid][0] for qid in ids] for run in runs]


def _interval(stats: Mapping[str, Any]) -> dict[str, float]:
    return {k: 100 * stats[k] for k in ("mean", "low", "high", "half_width")}


def paired_summary(
    outcomes: Mapping[str, Mapping[int, Outcomes]],
    sft: Outcomes,
    reference: str,
    n_boot: int = 10000,
) -> dict[str, Any]:
    """outcomes: {variant: {seed: Outcomes}} (variants in table order); sft: the SFT checkpoint's outcomes.

    Returns {"reference", "n_questions", "families", "n_boot", "sft": {scope: interval}, "variants": {name:
    {"seeds", "accuracy": {scope: interval}, "diff": {scope: interval} | None, "diff_seeds": ...}}} where scope is
    "overall" or a family, an interval is {mean, low, high, half_width} in points (95%), "diff" resamples questions
    with the seeds fixed and "diff_seeds" resamples seeds too. The questions are those every run answered.
    """
    runs = [run for by_seed in outcomes.values() for run in by_seed.values()]
    common = set(sft).intersection(*[set(run) for run in runs])
    if not common:
        raise UserError(
            "ablation: the runs' predictions share no question id; were they made on one test split?"
        )
    ids = sorted(common)
    families = sorted({sft[q][1] for q in ids if sft[q][1] is not None})
    scopes = {"overall": ids, **{f: [q for q in ids if sft[q][1] == f] for f in families}}
    ref = outcomes.get(reference, {})
    out: dict[str, Any] = {
        "reference": reference,
        "n_questions": len(ids),
        "families": families,
        "n_boot": n_boot,
    }
    out["sft"] = {s: _interval(paired_bootstrap(_matrix([sft], q), n_boot=n_boot)) for s, q in scopes.items()}
    out["variants"] = {}
    for name, by_seed in outcomes.items():
        seeds = sorted(by_seed)
        entry: dict[str, Any] = {"seeds": seeds, "accuracy": {}, "diff": None, "diff_seeds": None}
        for scope, q in scopes.items():
            entry["accuracy"][scope] = _interval(
                paired_bootstrap(_matrix([by_seed[s] for s in seeds], q), n_boot=n_boot)
            )
        paired = [s for s in seeds if s in ref]
        if name != reference and paired:
            entry["paired_seeds"] = paired
            for key, resample in (("diff", False), ("diff_seeds", True)):
                entry[key] = {
                    scope: _interval(
                        paired_bootstrap(
                            _matrix([by_seed[s] for s in paired], q),
                            _matrix([ref[s] for s in paired], q),
                            n_boot=n_boot,
                            resample_seeds=resample,
                        )
                    )
                    for scope, q in scopes.items()
                }
        out["variants"][name] = entry
    return out


def _fmt(iv: Mapping[str, float] | None, signed: bool = False) -> str:
    if iv is None:
        return "-"
    f = "{:+.1f}" if signed else "{:.1f}"
    return f"{f.format(iv['mean'])} [{f.format(iv['low'])}, {f.format(iv['high'])}]"


def paired_table(summary: Mapping[str, Any]) -> str:
    """Markdown: accuracy [95% CI over questions] per scope, then the paired difference to the reference (overall
    and per family, seeds fixed) and overall with seeds resampled; points."""
    scopes = ["overall", *summary["families"]]
    ref = summary["reference"]
    head = [
        "variant",
        "seeds",
        *scopes,
        *[f"diff {s} vs {ref}" for s in scopes],
        "diff overall, seeds resampled",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    sft = [
        "SFT checkpoint (no RL)",
        "-",
        *[_fmt(summary["sft"][s]) for s in scopes],
        *["-"] * (len(scopes) + 1),
    ]
    lines.append("| " + " | ".join(sft) + " |")
    for name, v in summary["variants"].items():
        diffs = [_fmt(v["diff"][s] if v["diff"] else None, True) for s in scopes]
        seeds_col = _fmt(v["diff_seeds"]["overall"] if v["diff_seeds"] else None, True)
        cells = [name, str(len(v["seeds"])), *[_fmt(v["accuracy"][s]) for s in scopes], *diffs, seeds_col]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_paired(summary: Mapping[str, Any], out_png: str | Path) -> Path:
    """Two panels: held-out accuracy per variant (SFT first) and the paired difference to the reference, each
    with its 95% interval (overall; the differences also with seeds resampled, thinner)."""
    from videoktr.analysis.plots import _new_figure, _save

    names = list(summary["variants"])
    fig = _new_figure(12, max(3.0, 0.45 * len(names) + 1.8))
    left, right = fig.subplots(1, 2, sharey=True)
    labels = ["SFT checkpoint", *names]
    accs = [summary["sft"]["overall"], *[summary["variants"][n]["accuracy"]["overall"] for n in names]]
    ys = list(range(len(labels)))[::-1]
    for y, iv in zip(ys, accs):
        left.errorbar(iv["mean"], y, xerr=[[iv["mean"] - iv["low"]], [iv["high"] - iv["mean"]]], fmt="o",
                      color="tab:blue", capsize=3)  # fmt: skip
    left.set_yticks(ys, labels)
    left.set_xlabel("held-out accuracy (%), 95% CI over questions")
    for y, name in zip(ys[1:], names):
        v = summary["variants"][name]
        for key, color, width, dy in (("diff_seeds", "tab:gray", 1, -0.15), ("diff", "tab:red", 2, 0.0)):
            if v[key]:
                iv = v[key]["overall"]
                right.errorbar(iv["mean"], y + dy, xerr=[[iv["mean"] - iv["low"]], [iv["high"] - iv["mean"]]],
                               fmt="o", color=color, elinewidth=width, capsize=3)  # fmt: skip
    right.axvline(0.0, color="black", linewidth=0.8)
    right.set_xlabel(f"minus {summary['reference']} (points)\nred: seeds fixed, gray: seeds resampled")
    fig.suptitle(f"Ablation, {summary['n_questions']} held-out questions, paired by seed and question")
    return _save(fig, out_png)
