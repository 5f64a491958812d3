"""Highlighting: escaping of tag-like tokens, classes per signal, Markdown tags, rich spans."""

import re

import pytest

from videoktr.analysis.highlight import (
    escape_markdown,
    render_example,
    to_html,
    to_html_fragment,
    to_markdown,
    to_rich,
)
from videoktr.analysis.tokens import token_records

PIECES = ["<think>", "The", " red", " ball", " moves", " left", " & ", "</think>"]
MASKS = {
    "visual": [False, False, True, True, False, False, False, False],
    "temporal": [False, False, False, True, True, False, False, False],
    "entropy": [True, False, False, False, False, True, False, False],
}
SCORES = {"visual": [0.0, 0.1, 0.9, 0.8, 0.2, 0.0, 0.0, 0.0], "entropy": [2.5, 0, 0, 0, 0, 1.5, 0, 0]}


@pytest.fixture()
def records():
    return token_records(PIECES, MASKS, SCORES)


def _spans(doc):
    return re.findall(r'<span class="([^"]*)"[^>]*>(.*?)</span>', doc)


def test_html_escapes_think_tags_and_marks_classes(records):
    doc = to_html(records, title="ex <1>")
    assert doc.startswith("<!DOCTYPE html>")
    assert "&lt;think&gt;" in doc and "&lt;/think&gt;" in doc
    assert "<think>" not in doc and "</think>" not in doc
    assert "<title>ex &lt;1&gt;</title>" in doc
    spans = {text: cls.split() for cls, text in _spans(doc)}
    assert spans["&lt;think&gt;"] == ["tok", "entropy", "key"]
    assert spans[" red"] == ["tok", "visual", "key"]
    assert spans[" ball"] == ["tok", "visual", "temporal", "several", "key"]
    assert spans[" moves"] == ["tok", "temporal", "key"]
    assert spans["The"] == ["tok"]
    assert spans[" &amp; "] == ["tok"]


def test_html_tooltip_lists_scores_escaped(records):
    frag = to_html_fragment(records, caption="a <b> caption")
    assert '<p class="vktr-caption">a &lt;b&gt; caption</p>' in frag
    assert 'title="visual 0.9 (selected) | temporal | entropy 0"' in frag  # " red": no temporal score given
    assert "background:#e4c1f9" in frag  # the "several" colour for " ball"


def test_markdown_escapes_and_wraps_runs(records):
    md = to_markdown(records, legend=False)
    # <think> is escaped and wrapped in the entropy tag; " red" -> visual only; " ball" visual+temporal nested;
    # the space before a run stays outside the tags; "&" is escaped.
    assert (
        md
        == r"<code>\<think\></code>The <b>red</b> <b><i>ball</i></b> <i>moves</i> <code>left</code> \& \</think\>"
    )


def test_markdown_line_starts_and_legend():
    recs = token_records(["- item", "\n", "1. x", " 3.5 *"], {"visual": [True, False, False, False]})
    md = to_markdown(recs)
    assert md.startswith("Legend: <b>visual</b> (nested = several signals)\n\n")
    body = md.split("\n\n", 1)[1]
    # "-" at line start escaped, newline -> hard break "\" + newline, "1." escaped, mid-line "3.5" untouched
    assert body == "<b>\\- item</b>\\\n1\\. x 3.5 \\*"
    assert escape_markdown("0.25", at_line_start=False) == "0.25"
    assert escape_markdown("a\n\nb\n") == "a\\\n\\\nb\n"  # no hard break (a visible "\") after the last text


def test_unknown_signal_needs_a_style():
    recs = token_records(["a"], {"audio": [True]})
    with pytest.raises(ValueError, match="audio"):
        to_markdown(recs)
    assert "<u>a</u>" in to_markdown(recs, tags={"audio": "u"})


def test_rich_text_plain_equals_completion_and_spans(records):
    text = to_rich(records)
    assert text.plain == "".join(PIECES)
    styled = {text.plain[s.start : s.end]: str(s.style) for s in text.spans}
    assert styled[" red"] == "black on #b7e4c7"
    assert styled[" ball"] == "black on #e4c1f9"
    assert "The" not in styled
    assert to_rich(token_records(["[bold]x"], {"visual": [True]})).plain == "[bold]x"  # no markup parsing


def test_render_example_has_both_formats(records):
    ex = render_example(records, "sample *1*")
    assert ex["md"].startswith(r"**sample \*1\***")
    assert ex["html"].startswith('<div class="vktr-example">')
