"""Render one completion with its selected (key) tokens highlighted: Markdown, HTML, or rich Text.

Input is the ``list[TokenRecord]`` of one completion (``videoktr.analysis.tokens.token_records``). A token selected
by exactly one signal gets that signal's style; a token selected by two or more gets the "several" style (in HTML
its classes still name every signal, and its tooltip shows every score).

Markdown uses inline HTML tags rather than ``**``/``_`` markers, because CommonMark emphasis does not close
around punctuation followed by a letter (``**<think>**The`` stays literal), which is the common case for
``<think>``-style tokens: visual = ``<b>``, temporal = ``<i>``, entropy = ``<code>``. Text is backslash-escaped, so a
``<think>`` piece shows as text, never as a tag.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from videoktr.analysis.tokens import TokenRecord, record_signals

__all__ = [
    "SIGNAL_COLOURS",
    "SEVERAL_COLOUR",
    "MD_TAGS",
    "HIGHLIGHT_CSS",
    "escape_markdown",
    "to_markdown",
    "to_html_fragment",
    "to_html",
    "legend_html",
    "to_rich",
    "rich_legend",
    "render_example",
]

SIGNAL_COLOURS: dict[str, str] = {"visual": "#b7e4c7", "temporal": "#bde0fe", "entropy": "#ffe8a3"}
SEVERAL_COLOUR = "#e4c1f9"
MD_TAGS: dict[str, str] = {"visual": "b", "temporal": "i", "entropy": "code"}

HIGHLIGHT_CSS = """
.vktr-example { margin: 1em 0; }
.vktr-caption { font-weight: bold; margin: 0.2em 0; }
.vktr-text { white-space: pre-wrap; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em;
  line-height: 1.6; border: 1px solid #ddd; padding: 0.6em; border-radius: 4px; }
.vktr-text .tok.several { outline: 1px solid #9b59b6; }
.vktr-legend span { padding: 0 0.4em; margin-right: 0.5em; border-radius: 3px; }
"""

# Always escaped: they carry inline meaning anywhere ($ is math on GitHub, & starts entities, | splits tables).
_MD_ALWAYS = set("\\`*_[]<>&|~#$")
# Escaped at the start of a line only: list bullets, setext underlines.
_MD_LINE_START = set("-+=")


def _md_escaped_chars(text: str, at_line_start: bool = True) -> list[str]:
    """Escaped form of each character of ``text`` (same length as ``text``), in one Markdown paragraph.

    Newlines before the last visible character become hard breaks (backslash + newline), so the completion stays
    one paragraph and no line can start a block (heading, list, code block). Line-start markers (``-``, ``+``, ``=``, ``1.``, ``1)``) are escaped;
    ``at_line_start=False`` says the text follows other text on its first line (e.g. a table cell).
    """
    out: list[str] = []
    line_start = at_line_start  # only spaces/tabs since the last newline
    digits_only = False  # only spaces/tabs then digits since the last newline
    last_content = len(text.rstrip()) - 1  # a hard break after the last visible character would show a "\"
    for i, ch in enumerate(text):
        if ch == "\n":
            out.append("\\\n" if i < last_content else "\n")
            line_start, digits_only = True, False
            continue
        if ch in _MD_ALWAYS or (line_start and ch in _MD_LINE_START) or (digits_only and ch in ".)"):
            out.append("\\" + ch)
        else:
            out.append(ch)
        if ch in " \t":
            continue
        digits_only = ch.isdigit() and (line_start or digits_only)
        line_start = False
    return out


def escape_markdown(text: str, at_line_start: bool = True) -> str:
    """``text`` escaped for inline Markdown (see ``_md_escaped_chars``); renders back to exactly ``text``."""
    return "".join(_md_escaped_chars(text, at_line_start))


def _check_known(signals: Sequence[str], known: Mapping[str, str], what: str, param: str) -> None:
    unknown = [s for s in signals if s not in known]
    if unknown:
        raise ValueError(
            f"no {what} for signal(s) {unknown}; known: {', '.join(known)}; pass {param}={{name: ...}} for them"
        )


def _runs(records: Sequence[TokenRecord]) -> list[tuple[int, int, tuple[str, ...]]]:
    """Maximal runs of consecutive records selected by the same signals: (start, end, signals)."""
    runs: list[tuple[int, int, tuple[str, ...]]] = []
    for rec in records:
        sig = tuple(rec.signals)
        if runs and runs[-1][2] == sig and runs[-1][1] == rec.start:
            runs[-1] = (runs[-1][0], rec.end, sig)
        else:
            runs.append((rec.start, rec.end, sig))
    return runs


def to_markdown(
    records: Sequence[TokenRecord], legend: bool = True, tags: Mapping[str, str] | None = None
) -> str:
    """Markdown of one completion with selected tokens wrapped in per-signal inline tags.

    records: (T,) records of one completion. tags: signal -> HTML tag name, merged over ``MD_TAGS`` (visual ``b``,
    temporal ``i``, entropy ``code``); a token selected by several signals gets nested tags. Whitespace at the edge
    of a selected run stays outside the tags. With ``legend`` a first paragraph shows each signal's style.
    """
    tags = {**MD_TAGS, **(tags or {})}
    signals = record_signals([records])
    _check_known(signals, tags, "Markdown tag", "tags")
    text = "".join(rec.text for rec in records)
    esc = _md_escaped_chars(text)
    parts = []
    for start, end, sig in _runs(records):
        chunk = text[start:end]
        lo = start + (len(chunk) - len(chunk.lstrip()))
        hi = end - (len(chunk) - len(chunk.rstrip()))
        if not sig or lo >= hi:
            parts.append("".join(esc[start:end]))
            continue
        opening = "".join(f"<{tags[s]}>" for s in sig)
        closing = "".join(f"</{tags[s]}>" for s in reversed(sig))
        parts.append("".join(esc[start:lo]) + opening + "".join(esc[lo:hi]) + closing + "".join(esc[hi:end]))
    body = "".join(parts)
    if not legend:
        return body
    items = " · ".join(f"<{tags[s]}>{escape_markdown(s)}</{tags[s]}>" for s in signals)
    return f"Legend: {items} (nested = several signals)\n\n{body}"


def _tooltip(rec: TokenRecord) -> str:
    lines = []
    for name in dict.fromkeys([*rec.selected, *rec.scores]):
        score = f" {rec.scores[name]:.4g}" if name in rec.scores else ""
        mark = " (selected)" if rec.selected.get(name) else ""
        lines.append(f"{name}{score}{mark}")
    return " | ".join(lines)


def _span(rec: TokenRecord, colours: Mapping[str, str]) -> str:
    sig = rec.signals
    classes = ["tok", *sig] + (["several"] if len(sig) > 1 else []) + (["key"] if rec.union else [])
    style = ""
    if sig:
        style = f' style="background:{SEVERAL_COLOUR if len(sig) > 1 else colours[sig[0]]}"'
    title = html.escape(_tooltip(rec), quote=True)
    return f'<span class="{" ".join(classes)}"{style} title="{title}">{html.escape(rec.text, quote=False)}</span>'


def legend_html(signals: Sequence[str], colours: Mapping[str, str] | None = None) -> str:
    """One-line HTML legend: a colour swatch per signal plus "several"."""
    colours = {**SIGNAL_COLOURS, **(colours or {})}
    _check_known(signals, colours, "colour", "colours")
    items = [f'<span style="background:{colours[s]}">{html.escape(s)}</span>' for s in signals]
    items.append(f'<span style="background:{SEVERAL_COLOUR}">several</span>')
    return f'<div class="vktr-legend">Selected by: {"".join(items)}</div>'


def to_html_fragment(
    records: Sequence[TokenRecord], caption: str | None = None, colours: Mapping[str, str] | None = None
) -> str:
    """HTML ``<div>`` of one completion; every non-empty token is a ``<span>`` whose classes name its signals.

    Classes: ``tok`` always, each selecting signal's name, ``several`` if two or more, ``key`` if in the key mask.
    Colours are inline styles (the fragment renders the same inside any page); the tooltip (``title``) lists every
    score. Text and tooltips are HTML-escaped; whitespace is preserved (``white-space: pre-wrap``).
    """
    colours = {**SIGNAL_COLOURS, **(colours or {})}
    _check_known(record_signals([records]), colours, "colour", "colours")
    spans = "".join(_span(rec, colours) for rec in records if rec.text)
    cap = f'<p class="vktr-caption">{html.escape(caption)}</p>' if caption else ""
    return f'<div class="vktr-example">{cap}<div class="vktr-text">{spans}</div></div>'


def to_html(records: Sequence[TokenRecord], title: str, colours: Mapping[str, str] | None = None) -> str:
    """Self-contained HTML document (no external files) of one completion with a legend and tooltips."""
    signals = record_signals([records])
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{HIGHLIGHT_CSS}</style></head>\n<body>"
        f"<h1>{html.escape(title)}</h1>\n{legend_html(signals, colours)}\n"
        f"{to_html_fragment(records, colours=colours)}\n</body></html>\n"
    )


def _rich_style(sig: Sequence[str], colours: Mapping[str, str]) -> str:
    return f"black on {SEVERAL_COLOUR if len(sig) > 1 else colours[sig[0]]}"


def to_rich(records: Sequence[TokenRecord], colours: Mapping[str, str] | None = None) -> Any:
    """``rich.text.Text`` of one completion (plain text = the joined pieces) with selected tokens on a background.

    Pieces are appended as plain text, so "[bold]" or "<think>" in a completion is never read as markup.
    """
    from rich.text import Text

    colours = {**SIGNAL_COLOURS, **(colours or {})}
    _check_known(record_signals([records]), colours, "colour", "colours")
    out = Text()
    for rec in records:
        sig = rec.signals
        out.append(rec.text, style=_rich_style(sig, colours) if sig else None)
    return out


def rich_legend(signals: Sequence[str], colours: Mapping[str, str] | None = None) -> Any:
    """``rich.text.Text`` legend: each signal's name on its colour, then "several"."""
    from rich.text import Text

    colours = {**SIGNAL_COLOURS, **(colours or {})}
    _check_known(signals, colours, "colour", "colours")
    out = Text("Selected by: ")
    for name in signals:
        out.append(f" {name} ", style=_rich_style([name], colours))
        out.append(" ")
    out.append(" several ", style=_rich_style(["a", "b"], colours))
    return out


def render_example(records: Sequence[TokenRecord], caption: str) -> dict[str, str]:
    """One example for ``write_report``: {"md": Markdown (caption + legend + text), "html": HTML fragment}."""
    return {
        "md": f"**{escape_markdown(caption)}**\n\n{to_markdown(records)}",
        "html": to_html_fragment(records, caption=caption),
    }
