"""Figures and the HTML page of ``videoktr analyze`` (matplotlib on an Agg canvas; static HTML + inline JS).

``analysis.html`` holds every recorded step: a step selector shows one step's completions, a signal selector
highlights one signal's tokens (or all, tokens selected by several signals in the "several" colour); the completions
are ``videoktr.analysis.highlight`` fragments (tooltips give every score). No server, no external file but the PNGs.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from videoktr.analysis.highlight import HIGHLIGHT_CSS, SIGNAL_COLOURS, legend_html, to_html_fragment
from videoktr.analysis.plots import _new_figure, _save

__all__ = ["write_figures", "write_page"]

# Venn layouts of 1, 2, 3 circles of radius 0.8: circle centres, name positions, count position of every region
_VENN = {
    1: ([(0.0, 0.0)], [(0.0, 0.95)], {(0,): (0.0, 0.0)}),
    2: ([(-0.45, 0.0), (0.45, 0.0)], [(-0.7, 0.95), (0.7, 0.95)],
        {(0,): (-0.8, 0.0), (1,): (0.8, 0.0), (0, 1): (0.0, 0.0)}),
    3: (
        [(-0.45, 0.3), (0.45, 0.3), (0.0, -0.45)],
        [(-0.9, 1.25), (0.9, 1.25), (0.0, -1.45)],
        {(0,): (-0.85, 0.55), (1,): (0.85, 0.55), (2,): (0.0, -0.95), (0, 1): (0.0, 0.7),
         (0, 2): (-0.5, -0.3), (1, 2): (0.5, -0.3), (0, 1, 2): (0.0, 0.05)},
    ),
}  # fmt: skip


def _colour(name: str) -> str:
    return SIGNAL_COLOURS.get(name, "#cccccc")


def plot_overlap(regions: dict[str, int], signals: list[str], out_png: Path) -> Path:
    """Venn-style diagram (1-3 signals: circles with the count of every region; more: bars per region)."""
    from matplotlib.patches import Circle

    fig = _new_figure(5.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    if len(signals) not in _VENN:
        names = list(regions)
        ax.barh(names, [regions[n] for n in names])
        ax.set_xlabel("tokens")
    else:
        centres, name_at, labels = _VENN[len(signals)]
        for (x, y), (nx, ny), name in zip(centres, name_at, signals):
            ax.add_patch(Circle((x, y), 0.8, alpha=0.45, color=_colour(name), ec="black"))
            ax.text(nx, ny, name, ha="center", va="center", fontsize=11, weight="bold")
        for idx, (x, y) in labels.items():
            ax.text(x, y, str(regions["+".join(signals[i] for i in idx)]), ha="center", va="center")
        ax.text(-1.7, -1.6, f"selected by none: {regions['none']}", fontsize=9)
        ax.set_xlim(-1.8, 1.8)
        ax.set_ylim(-1.7, 1.45)
        ax.set_aspect("equal")
        ax.axis("off")
    ax.set_title("Tokens per region of the signals' selections")
    return _save(fig, out_png)


def plot_positions(positions: dict[str, dict], out_png: Path) -> Path:
    """Fraction of each signal's selected tokens per relative-position bin (paper B.4), all tokens dashed."""
    fig = _new_figure(6.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for name, part in positions.items():
        if not part["fractions"]:
            continue
        bins = len(part["counts"])
        xs = [(k + 0.5) / bins for k in range(bins)]
        style = {"linestyle": "--", "color": "grey"} if name == "all" else {"marker": "o"}
        ax.plot(xs, part["fractions"], label=name, **style)
    ax.set_xlabel("relative position in the completion (t / T)")
    ax.set_ylabel("fraction of the selected tokens")
    ax.legend()
    ax.set_title("Where the updated tokens are")
    return _save(fig, out_png)


def plot_word_classes(shares: dict[str, dict], title: str, out_png: Path, top: int = 10) -> Path:
    """Grouped bars: share of each word class among each signal's selected tokens (and among all tokens)."""
    names = [n for n in shares if isinstance(shares[n], dict) and "shares" in shares[n]]
    classes = list(shares["all"]["counts"])[:top]
    fig = _new_figure(max(6.0, 0.9 * len(classes) + 2), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        values = [shares[name]["shares"].get(c, 0.0) for c in classes]
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(classes))]
        colour = {"union": "#7f7f7f", "all": "#d9d9d9"}.get(name) or _colour(name)
        ax.bar(xs, values, width, label=name, color=colour, ec="black", lw=0.3)
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=30, ha="right")
    ax.set_ylabel("share of the selected tokens")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, out_png)


def write_figures(result: dict[str, Any], out: Path) -> dict[str, str]:
    """Every PNG of the analysis into ``out``; returns {figure: file name}."""
    figures = {}
    plot_overlap(result["overlap"], result["signals"], out / "overlap.png")
    figures["overlap"] = "overlap.png"
    plot_positions(result["positions"], out / "positions.png")
    figures["positions"] = "positions.png"
    for name, part in result["word_classes"].items():
        if "all" not in part:
            continue
        file = (
            "word_classes.png"
            if "word_classes" not in figures
            else f"word_classes_{name.replace(':', '_')}.png"
        )
        plot_word_classes(part, f"Word classes of the selected tokens\n{part['labeller']}", out / file)
        figures[f"word_classes/{name}"] = file
        figures.setdefault("word_classes", file)
    return figures


# ------------------------------------------------------------------------------------------------- page
_PAGE_CSS = """
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 1em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ccc; padding: 2px 8px; }
td.n { text-align: right; } img { max-width: 100%; } .controls { position: sticky; top: 0; background: #fff;
  padding: 0.5em 0; border-bottom: 1px solid #ddd; }
"""


def _signal_css(signals: list[str]) -> str:
    rules = []
    for s in signals:
        rules.append(f"#examples.show-{s} .tok:not(.{s}) {{ background: none !important; outline: none; }}")
        rules.append(f"#examples.show-{s} .tok.{s} {{ background: {_colour(s)} !important; }}")
    return "\n".join(rules)


_SCRIPT = """
function vktrShow() {
  var step = document.getElementById('step').value, signal = document.getElementById('signal').value;
  document.querySelectorAll('section.step').forEach(function (s) {
    s.style.display = (step === 'all' || s.dataset.step === step) ? '' : 'none'; });
  var box = document.getElementById('examples');
  box.className = signal === 'all' ? '' : 'show-' + signal;
}
document.getElementById('step').addEventListener('change', vktrShow);
document.getElementById('signal').addEventListener('change', vktrShow);
vktrShow();
"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f'<td class="n">{v:.4g}</td>'
        return f'<td class="n">{v}</td>' if isinstance(v, int) else f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _numbers_html(result: dict[str, Any]) -> str:
    parts = []
    for name, part in result["word_classes"].items():
        if "all" not in part:
            parts.append(
                f"<p>Word classes ({html.escape(name)}): not available; install with "
                f"<code>{html.escape(part['install'])}</code>.</p>"
            )
            continue
        columns = [n for n in part if isinstance(part[n], dict) and "shares" in part[n]]
        classes = list(part["all"]["counts"])
        rows = [[c, *[part[n]["shares"].get(c, 0.0) for n in columns]] for c in classes]
        parts.append(f"<h3>Word classes: {html.escape(part['labeller'])}</h3>")
        if "status" in part:
            status = ", ".join(f"{k} {v}" for k, v in part["status"].items())
            parts.append(f"<p>Completions per labelling status: {html.escape(status)}.</p>")
        parts.append(_table(["class", *[f"{n} (n={part[n]['n']})" for n in columns]], rows))
    parts.append("<h3>Overlap of the signals (tokens per region)</h3>")
    parts.append(_table(["region", "tokens"], [[k, v] for k, v in result["overlap"].items()]))
    parts.append("<h3>Top words per signal</h3>")
    rows = [[name, ", ".join(f"{w} ({c})" for w, c in words)] for name, words in result["top_words"].items()]
    parts.append(_table(["signal", "words (count)"], rows))
    grads = result["gradients"]
    parts.append("<h3>Gradient decomposition (Appendix B.1)</h3>")
    if "batches" in grads:
        keys = [k for k in grads["batches"][0] if k not in ("step",)] if grads["batches"] else []
        rows = [[b["step"], *[b[k] for k in keys]] for b in grads["batches"]]
        parts.append(f"<p>Last {grads['layers']} decoder layers ({grads['n_params']} parameters) of "
                     f"{html.escape(grads['checkpoint'])}.</p>")  # fmt: skip
        parts.append(_table(["step", *keys], rows))
    else:
        parts.append(f"<p>Skipped: {html.escape(grads.get('skipped', ''))}</p>")
    return "\n".join(parts)


def write_page(
    result: dict[str, Any], rows: list[dict], records_list: list, out_html: Path, per_step: int
) -> Path:
    """``analysis.html``: numbers, figures, and ``per_step`` highlighted completions of every step."""
    signals = result["signals"]
    by_step: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        by_step.setdefault(r["step"], []).append(i)
    sections = []
    for step in sorted(by_step):
        frags = []
        for i in by_step[step][:per_step]:
            r = rows[i]
            caption = (f"step {step} · group {r['group_id']} · problem {r.get('problem_id')} · "
                       f"advantage {r['advantage']:+.3f}")  # fmt: skip
            frags.append(to_html_fragment(records_list[i], caption=caption))
        sections.append(f'<section class="step" data-step="{step}" id="step-{step}"><h3>Step {step}</h3>'
                        f"{''.join(frags)}</section>")  # fmt: skip
    step_options = '<option value="all">all</option>' + "".join(
        f'<option value="{s}">{s}</option>' for s in sorted(by_step)
    )
    signal_options = '<option value="all">all signals</option>' + "".join(
        f'<option value="{html.escape(s)}">{html.escape(s)}</option>' for s in signals
    )
    figures = "".join(
        f'<img src="{html.escape(f)}" alt="{html.escape(k)}">' for k, f in result["figures"].items()
        if "/" not in k or f != result["figures"].get("word_classes")
    )  # fmt: skip
    first = min(by_step) if by_step else "all"
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>videoktr analyze: {html.escape(result["run_dir"])}</title>
<style>{HIGHLIGHT_CSS}{_PAGE_CSS}{_signal_css(signals)}</style></head><body>
<h1>Selected tokens of {html.escape(result["run_dir"])}</h1>
<p>{result["n_completions"]} scored completions, {result["n_tokens"]} tokens, {len(by_step)} steps; signals:
{html.escape(", ".join(signals))}. Numbers: <code>analysis.json</code>.</p>
{figures}
{_numbers_html(result)}
<h2>Completions</h2>
<div class="controls">Step <select id="step">{step_options}</select>
 Signal <select id="signal">{signal_options}</select> {legend_html(signals)}</div>
<div id="examples">{"".join(sections)}</div>
<script>document.getElementById('step').value = {json.dumps(str(first))};{_SCRIPT}</script>
</body></html>
"""
    out_html.write_text(page)
    return out_html
