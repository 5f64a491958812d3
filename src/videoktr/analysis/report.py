"""Write an experiment report as ``report.md`` and ``report.html`` (same content) in one directory.

The report opens with its summary sections (a heading, a few paragraphs, small tables: :class:`Section`), then the
plots (PNG files copied next to the reports when they live elsewhere, linked by file name), then highlighted
examples, then any appendix sections. ``report.html`` needs no file other than those PNGs.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videoktr.analysis.highlight import HIGHLIGHT_CSS, escape_markdown
from videoktr.errors import UserError

__all__ = ["Section", "Table", "format_value", "markdown_table", "html_table", "write_report"]

_REPORT_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } img { max-width: 100%; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
pre.vktr-md { white-space: pre-wrap; background: #f6f6f6; padding: 0.6em; }
"""


@dataclass
class Table:
    """A small table: ``headers`` (C,), ``rows`` (R, C) of cells (``format_value``); ``caption`` shown above it;
    ``id`` names the HTML ``<table>`` (for links and tests)."""

    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""
    id: str = ""


@dataclass
class Section:
    """A report section: ``heading``, plain-text ``paragraphs`` (escaped in both formats), then ``tables``."""

    heading: str
    paragraphs: Sequence[str] = field(default_factory=list)
    tables: Sequence[Table] = field(default_factory=list)


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


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "", id: str = "") -> str:
    """HTML ``<table>`` with the same cells as ``markdown_table`` (numbers right-aligned), optional caption/id."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for v in row:
            num = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(f"<td{' class=num' if num else ''}>{html.escape(format_value(v))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    ident = f' id="{html.escape(id)}"' if id else ""
    return f"<table{ident}>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


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


def _md_section(section: Section) -> list[str]:
    parts = [f"## {escape_markdown(section.heading)}", *(escape_markdown(p) for p in section.paragraphs)]
    for table in section.tables:
        if table.caption:
            parts.append(f"**{escape_markdown(table.caption)}**")
        parts.append(markdown_table(table.headers, table.rows))
    return parts


def _html_section(section: Section) -> list[str]:
    parts = [
        f"<h2>{html.escape(section.heading)}</h2>",
        *(f"<p>{html.escape(p)}</p>" for p in section.paragraphs),
    ]
    parts += [html_table(t.headers, t.rows, t.caption, t.id) for t in section.tables]
    return parts


def _markdown(title, sections, plots, examples, appendix) -> str:
    parts = [f"# {escape_markdown(title)}"]
    for section in sections:
        parts += _md_section(section)
    if plots:
        parts.append("## Plots")
        for name, rel in plots.items():
            parts += [f"### {escape_markdown(name)}", f"![{escape_markdown(name)}](<{rel}>)"]
    if examples:
        parts += ["## Examples", *examples]
    for section in appendix:
        parts += _md_section(section)
    return "\n\n".join(parts) + "\n"


def _html(title, sections, plots, examples, appendix) -> str:
    t = html.escape(title)
    parts = [f"<h1>{t}</h1>"]
    for section in sections:
        parts += _html_section(section)
    if plots:
        parts.append("<h2>Plots</h2>")
        for name, rel in plots.items():
            parts += [
                f"<h3>{html.escape(name)}</h3>",
                f'<img src="{html.escape(rel)}" alt="{html.escape(name)}">',
            ]
    if examples:
        parts += ["<h2>Examples</h2>", *examples]
    for section in appendix:
        parts += _html_section(section)
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{t}</title>'
        f"<style>{_REPORT_CSS}{HIGHLIGHT_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_report(
    out_dir: str | Path,
    sections: Sequence[Section],
    plots: Mapping[str, str | Path],
    examples_html_or_md: Sequence[str | Mapping[str, str]],
    title: str,
    appendix: Sequence[Section] = (),
) -> Path:
    """Write ``out_dir/report.md`` and ``out_dir/report.html``; returns the path of ``report.md``.

    Order: ``title``, ``sections`` (the summary), plots, examples, ``appendix`` (details).
    plots: name -> PNG path; PNGs outside ``out_dir`` are copied into it (a different file of the same name there
        is an error), both reports link them by relative path.
    examples_html_or_md: each either {"md": ..., "html": ...} (``highlight.render_example``) used per format, or a
        string: one starting with "<" is an HTML fragment (``highlight.to_html_fragment``) embedded verbatim in both
        reports; any other string is Markdown, verbatim in report.md and shown as escaped text (``<pre>``) in
        report.html (no Markdown renderer is used).
    """
    for section in [*sections, *appendix]:
        if not isinstance(section, Section):
            raise TypeError(f"report sections must be Section objects, got {type(section).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    placed = _place_plots(out, plots)
    parts = [_example_parts(e, i) for i, e in enumerate(examples_html_or_md)]
    md = _markdown(title, sections, placed, [m for m, _ in parts], appendix)
    md_path = out / "report.md"
    md_path.write_text(md, encoding="utf-8")
    page = _html(title, sections, placed, [h for _, h in parts], appendix)
    (out / "report.html").write_text(page, encoding="utf-8")
    return md_path
