"""Write an experiment report as ``report.md`` and ``report.html`` (same content) in one directory.

The report has a results table (nested dicts flattened to "a/b/c" metric names), the plots (PNG files copied next
to the reports when they live elsewhere, linked by file name) and highlighted examples. ``report.html`` needs no
file other than those PNGs.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from videoktr.analysis.highlight import HIGHLIGHT_CSS, escape_markdown
from videoktr.errors import UserError

__all__ = ["flatten_dict", "format_value", "markdown_table", "html_table", "write_report"]

_REPORT_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } img { max-width: 100%; }
pre.vktr-md { white-space: pre-wrap; background: #f6f6f6; padding: 0.6em; }
"""


def flatten_dict(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1, "c": {"d": 2}}} -> {"a/b": 1, "a/c/d": 2} (insertion order kept; empty dicts dropped)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten_dict(value, name))
        else:
            out[name] = value
    return out


def format_value(value: Any) -> str:
    """Table text of a value: floats with 4 significant digits, None as "n/a", (word, count) lists as "w (c), ..."."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple) and all(isinstance(v, list | tuple) and len(v) == 2 for v in value):
        return ", ".join(f"{w} ({format_value(c)})" for w, c in value)
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def _md_cell(text: str) -> str:
    return escape_markdown(text, at_line_start=False).replace("\\\n", "<br>").replace("\n", "<br>")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """GitHub-flavoured Markdown table; cells go through ``format_value`` and are escaped (``|`` included)."""
    lines = ["| " + " | ".join(_md_cell(str(h)) for h in headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"table row {list(row)!r} has {len(row)} cells for {len(headers)} headers")
        lines.append("| " + " | ".join(_md_cell(format_value(v)) for v in row) + " |")
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """HTML ``<table>`` with the same cells as ``markdown_table`` (numbers right-aligned)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for v in row:
            num = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(f"<td{' class=num' if num else ''}>{html.escape(format_value(v))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _place_plots(out_dir: Path, plots: Mapping[str, str | Path]) -> dict[str, str]:
    """Copy each PNG into ``out_dir`` unless it is already there; returns name -> path relative to out_dir."""
    placed: dict[str, str] = {}
    for name, path in plots.items():
        src = Path(path)
        if not src.is_file():
            raise UserError(f"plot '{name}': file {src} does not exist; write the PNG before the report")
        if src.resolve().is_relative_to(out_dir.resolve()):
            placed[name] = src.resolve().relative_to(out_dir.resolve()).as_posix()
            continue
        dst = out_dir / src.name
        if dst.exists() and dst.read_bytes() != src.read_bytes():
            raise UserError(
                f"plot '{name}': {dst} already exists with other content; give the PNG another name"
            )
        shutil.copyfile(src, dst)
        placed[name] = src.name
    return placed


def _example_parts(example: str | Mapping[str, str], i: int) -> tuple[str, str]:
    """(markdown, html) of one example; see ``write_report``."""
    if isinstance(example, Mapping):
        if set(example) != {"md", "html"}:
            raise ValueError(f"example {i}: a dict example needs exactly the keys 'md' and 'html'")
        return example["md"], example["html"]
    if example.lstrip().startswith("<"):
        return example, example
    return example, f'<pre class="vktr-md">{html.escape(example)}</pre>'


def _markdown(title: str, rows: list[tuple[str, Any]], plots: dict[str, str], examples: list[str]) -> str:
    parts = [f"# {escape_markdown(title)}", "## Results", markdown_table(["metric", "value"], rows)]
    if plots:
        parts.append("## Plots")
        for name, rel in plots.items():
            parts += [f"### {escape_markdown(name)}", f"![{escape_markdown(name)}](<{rel}>)"]
    if examples:
        parts += ["## Examples", *examples]
    return "\n\n".join(parts) + "\n"


def _html(title: str, rows: list[tuple[str, Any]], plots: dict[str, str], examples: list[str]) -> str:
    t = html.escape(title)
    parts = [f"<h1>{t}</h1>", "<h2>Results</h2>", html_table(["metric", "value"], rows)]
    if plots:
        parts.append("<h2>Plots</h2>")
        for name, rel in plots.items():
            parts += [
                f"<h3>{html.escape(name)}</h3>",
                f'<img src="{html.escape(rel)}" alt="{html.escape(name)}">',
            ]
    if examples:
        parts += ["<h2>Examples</h2>", *examples]
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{t}</title>'
        f"<style>{_REPORT_CSS}{HIGHLIGHT_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_report(
    out_dir: str | Path,
    results: Mapping[str, Any],
    plots: Mapping[str, str | Path],
    examples_html_or_md: Sequence[str | Mapping[str, str]],
    title: str,
) -> Path:
    """Write ``out_dir/report.md`` and ``out_dir/report.html``; returns the path of ``report.md``.

    results: nested dict of metrics; flattened to one "metric | value" table ("ktr/selected_frac/visual").
    plots: name -> PNG path; PNGs outside ``out_dir`` are copied into it (a different file of the same name there
        is an error), both reports link them by relative path.
    examples_html_or_md: each either {"md": ..., "html": ...} (``highlight.render_example``) used per format, or a
        string: one starting with "<" is an HTML fragment (``highlight.to_html_fragment``) embedded verbatim in both
        reports; any other string is Markdown, verbatim in report.md and shown as escaped text (``<pre>``) in
        report.html (no Markdown renderer is used).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = list(flatten_dict(results).items())
    placed = _place_plots(out, plots)
    parts = [_example_parts(e, i) for i, e in enumerate(examples_html_or_md)]
    md_path = out / "report.md"
    md_path.write_text(_markdown(title, rows, placed, [md for md, _ in parts]), encoding="utf-8")
    (out / "report.html").write_text(_html(title, rows, placed, [h for _, h in parts]), encoding="utf-8")
    return md_path
