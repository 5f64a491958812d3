"""Plots write real PNG files; bad inputs raise with a message naming the problem."""

import subprocess
import sys

import pytest

from videoktr.analysis.plots import curve_points, plot_bars, plot_curves
from videoktr.errors import UserError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

LOG = [
    {"loss": 1.0, "reward": 0.1, "step": 1},
    {"loss": 0.8, "step": 2},
    {"reward": 0.4, "step": 3},
    {"train_runtime": 5.0, "step": 3},
]


def test_curve_points_skip_entries_without_key():
    assert curve_points(LOG, "reward") == ([1.0, 3.0], [0.1, 0.4])
    with pytest.raises(UserError, match="keys present: loss, reward, step, train_runtime"):
        curve_points(LOG, "kl")
    with pytest.raises(ValueError, match="log_history\\[0\\]"):
        curve_points([{"loss": "x", "step": 1}], "loss")


def test_plot_curves_writes_png(tmp_path):
    out = plot_curves(LOG, ["loss", "reward"], tmp_path / "sub" / "curves.png", "training")
    assert out.is_file() and out.stat().st_size > 1000
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_plot_bars_writes_png_with_none_and_errors(tmp_path):
    out = plot_bars(
        {"ktr": 0.5, "grpo": 0.4, "none": None},
        tmp_path / "bars.png",
        "accuracy",
        errors={"ktr": 0.05, "grpo": 0.02},
    )
    assert out.is_file() and out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="no entry for \\['grpo'\\]"):
        plot_bars({"ktr": 0.5, "grpo": 0.4}, tmp_path / "b.png", "t", errors={"ktr": 0.1})


def test_matplotlib_lazy_and_pyplot_untouched(tmp_path):
    # importing the package loads no matplotlib; plotting uses the Agg canvas without pyplot's global state
    code = (
        "import sys; import videoktr.analysis, videoktr.analysis.plots as p\n"
        "assert 'matplotlib' not in sys.modules\n"
        f"p.plot_bars({{'a': 1.0}}, {str(tmp_path / 'a.png')!r}, 't')\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "a.png").is_file()
