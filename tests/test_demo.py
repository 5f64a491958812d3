"""A very short demo and ablation, end to end through the CLI (the real stages, tiny sizes)."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
import torch

from videoktr.ablate import mean_std, table
from videoktr.cli import main
from videoktr.eval.identity import model_fingerprint

TINY = [
    "n_train=12",
    "n_test=8",
    "sft_samples=8",
    "sft_steps=3",
    "sft_batch_size=4",
    "rl_steps=2",
    "rl_prompts=2",
    "num_generations=2",
    "max_completion_length=12",
    "eval_batch_size=8",
    # the barely trained model scores 0 everywhere (all-zero advantages): score every row anyway, for the
    # attribution table this test checks
    "trainer_overrides={ktr_skip_zero_advantage: false}",
]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), *TINY]) == 0
    return out


def test_demo_writes_results_report_and_plots(demo_dir):
    results = json.loads((demo_dir / "results.json").read_text())
    for key in ("accuracy_before_rl", "accuracy_after_rl", "attribution_precision", "seconds"):
        assert key in results
    assert 0.0 <= results["accuracy_before_rl"] <= 1.0 and 0.0 <= results["accuracy_after_rl"] <= 1.0
    # one static and one temporal question kind by default, reported per family
    assert {"family/static", "family/temporal"} <= set(results["accuracy_by_category_after_rl"])
    assert results["rl_steps_done"] == 2
    precision = results["attribution_precision"]
    assert {"visual/visual", "temporal/temporal", "entropy/visual", "union/visual"} <= set(precision)
    assert all(0.0 <= p["base_rate"] <= 1.0 for p in precision.values())
    # the counterfactual attribution block: every signal x label, and every scored completion accounted for
    records = [json.loads(line) for line in (demo_dir / "rl" / "selection.jsonl").read_text().splitlines()]
    attribution, labels = results["attribution"], results["attribution_labels"]
    assert set(attribution) == {"visual", "temporal", "entropy", "union"}
    for by_label in attribution.values():
        assert set(by_label) == {"content", "order"}
        assert all({"auroc", "precision", "base_rate", "lift", "ci"} <= set(e) for e in by_label.values())
    scored = sum(not r["skipped"] for r in records)
    assert labels["template"] + labels["off_template"] + labels["ambiguous"] == scored
    assert labels["kinds"] == ["color", "first_color"]
    assert set(results["accuracy_intervals"]["after_rl"]) >= {"all", "family/static", "family/temporal"}
    report = (demo_dir / "report.md").read_text()
    heads = [line for line in report.splitlines() if line.startswith("## ")]
    assert heads[:3] == ["## Summary", "## Which tokens each signal selects", "## Plots"]
    assert "accuracy\\_after\\_rl" not in report and "rl_reward.png" in report  # no flattened key dump
    assert (demo_dir / "rl_reward.png").stat().st_size > 0
    assert (demo_dir / "report.html").is_file()
    # held-out accuracy during RL (at the start and the end of 2 steps), beside the training reward
    learning = results["learning"]
    assert [p["step"] for p in learning["points"]] == [0, 2] and learning["points"][0]["n_items"] == 8
    assert learning["windows"][0]["steps"] == 2 and learning["completions_per_step"] == 4
    assert (demo_dir / learning["plot"]).stat().st_size > 0
    # each recorded RL completion carries its per-signal masks
    assert records and all(r["version"] == 1 for r in records)
    first = next(r for r in records if not r["skipped"])
    assert set(first["masks"]) == {"visual", "temporal", "entropy"}


# After the page's load event (images decoded or failed), record what the browser rendered into the DOM.
_PROBE = """<script>window.addEventListener("load", () => {
  for (const im of document.images) im.dataset.rendered = String(im.complete && im.naturalWidth > 0);
  for (const t of document.querySelectorAll("table[id]")) t.dataset.height = String(t.offsetHeight);
  document.body.dataset.loaded = "1";
});</script>"""


class _Dom(HTMLParser):
    """The elements of a dumped DOM with their attributes, and the text of each heading and table cell."""

    def __init__(self):
        super().__init__()
        self.elements, self.texts, self._open = [], [], None

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag in ("h1", "h2", "td", "th"):
            self._open = [tag, ""]

    def handle_data(self, data):
        if self._open:
            self._open[1] += data

    def handle_endtag(self, tag):
        if self._open and tag == self._open[0]:
            self.texts.append(tuple(self._open))
            self._open = None


def test_demo_report_renders_in_a_real_browser(demo_dir, tmp_path):
    """Chromium (scripts/setup.sh installs it) loads report.html: the summary tables and every plot render."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip(
            "chromium is not installed and scripts/setup.sh could not install it (needs root + apt-get)"
        )
    page = (demo_dir / "report.html").read_text()
    probe = demo_dir / "report_probe.html"  # next to report.html, so the PNGs resolve the same way
    probe.write_text(page.replace("</body>", _PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()]  # fmt: skip
    try:
        done = subprocess.run([chromium, *flags], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)
    attrs = {tag: a for tag, a in dom.elements if tag == "body"}
    assert attrs["body"].get("data-loaded") == "1"  # the load event ran: images settled
    images = [a for tag, a in dom.elements if tag == "img"]
    assert len(images) >= 2 and all(a.get("data-rendered") == "true" for a in images), images
    tables = {a["id"]: a for tag, a in dom.elements if tag == "table" and "id" in a}
    for name in ("summary-accuracy", "summary-attribution"):
        assert int(tables[name]["data-height"]) > 0
    h2 = [text.strip() for tag, text in dom.texts if tag == "h2"]
    assert h2[0] == "Summary" and h2.index("Plots") < h2.index("Examples")
    cells = [text for tag, text in dom.texts if tag == "td"]
    assert "all questions" in cells and "family: temporal" in cells and "visual" in cells


def test_demo_rerun_skips_finished_stages(demo_dir):
    sft_marker = demo_dir / "sft" / "stage.json"
    before = sft_marker.stat().st_mtime_ns
    model_before = (demo_dir / "model" / "stage.json").stat().st_mtime_ns
    assert main(["demo", "--out", str(demo_dir), *TINY, "rl_steps=1"]) == 0
    assert sft_marker.stat().st_mtime_ns == before
    assert (demo_dir / "model" / "stage.json").stat().st_mtime_ns == model_before
    assert json.loads((demo_dir / "results.json").read_text())["rl_steps_done"] == 1
    # the retrained RL model is evaluated again: its predictions file is not resumed from the previous RL model's
    header = json.loads((demo_dir / "predictions_after_rl.jsonl").read_text().splitlines()[0])
    assert header["videoktr_eval_run"]["settings"]["model"] == model_fingerprint(demo_dir / "rl")


def test_demo_eval_identity_holds_the_scorer(demo_dir, tmp_path, monkeypatch):
    import shutil

    from videoktr import demo

    header = json.loads((demo_dir / "predictions_before_rl.jsonl").read_text().splitlines()[0])
    assert header["videoktr_eval_run"]["settings"]["scorer"] == "video-r1"
    # a rerun with another scorer does not resume the file of the first one (the demo replaces it)
    predictions = shutil.copy(demo_dir / "predictions_before_rl.jsonl", tmp_path / "p.jsonl")
    cfg = demo.load_demo_config(None, TINY)
    monkeypatch.setattr(demo, "_scorer", lambda cfg: "lenient")
    summary = demo.evaluate_dir(cfg, demo_dir / "sft", demo.make_data(cfg, demo_dir), predictions)
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert lines[0]["videoktr_eval_run"]["settings"]["scorer"] == "lenient" and summary["scorer"] == "lenient"
    assert len(lines) == 1 + cfg.n_test and {line["scorer"] for line in lines[1:]} == {"lenient"}


def test_demo_rejects_unknown_settings(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "rl_stepz=3"]) == 2
    assert "unknown demo settings ['rl_stepz']" in capsys.readouterr().err


def test_ablation_table_mean_and_std():
    # seeds 0.5 and 0.7: mean 60.0, sample std sqrt(((0.1)^2 + (0.1)^2) / 1) = 0.1414 -> 14.1
    assert mean_std([0.5, 0.7]) == "60.0 +- 14.1"
    assert mean_std([0.25]) == "25.0 +- 0.0"
    assert mean_std([None]) == "n/a"
    sft = {"accuracy": 0.5, "by_category": {"family/static": 0.75, "family/temporal": 0.25}}
    rows = [
        {"variant": "A", "seed": 0, "accuracy": 0.5, "static": 1.0, "temporal": 0.0},
        {"variant": "A", "seed": 1, "accuracy": 0.7, "static": 1.0, "temporal": 0.4},
    ]
    text = table(rows, ["A", "B"], sft)
    assert "| SFT checkpoint (no RL) | - | 50.0 | 75.0 | 25.0 |" in text
    assert "| A | 2 | 60.0 +- 14.1 | 100.0 +- 0.0 | 20.0 +- 28.3 |" in text
    assert "| B |" not in text  # a variant with no finished run is not shown as if it had results


def test_ablate_runs_variants_from_one_sft_checkpoint_and_resumes(tmp_path):
    config = tmp_path / "ablate.yaml"
    demo = dict(item.split("=") for item in TINY)
    lines = ["demo:"] + [f"  {k}: {v}" for k, v in demo.items()]
    lines += [
        "variants:",
        "  - {name: GRPO, method: grpo}",
        "  - {name: V, method: ktr, trainer: {ktr_signals: [visual]}}",
    ]
    config.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["ablate", "--config", str(config), "--seeds", "1", "--out", str(out)]) == 0
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["seed"]) for r in runs] == [("GRPO", 0), ("V", 0)]
    assert "| GRPO | 1 |" in (out / "ablation.md").read_text()
    paired = json.loads((out / "ablation.json").read_text())["paired"]
    assert paired["reference"] == "GRPO" and paired["n_questions"] == 8
    assert paired["variants"]["V"]["paired_seeds"] == [0] and (out / "ablation.png").stat().st_size > 0
    # rerun: finished (variant, seed) pairs are skipped, not retrained
    assert main(["ablate", "--config", str(config), "--seeds", "1", "--out", str(out)]) == 0
    assert len((out / "runs.jsonl").read_text().splitlines()) == 2


def test_demo_rl_resumes_after_a_kill_and_equals_the_uninterrupted_run(demo_dir, monkeypatch):
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    import videoktr.demo

    args = ["demo", "--out", str(demo_dir), *TINY, "rl_steps=3", "rl_save_steps=1"]
    rl = demo_dir / "rl"

    def run_log():
        history = json.loads((rl / "log_history.json").read_text())
        return [(h["step"], h["loss"], h["grad_norm"]) for h in history if "loss" in h]

    assert main(args) == 0  # uninterrupted
    weights, log = load_file(str(rl / "model.safetensors")), run_log()
    stamp = (rl / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # finished with these settings: skipped, not retrained
    assert (rl / "model.safetensors").stat().st_mtime_ns == stamp

    class Steps(TrainerCallback):
        """Counts the steps it sees; ``kill_at``: raises there (before that step's checkpoint is written)."""

        stopped_early = False

        def __init__(self, kill_at=None):
            self.kill_at, self.seen = kill_at, []

        def on_step_end(self, args, state, control, **kwargs):
            self.seen.append(state.global_step)
            if state.global_step == self.kill_at:
                raise KeyboardInterrupt

    shutil.rmtree(rl)
    monkeypatch.setattr(videoktr.demo, "TimeBudget", lambda seconds, excluded=None: Steps(kill_at=2))
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert sorted(p.name for p in rl.glob("checkpoint-*")) == ["checkpoint-1"]
    counter = Steps()
    monkeypatch.setattr(videoktr.demo, "TimeBudget", lambda seconds, excluded=None: counter)
    assert main(args) == 0
    assert counter.seen == [2, 3]  # resumed from checkpoint-1, not retrained from the start
    resumed = load_file(str(rl / "model.safetensors"))
    assert resumed.keys() == weights.keys() and all(torch.equal(resumed[k], weights[k]) for k in weights)
    assert run_log() == log
    assert json.loads((demo_dir / "results.json").read_text())["rl_steps_done"] == 3
