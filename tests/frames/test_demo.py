import json

import pytest


@pytest.mark.slow
def test_frames_demo_end_to_end_small(tmp_path):
    """The whole pipeline at toy sizes: every stage runs and results.json / report.md hold every selector."""
    from videoktr.cli import main
    from videoktr.frames.sparse import is_sufficient

    out = tmp_path / "demo"
    code = main(["frames", "demo", "--out", str(out), "n_train=24", "n_test=8", "n_label=8", "sft_steps=3",
                 "sft_batch_size=4", "bootstrap=50", "voyager.train_steps=3", "voyager.records_per_step=4", "voyager.min_loss_spread=0", "sft_insufficient_views=1"])  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["selectors"]) == {"uniform", "random", "voyager", "oracle", "voyager_oracle_labels"}
    assert set(results["selectors"]["voyager"]["by_kind"]) == {"sparse_after", "sparse_first"}
    assert results["selectors"]["oracle"]["sufficiency"] == 1.0
    assert set(results["seconds"]) >= {"data", "sft", "labels", "querier", "total"}
    assert set(results["cpu_seconds"]) == set(results["seconds"]) and results["cpu_seconds"]["sft"] > 0
    views = json.loads((out / "sft" / "sft_views.json").read_text())  # one sufficient + one insufficient each
    assert (
        sorted(is_sufficient(v["evidence_rule"], v["frame_indices"]) for v in views)
        == [False] * 24 + [True] * 24
    )
    assert (out / "chosen_frames.png").stat().st_size > 0 and "voyager" in (out / "report.md").read_text()
    selections = json.loads((out / "selections.json").read_text())
    assert all(len(f) == 6 for f in selections["voyager"].values())
    lines = (out / "labels.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all(len(json.loads(x)["losses"]) == 56 for x in lines)


def test_frames_demo_bad_settings_exit_2(tmp_path, capsys):
    from videoktr.cli import main

    assert main(["frames", "demo", "--out", str(tmp_path), "voyager.frames=20"]) == 2
    assert "T=20 > M=16" in capsys.readouterr().err
    assert main(["frames", "demo", "--out", str(tmp_path), "nonsense=1"]) == 2
    assert "unknown frames demo settings" in capsys.readouterr().err
    assert main(["frames", "demo", "--out", str(tmp_path), "model.layers=4"]) == 2
    assert "unknown model setting(s) ['layers']" in capsys.readouterr().err
    assert main(["frames", "demo", "--out", str(tmp_path), "sft_view_extras=hard"]) == 2
    assert "sft_view_extras='hard'; valid: random, distractors" in capsys.readouterr().err
