"""The summary a person reads first: accuracy before/after RL with intervals, and the attribution table.

Builds :class:`videoktr.analysis.report.Section` tables from evaluation summaries (``videoktr.eval.scoring.summarize``:
``n_scored``, ``n_correct``, ``by_category``, ``category_counts``) and from an attribution table
(``videoktr.analysis.attribution.attribution_table``). Accuracy intervals are 95% Wilson score intervals of a
binomial proportion (one run's questions; they say nothing of the spread over seeds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from videoktr.analysis.report import Section, Table

__all__ = ["wilson_interval", "accuracy_intervals", "accuracy_table", "attribution_rows", "demo_sections"]

_Z95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = _Z95) -> list[float] | None:
    """[low, high] Wilson score interval of ``correct`` / ``n`` (None when n == 0)."""
    if n == 0:
        return None
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [max(0.0, centre - half), min(1.0, centre + half)]


def accuracy_intervals(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{"all" | category: {accuracy, n, correct, ci}} of one evaluation summary (every category it counts)."""
    groups = {"all": (summary["n_correct"], summary["n_scored"])}
    for key, n in summary.get("category_counts", {}).items():
        groups[key] = (round(summary["by_category"][key] * n), n)
    return {
        name: {"accuracy": c / n if n else None, "n": n, "correct": c, "ci": wilson_interval(c, n)}
        for name, (c, n) in groups.items()
    }


def _pct(value: float | None, ci: list[float] | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{100 * value:.1f}%"
    return text if ci is None else f"{text} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _num(value: float | None, ci: list[float] | None = None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.{digits}f}"
    return text if ci is None else f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def accuracy_table(before: Mapping[str, Any], after: Mapping[str, Any]) -> Table:
    """Rows: all questions, then each family, then each question kind; before/after with intervals, change."""
    b, a = accuracy_intervals(before), accuracy_intervals(after)
    families = sorted(k for k in a if k.startswith("family/"))
    rest = sorted(k for k in a if k != "all" and not k.startswith("family/"))
    rows = []
    for key in ["all", *families, *rest]:
        old, new = b.get(key), a[key]
        change = None if old is None or old["accuracy"] is None else new["accuracy"] - old["accuracy"]
        rows.append(
            [
                "all questions" if key == "all" else key.replace("/", ": "),
                new["n"],
                _pct(old["accuracy"], old["ci"]) if old else "n/a",
                _pct(new["accuracy"], new["ci"]),
                "n/a" if change is None else f"{100 * change:+.1f}",
            ]
        )
    headers = ["questions", "n", "before RL (SFT) [95% CI]", "after RL [95% CI]", "change (points)"]
    return Table(headers, rows, "Held-out accuracy, greedy decoding", "summary-accuracy")


def attribution_rows(table: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[list[str]]:
    """One row per (signal, label): AUROC, precision, base rate, lift, each with its bootstrap interval."""
    rows = []
    for signal, by_label in table.items():
        for label, e in by_label.items():
            ci = e.get("ci", {})
            rows.append(
                [
                    signal,
                    label,
                    _num(e["auroc"], ci.get("auroc")),
                    _pct(e["precision"], ci.get("precision")),
                    _pct(e["base_rate"]),
                    _num(e["lift"], ci.get("lift")),
                ]
            )
    return rows


def _lexicon_rows(precision: Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    rows = []
    for key, e in precision.items():
        signal, kind = key.split("/", 1)
        lift = None if e["precision"] is None or not e["base_rate"] else e["precision"] / e["base_rate"]
        rows.append([signal, kind, _pct(e["precision"]), _pct(e["base_rate"]), _num(lift), e["n_selected"]])
    return rows


def demo_sections(results: Mapping[str, Any], before: Mapping[str, Any], after: Mapping[str, Any]):
    """(summary sections, appendix sections) of the demo report from ``results`` and the two eval summaries."""
    steps = results["rl_steps_done"]
    stopped = " (stopped by the time budget)" if results.get("rl_stopped_by_time_budget") else ""
    intro = (
        f"Method {results['method']}: {steps} RL steps{stopped} from the SFT checkpoint. Accuracy on "
        f"{after['n_scored']} held-out questions; intervals are 95% Wilson score intervals over these questions "
        "(not over seeds)."
    )
    summary = [Section("Summary", [intro], [accuracy_table(before, after)])]
    attribution = results.get("attribution") or {}
    coverage = results.get("attribution_labels") or {}
    if attribution:
        n_boot = next(iter(next(iter(attribution.values())).values()))["ci"]["n_boot"]
        note = (
            "Does each signal find the words that the frame order decides (order) and those the colours/objects "
            "decide (content)? Labels are counterfactual (docs/metrics.md), over the RL completions that follow "
            f"the reasoning template: {coverage.get('template', 0)} labelled, {coverage.get('off_template', 0)} "
            f"off the template and {coverage.get('ambiguous', 0)} ambiguous (left out). AUROC of the signal's "
            "score (0.5 = chance); precision of its selected tokens; lift = precision / base rate (1 = chance); "
            f"[95% bootstrap intervals over completions, {n_boot} draws]."
        )
        headers = ["signal", "label", "AUROC", "precision", "base rate", "lift"]
        table = Table(
            headers, attribution_rows(attribution), "Attribution (signal x label)", "summary-attribution"
        )
        summary.append(Section("Which tokens each signal selects", [note], [table]))
    appendix = []
    if results.get("attribution_precision"):
        note = (
            "Secondary view: precision against the word lexicon (every colour word 'visual', every 'first'/'then' "
            "'temporal', whatever decides them), over every recorded completion."
        )
        headers = ["signal", "lexicon kind", "precision", "base rate", "lift", "tokens selected"]
        rows = _lexicon_rows(results["attribution_precision"])
        appendix.append(Section("Lexicon view", [note], [Table(headers, rows, "", "lexicon")]))
    return summary, appendix
