"""``videoktr analyze``: every number against a hand computation, the bad-input messages, and the outputs of a real
(tiny) recorded run, whose B.1 numbers are recomputed through the trainer's own forward and ``.backward()``."""

from __future__ import annotations

import json

import pytest
import torch

from videoktr.analysis.analyze import overlap_regions, pick_steps, position_histograms
from videoktr.analysis.stats import selection_stats
from videoktr.analysis.tokens import token_records
from videoktr.analysis.word_classes import (
    PipelineMissing,
    class_shares,
    spacy_labeller,
    synthetic_labeller,
    token_classes,
)
from videoktr.cli import main

SIGNALS = ["visual", "temporal", "entropy"]


@pytest.fixture
def two_completions():
    a = token_records(
        ["The", " first", " colour", " was", " red", "."],
        {"visual": [0, 0, 0, 0, 1, 0], "temporal": [0, 1, 0, 0, 1, 0], "entropy": [1, 0, 0, 0, 0, 0]},
    )
    b = token_records(
        ["<answer>", "B", "</answer>", " then"],
        {"visual": [0, 1, 0, 0], "temporal": [0, 0, 0, 1], "entropy": [0, 1, 0, 1]},
    )
    return [a, b]


def test_overlap_regions_by_hand(two_completions):
    # A: t0 entropy, t1 temporal, t4 visual+temporal, three unselected; B: t1 visual+entropy, t3 temporal+entropy
    assert overlap_regions(two_completions, SIGNALS) == {
        "visual+temporal+entropy": 0, "visual+temporal": 1, "visual+entropy": 1, "visual": 0,
        "temporal+entropy": 1, "temporal": 1, "entropy": 1, "none": 5,
    }  # fmt: skip


def test_position_histograms_by_hand(two_completions):
    # bin of token t in a completion of T tokens: (10 t) // T. A (T=6): 0,1,3,5,6,8; B (T=4): 0,2,5,7
    pos = position_histograms(two_completions, SIGNALS)
    assert pos["all"]["counts"] == [2, 1, 1, 1, 0, 2, 1, 1, 1, 0]
    assert pos["visual"]["counts"] == [0, 0, 1, 0, 0, 0, 1, 0, 0, 0]  # A t4 -> 6, B t1 -> 2
    assert pos["temporal"]["counts"] == [0, 1, 0, 0, 0, 0, 1, 1, 0, 0]  # A t1, A t4, B t3
    assert pos["visual"]["mean_position"] == pytest.approx((4 / 6 + 1 / 4) / 2)
    assert pos["temporal"]["mean_position"] == pytest.approx((1 / 6 + 4 / 6 + 3 / 4) / 3)
    assert pos["temporal"]["fractions"][1] == pytest.approx(1 / 3)
    assert pos["union"]["n"] == 5  # 10 tokens, 5 selected by none


def test_synthetic_word_class_shares_by_hand(two_completions):
    label = synthetic_labeller()
    classes = [token_classes(r, label("".join(t.text for t in r))) for r in two_completions]
    # "the"/"was"/"answer" are template filler, "first"/"then" temporal, "red" visual, "colour"/"b" other words,
    # "." no word
    assert classes == [
        ["filler", "temporal", "other", "filler", "visual", "no-word"],
        ["filler", "other", "filler", "temporal"],
    ]
    shares = class_shares(two_completions, classes, SIGNALS)
    assert shares["visual"]["shares"] == {"other": 0.5, "visual": 0.5}  # "red", "B"
    assert shares["temporal"]["shares"] == pytest.approx({"temporal": 2 / 3, "visual": 1 / 3})
    assert shares["all"]["counts"] == {"filler": 4, "other": 2, "temporal": 2, "no-word": 1, "visual": 1}
    assert shares["union"]["n"] == 5


def test_labelled_shares_leave_unlabelled_tokens_out(two_completions):
    # completion B is unlabelled: among the selected labelled tokens (A's) temporal selected "first" (order) and
    # "red" (content)
    classes = [["filler", "order", "filler", "filler", "content", "filler"], ["unlabelled"] * 4]
    shares = class_shares(two_completions, classes, SIGNALS, unlabelled="unlabelled")
    assert shares["temporal"]["shares"] == pytest.approx(
        {"unlabelled": 1 / 3, "order": 1 / 3, "content": 1 / 3}
    )
    assert shares["temporal"]["labelled_shares"] == {"order": 0.5, "content": 0.5}
    assert shares["all"]["labelled_shares"] == pytest.approx(
        {"filler": 4 / 6, "order": 1 / 6, "content": 1 / 6}
    )
    assert "labelled_shares" not in class_shares(two_completions, classes, SIGNALS)["all"]


def test_top_words_by_hand(two_completions):
    top = selection_stats(two_completions)["top_words"]
    assert top["visual"] == [("B", 1), ("red", 1)]
    assert top["entropy"] == [("B", 1), ("The", 1), ("then", 1)]


def test_missing_spacy_pipeline_names_its_install_command():
    with pytest.raises(PipelineMissing) as err:
        spacy_labeller("xx_no_such_pipeline")
    assert err.value.install == "pip install spacy && python -m spacy download xx_no_such_pipeline"
    assert err.value.install in str(err.value)


def test_pick_steps_spreads_over_the_run():
    assert pick_steps([0, 1, 2, 3, 4, 5, 6, 7, 8], 3) == [0, 4, 8]
    assert pick_steps([3, 5], 4) == [3, 5] and pick_steps([1, 2], 0) == []


def _analyze(run_dir, out, capsys, *extra):
    code = main(["analyze", str(run_dir), "--out", str(out), *extra])
    return code, capsys.readouterr().err


def test_run_dir_without_selection_says_how_to_produce_it(tmp_path, capsys):
    code, err = _analyze(tmp_path, tmp_path / "out", capsys)
    assert code == 2 and "selection.jsonl does not exist" in err and "log_selected_examples: -1" in err
    assert "Traceback" not in err
    (tmp_path / "rl").mkdir()
    (tmp_path / "rl" / "selection.jsonl").write_text("{}\n")
    code, err = _analyze(tmp_path, tmp_path / "out", capsys)
    assert code == 2 and f"did you mean {tmp_path / 'rl'}" in err


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"version": 2, "step": 0}', "format version 2; this videoktr reads version 1"),
        ('{"step": 0}', "format version None"),
        ("not json", "line 1 is not JSON"),
        ('{"version": 1, "step": 0, "skipped": true, "union": null}', "none was scored"),
    ],
)
def test_selection_of_another_version_is_refused(tmp_path, capsys, line, message):
    (tmp_path / "selection.jsonl").write_text(line + "\n")
    code, err = _analyze(tmp_path, tmp_path / "out", capsys)
    assert code == 2 and message in err and "log_selected_examples" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def analysed(recorded_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    code = main(["analyze", str(recorded_run), "--out", str(out), "--grad-batches", "2",
                 "--spacy-model", "xx_no_such_pipeline"])  # fmt: skip
    assert code == 0
    raw = [json.loads(line) for line in (recorded_run / "selection.jsonl").read_text().splitlines()]
    return out, json.loads((out / "analysis.json").read_text()), [r for r in raw if not r["skipped"]]


def test_recorded_run_numbers_match_the_raw_records(analysed):
    out, result, raw = analysed
    for name in ("analysis.json", "analysis.html", "overlap.png", "positions.png", "word_classes.png"):
        assert (out / name).stat().st_size > 0
    assert result["signals"] == SIGNALS and result["steps"] == [0, 1]
    regions = {}
    for r in raw:
        for t in range(len(r["completion_ids"])):
            key = "+".join(s for s in SIGNALS if r["masks"][s][t]) or "none"
            regions[key] = regions.get(key, 0) + 1
    assert {k: v for k, v in result["overlap"].items() if v} == regions
    assert result["positions"]["union"]["n"] == sum(sum(r["union"]) for r in raw)
    assert result["word_classes"]["synthetic"]["union"]["n"] == sum(sum(r["union"]) for r in raw)
    assert result["word_classes"]["spacy:xx_no_such_pipeline"] == {
        "available": False,
        "pipeline": "xx_no_such_pipeline",
        "install": "pip install spacy && python -m spacy download xx_no_such_pipeline",
    }


def test_html_holds_every_step_and_signal(analysed):
    out, result, _ = analysed
    page = (out / "analysis.html").read_text()
    for step in result["steps"]:
        assert f'<section class="step" data-step="{step}"' in page and f'<option value="{step}">' in page
    for signal in SIGNALS:
        assert f'<option value="{signal}">' in page and f"#examples.show-{signal}" in page
        assert f'class="tok {signal}' in page  # a highlighted token of that signal


def test_b1_equals_the_trainers_forward_and_backward(analysed, recorded_run, tmp_path):
    from videoktr.models.qwen2_5_vl import find_vl_model
    from videoktr.training.recipe import build_trainer, load_recipe

    _, result, raw = analysed
    batch = result["gradients"]["batches"][0]
    rows = [r for r in raw if r["step"] == batch["step"]]
    recipe = load_recipe(recorded_run / "recipe.yaml")
    recipe.model = str(recorded_run)
    recipe.trainer["output_dir"] = str(tmp_path)
    trainer = build_trainer(recipe)
    by_id = {row["problem_id"]: row["prompt"] for row in trainer.train_dataset}
    prompt_ids, _, _ = trainer._tokenize_prompts([by_id[r["problem_id"]] for r in rows])
    width_p, width_c = max(map(len, prompt_ids)), max(len(r["completion_ids"]) for r in rows)
    ids = [[0] * (width_p - len(p)) + p + r["completion_ids"] + [0] * (width_c - len(r["completion_ids"]))
           for p, r in zip(prompt_ids, rows)]  # fmt: skip
    mask = [[0] * (width_p - len(p)) + [1] * (len(p) + len(r["completion_ids"]))
            + [0] * (width_c - len(r["completion_ids"])) for p, r in zip(prompt_ids, rows)]  # fmt: skip
    model = trainer.model
    model.eval()
    logp, _, _ = trainer._get_per_token_logps_and_entropies(
        model, torch.tensor(ids), torch.tensor(mask), width_c, video=trainer._rollout_video
    )
    valid = torch.tensor(mask)[:, width_p:].bool()
    union = torch.zeros_like(valid)
    for i, r in enumerate(rows):
        union[i, : len(r["union"])] = torch.tensor(r["union"], dtype=torch.bool)
    adv = torch.tensor([r["advantage"] for r in rows]).unsqueeze(1)
    params = list(find_vl_model(model).language_model.layers[-2:].parameters())
    # the run's aggregation (Video-KTR's default): GRPO's per-sequence token mean over the valid tokens
    assert result["gradients"]["aggregation"] == "seq-mean-token-mean"
    grads = {}
    for name, keep in {"full": valid, "selected": union & valid}.items():
        model.zero_grad()
        (-((adv * logp * keep).sum(1) / valid.sum(1)).mean()).backward(retain_graph=True)
        grads[name] = torch.cat([p.grad.reshape(-1) for p in params]).double()
    assert batch["norm_full"] == pytest.approx(float(grads["full"].norm()), rel=1e-4)
    assert batch["norm_selected"] == pytest.approx(float(grads["selected"].norm()), rel=1e-4)
    cos = torch.nn.functional.cosine_similarity(grads["selected"], grads["full"], dim=0)
    assert batch["cos_selected_full"] == pytest.approx(float(cos), rel=1e-4, abs=1e-6)


def test_b1_is_skipped_with_the_reason_and_the_rest_runs(recorded_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(recorded_run, run)
    lines = (run / "selection.jsonl").read_text().splitlines()
    (run / "recipe.yaml").unlink()
    code, err = _analyze(run, tmp_path / "a", capsys, "--grad-batches", "1")
    assert code == 0 and "recipe.yaml is missing" in err
    assert (
        "recipe.yaml is missing"
        in json.loads((tmp_path / "a" / "analysis.json").read_text())["gradients"]["skipped"]
    )
    stripped = [{k: v for k, v in json.loads(line).items() if k != "problem_id"} for line in lines]
    (run / "selection.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stripped))
    assert _analyze(run, tmp_path / "b", capsys, "--grad-batches", "1")[0] == 0
    result = json.loads((tmp_path / "b" / "analysis.json").read_text())
    assert "no problem_id" in result["gradients"]["skipped"] and result["overlap"]
    code, err = _analyze(run, tmp_path / "c", capsys, "--grad-layers", "0")
    assert code == 2 and "--grad-layers must be >= 1" in err


def test_spacy_pipeline_tags_are_mapped_to_tokens(monkeypatch, two_completions):
    # a stand-in spaCy (not a dependency): whitespace-split words, tagged by their first letter's case
    import sys
    import types

    class Tok:
        def __init__(self, text, idx):
            self.text, self.idx, self.is_space = text, idx, False
            self.pos_ = "PROPN" if text[0].isupper() else "NOUN"

    def nlp(text):
        out, pos = [], 0
        for word in text.split(" "):
            if word:
                out.append(Tok(word, text.index(word, pos)))
            pos += len(word) + 1
        return out

    loaded = []
    fake = types.SimpleNamespace(load=lambda name, disable: loaded.append(name) or nlp)
    monkeypatch.setitem(sys.modules, "spacy", fake)
    label = spacy_labeller("en_fake")
    a = two_completions[0]  # "The first colour was red." -> The | first | colour | was | red.
    assert loaded == ["en_fake"]
    assert token_classes(a, label("".join(t.text for t in a))) == ["PROPN", *["NOUN"] * 5]


def test_counterfactual_classes_follow_the_generators_own_labels(recorded_run):
    # the generator's reasoning texts follow its templates, so each word's class is the label the generator wrote
    import re

    from videoktr.analysis.word_classes import counterfactual_classes
    from videoktr.data.schema import load_records
    from videoktr.training.recipe import read_yaml

    train = read_yaml(recorded_run / "recipe.yaml")["data"]["train"]
    data = load_records(
        str(train).replace("train.json", "train_sft.json")
    )  # the records with their reasoning
    kinds = sorted({r["question_kind"] for r in data})
    records_list, expected = [], []
    for r in data:
        pieces = re.findall(r"\s*\S+", r["process"])  # a token per word, with its leading whitespace
        records_list.append(token_records(pieces, {"visual": [False] * len(pieces)}))
        labels = []
        for rec in records_list[-1]:
            hit = [
                s["label"] for s in r["counterfactual_spans"] if s["start"] < rec.end and rec.start < s["end"]
            ]
            labels.append("order" if "order" in hit else "content" if hit else "filler")
        expected.append(labels)
    classes, status = counterfactual_classes(records_list, kinds)
    assert status["template"] == len(data)
    assert classes == expected and any("content" in c or "order" in c for c in classes)


_PROBE = """<script>
function probe(step, signal) {
  document.getElementById('step').value = step;
  document.getElementById('step').dispatchEvent(new Event('change'));
  document.getElementById('signal').value = signal;
  document.getElementById('signal').dispatchEvent(new Event('change'));
  var shown = Array.from(document.querySelectorAll('section.step'))
    .filter(function (s) { return getComputedStyle(s).display !== 'none'; }).map(function (s) { return s.dataset.step; });
  var bg = function (sel) { var t = document.querySelector(sel); return t ? getComputedStyle(t).backgroundColor : ''; };
  return [shown.join(' '), bg('#examples .tok.visual'), bg('#examples .tok.entropy:not(.visual)')].join('|');
}
document.body.dataset.initial = probe(document.getElementById('step').value, 'all');
document.body.dataset.visual = probe('1', 'visual');
</script>"""


def test_html_step_and_signal_selectors_work_in_a_browser(analysed, tmp_path):
    import re
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it with apt-get as root)")
    out, _, _ = analysed
    probe = out / "probe.html"
    probe.write_text((out / "analysis.html").read_text().replace("</body>", _PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]  # fmt: skip
    done = subprocess.run([chromium, *flags], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    initial = re.search(r'data-initial="([^"]*)"', done.stdout).group(1).split("|")
    visual = re.search(r'data-visual="([^"]*)"', done.stdout).group(1).split("|")
    assert initial[0] == "0"  # the first step only
    assert visual[0] == "1"  # the chosen step only
    assert visual[1] == "rgb(183, 228, 199)"  # a visual token in the visual colour (#b7e4c7)
    assert visual[2] == "rgba(0, 0, 0, 0)"  # an entropy-only token is not highlighted under "visual"
    assert initial[2] not in ("", "rgba(0, 0, 0, 0)")  # ... but is under "all signals"
