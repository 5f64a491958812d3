"""Report: summary sections first, plot links (PNG copied next to the report), examples, appendix."""

import pytest

from videoktr.analysis.highlight import render_example, to_html_fragment
from videoktr.analysis.plots import plot_bars
from videoktr.analysis.report import Section, Table, format_value, markdown_table, write_report
from videoktr.analysis.tokens import token_records
from videoktr.errors import UserError


def test_format():
    assert format_value(1 / 3) == "0.3333" and format_value(None) == "n/a"
    assert format_value([("red", 3), ("ball", 1)]) == "red (3), ball (1)"
    assert markdown_table(["k", "v"], [["a|b", 0.5]]) == "| k | v |\n|---|---|\n| a\\|b | 0.5 |"


@pytest.fixture()
def plot_png(tmp_path):
    return plot_bars({"visual": 0.25, "temporal": 1.0}, tmp_path / "elsewhere" / "precision.png", "precision")


def test_report_has_values_links_and_examples(tmp_path, plot_png):
    recs = token_records(["<think>", "red", "</think>"], {"visual": [False, True, False]})
    summary = Section(
        "Summary",
        ["Accuracy went up & <so> did lift."],
        [
            Table(
                ["signal", "lift"],
                [["visual|x", 2.5], ["temporal", None]],
                "Attribution",
                "summary-attribution",
            )
        ],
    )
    appendix = Section("Lexicon view", ["secondary"], [Table(["k"], [["v"]])])
    out_dir = tmp_path / "report"
    md_path = write_report(
        out_dir,
        [summary],
        {"precision by signal": str(plot_png)},
        [render_example(recs, "ex 1"), to_html_fragment(recs), "plain *md* <x>"],
        "Demo <run>",
        appendix=[appendix],
    )
    assert md_path == out_dir / "report.md"
    md = md_path.read_text()
    page = (out_dir / "report.html").read_text()
    assert (out_dir / "precision.png").read_bytes() == plot_png.read_bytes()  # copied next to the report
    # summary, then plots, then examples, then the appendix, in both formats
    for text, marks in [(md, ["## Summary", "## Plots", "## Examples", "## Lexicon view"]),
                        (page, ["<h2>Summary", "<h2>Plots", "<h2>Examples", "<h2>Lexicon view"])]:  # fmt: skip
        assert [text.index(m) for m in marks] == sorted(text.index(m) for m in marks)
    assert (
        "Accuracy went up \\& \\<so\\> did lift." in md
        and "<p>Accuracy went up &amp; &lt;so&gt; did lift.</p>" in page
    )
    assert "**Attribution**" in md and "| visual\\|x | 2.5 |" in md and "| temporal | n/a |" in md
    assert '<table id="summary-attribution"><caption>Attribution</caption>' in page
    assert "<td>visual|x</td><td class=num>2.5</td>" in page
    assert "![precision by signal](<precision.png>)" in md
    assert '<img src="precision.png" alt="precision by signal">' in page
    assert "<title>Demo &lt;run&gt;</title>" in page and md.startswith("# Demo \\<run\\>")
    # dict example: md part in report.md, html part in report.html; "<think>" never raw in the html page
    assert "**ex 1**" in md and "<b>red</b>" in md and '<p class="vktr-caption">ex 1</p>' in page
    assert "<think>" not in page
    assert '<pre class="vktr-md">plain *md* &lt;x&gt;</pre>' in page and "plain *md* <x>" in md


def test_report_missing_plot_and_name_clash(tmp_path, plot_png):
    with pytest.raises(UserError, match="does not exist"):
        write_report(tmp_path / "r", [], {"p": tmp_path / "nope.png"}, [], "t")
    (tmp_path / "r").mkdir(exist_ok=True)
    (tmp_path / "r" / "precision.png").write_bytes(b"other")
    with pytest.raises(UserError, match="already exists with other content"):
        write_report(tmp_path / "r", [], {"p": plot_png}, [], "t")
    with pytest.raises(TypeError, match="Section"):
        write_report(tmp_path / "r", [{"accuracy": 1.0}], {}, [], "t")


def test_plot_inside_out_dir_linked_relatively(tmp_path):
    png = plot_bars({"a": 1.0}, tmp_path / "plots" / "a.png", "t")
    md = write_report(tmp_path, [Section("s")], {"a": png}, [], "t").read_text()
    assert "![a](<plots/a.png>)" in md
