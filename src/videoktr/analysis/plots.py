"""PNG plots of training curves and of bar tables (matplotlib, Agg canvas).

matplotlib is imported inside each function and drawn on an Agg canvas attached to a fresh ``Figure`` (the
object-oriented API), so importing ``videoktr.analysis`` never loads matplotlib, no display is needed, and the
global pyplot backend/state of the caller is left untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from videoktr.errors import UserError

__all__ = ["curve_points", "plot_curves", "plot_bars"]


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def curve_points(log_history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` from a transformers ``Trainer.state.log_history`` (entries without it skipped).

    Raises UserError if no entry has ``key`` (listing the keys that exist) and ValueError if an entry with the key
    has no numeric "step" or a non-numeric value.
    """
    steps, values = [], []
    for i, entry in enumerate(log_history):
        if key not in entry:
            continue
        step, value = entry.get("step"), entry[key]
        if not _is_number(step) or not _is_number(value):
            raise ValueError(
                f"log_history[{i}]: expected numeric 'step' and '{key}', got {step!r}, {value!r}"
            )
        steps.append(float(step))
        values.append(float(value))
    if not steps:
        present = sorted({k for entry in log_history for k in entry})
        raise UserError(
            f"no log_history entry has the key '{key}'; keys present: {', '.join(present) or 'none'}"
        )
    return steps, values


def plot_curves(
    log_history: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    out_png: str | Path,
    title: str,
    ylabel: str = "",
) -> Path:
    """One line per key vs training step, on one axes; writes ``out_png`` and returns its path.

    log_history: list of dicts with "step" and metric keys (``trainer.state.log_history``); entries without a key
    are skipped for that key. NaN values are drawn as gaps.
    """
    if not keys:
        raise ValueError("plot_curves: keys is empty; name at least one metric to plot")
    fig = _new_figure(7.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for key in keys:
        steps, values = curve_points(log_history, key)
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out_png)


def plot_bars(
    table: Mapping[str, float | None],
    out_png: str | Path,
    title: str,
    errors: Mapping[str, float] | None = None,
    ylabel: str = "",
) -> Path:
    """Bar per entry of ``table`` (name -> value), value written above each bar; optional error bars.

    A value of None (e.g. a precision with nothing selected) draws no bar and the label "n/a" instead of a
    made-up number. errors: name -> half-width of the error bar, for every name with a value.
    """
    if not table:
        raise ValueError("plot_bars: table is empty")
    names = list(table)
    for name in names:
        value = table[name]
        if value is not None and not _is_number(value):
            raise ValueError(f"plot_bars: value of '{name}' is {value!r}; expected a number or None")
    missing = [n for n in names if errors is not None and table[n] is not None and n not in errors]
    if missing:
        raise ValueError(f"plot_bars: errors has no entry for {missing}; give one per bar or errors=None")
    fig = _new_figure(max(4.0, 0.9 * len(names) + 1.5), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(names)))
    drawn = [x for x, n in zip(xs, names) if table[n] is not None]
    ax.bar(
        drawn,
        [float(table[names[x]]) for x in drawn],
        yerr=None if errors is None else [float(errors[names[x]]) for x in drawn],
        capsize=4,
        color="#6c9bd2",
    )
    for x, name in zip(xs, names):
        value = table[name]
        label, y = ("n/a", 0.0) if value is None else (f"{value:.3g}", float(value))
        ax.annotate(
            label,
            (x, y),
            ha="center",
            va="bottom",
            fontsize="small",
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_xticks(xs)
    ax.set_xticklabels(
        names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center"
    )
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, out_png)
