import json
from pathlib import Path

import pytest

from videoktr.errors import UserError
from videoktr.eval.benchmarks import load_benchmark
from videoktr.eval.runner import EvalRunConfig, run_evaluation

FIXTURES = Path(__file__).parents[1] / "fixtures" / "benchmarks"


class FakeBackend:
    """Answers correctly for videomme items 001-*, wrongly otherwise; raises for videos named in ``fail``."""

    def __init__(self, fail=(), interrupt_after=None):
        self.calls, self.fail, self.interrupt_after = [], set(fail), interrupt_after

    def generate(self, questions, videos, indices=None):
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append([v.name for v in videos])
        bad = [v.name for v in videos if v.name in self.fail]
        if bad:
            raise RuntimeError(f"cannot decode {bad[0]}")
        assert all("<answer>" in q and "Options:" in q for q in questions)  # the training template
        return ["<think>x</think><answer>C</answer>" for _ in questions]


@pytest.fixture
def items():
    return load_benchmark("videomme", FIXTURES / "videomme.json")  # answers C, A, B, D


def _lines(path):
    """The prediction lines of a predictions file (after its run header)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert "videoktr_eval_run" in rows[0]
    return rows[1:]


def test_run_scores_and_appends(items, video_root, tmp_path):
    out = tmp_path / "p.jsonl"
    records, summary = run_evaluation(FakeBackend(), items, EvalRunConfig(video_root, batch_size=2), out)
    # all outputs answer C: only 001-1 (gold C) is correct -> 1/4
    assert (
        summary["accuracy"] == 0.25 and summary["n_scored"] == 4 and summary["generation"]["n_generated"] == 4
    )
    assert [r["id"] for r in _lines(out)] == ["001-1", "001-2", "301-1", "601-1"]
    assert records[0]["correct"] and records[0]["extracted"] and records[0]["prediction"] == "C"


def test_resume_after_limit_and_interruption(items, video_root, tmp_path):
    out = tmp_path / "p.jsonl"
    run_evaluation(FakeBackend(), items, EvalRunConfig(video_root, limit=1), out)
    with pytest.raises(KeyboardInterrupt):  # killed after one more item
        run_evaluation(FakeBackend(interrupt_after=1), items, EvalRunConfig(video_root), out)
    assert len(_lines(out)) == 2
    backend = FakeBackend()
    records, summary = run_evaluation(backend, items, EvalRunConfig(video_root), out)
    ids = [r["id"] for r in _lines(out)]
    assert sorted(ids) == sorted(i.id for i in items) and len(ids) == len(set(ids))  # all done, no duplicates
    assert len(backend.calls) == 2 and summary["n_resumed"] == 2 and summary["n_scored"] == 4


def test_failing_item_is_recorded_not_fatal(items, video_root, tmp_path):
    out = tmp_path / "p.jsonl"
    backend = FakeBackend(fail={"abcdEFGhijk.mp4"})
    records, summary = run_evaluation(backend, items, EvalRunConfig(video_root, batch_size=4), out)
    failed = [r for r in records if r["error"]]
    assert [r["id"] for r in failed] == ["301-1"] and "cannot decode abcdEFGhijk.mp4" in failed[0]["error"]
    assert summary["n_errors"] == 1 and summary["n_scored"] == 4 and summary["accuracy"] == 0.25
    assert backend.calls[0] == [f"{i.video}" for i in items]  # the batch failed, then items one by one
    # a rerun keeps the error unless asked to retry it
    again = FakeBackend()
    run_evaluation(again, items, EvalRunConfig(video_root), out)
    assert again.calls == []
    run_evaluation(again, items, EvalRunConfig(video_root, retry_errors=True), out)
    assert again.calls == [["abcdEFGhijk.mp4"]]


def test_consecutive_failures_stop_the_run(items, video_root):
    backend = FakeBackend(fail={"fFjv93ACGo8.mp4", "abcdEFGhijk.mp4"})
    with pytest.raises(RuntimeError, match="3 items failed in a row"):
        run_evaluation(backend, items, EvalRunConfig(video_root, max_consecutive_errors=3))


def test_missing_videos_listed_up_front(items, video_root):
    (video_root / "fFjv93ACGo8.mp4").unlink()
    (video_root / "lmnoPQRstuv.mp4").unlink()
    backend = FakeBackend()
    with pytest.raises(UserError, match=r"3 of 4 videos are missing") as info:
        run_evaluation(backend, items, EvalRunConfig(video_root))
    message = str(info.value)
    assert "001-1" in message and "001-2" in message and "601-1" in message and "--skip-missing" in message
    assert backend.calls == []  # refused before generating anything
    records, summary = run_evaluation(backend, items, EvalRunConfig(video_root, skip_missing=True))
    assert [r["id"] for r in records] == ["301-1"] and summary["n_skipped_missing"] == 3


def test_predictions_of_another_benchmark_are_refused(items, video_root, tmp_path):
    out = tmp_path / "p.jsonl"
    out.write_text('{"videoktr_eval_run": {"settings": {}}}\n{"id": "vh001_1", "output": "B"}\n')
    with pytest.raises(UserError, match="not in this benchmark"):
        run_evaluation(FakeBackend(), items, EvalRunConfig(video_root), out)


def test_consecutive_failure_count_resets_after_a_success(items, video_root):
    # items in order: 001-1 and 001-2 (video fFjv93ACGo8), 301-1 (abcdEFGhijk), 601-1 (lmnoPQRstuv).
    # Failing fFjv93ACGo8 and lmnoPQRstuv gives fail, fail, success, fail: with the count reset by the success the
    # streaks are 2 then 1 (< 3: the run finishes); a count that never resets reaches 3 at 601-1 and stops the run.
    backend = FakeBackend(fail={"fFjv93ACGo8.mp4", "lmnoPQRstuv.mp4"})
    records, summary = run_evaluation(backend, items, EvalRunConfig(video_root, max_consecutive_errors=3))
    assert [r["error"] is not None for r in records] == [True, True, False, True]
    assert summary["n_errors"] == 3 and summary["n_scored"] == 4
    # the limit itself still applies to that pattern: two in a row stop at 001-2
    with pytest.raises(RuntimeError, match="2 items failed in a row \\(last: 001-2"):
        run_evaluation(backend, items, EvalRunConfig(video_root, max_consecutive_errors=2))


class PlannedBackend(FakeBackend):
    """A fake backend carrying a frame selector's plan (video path -> frames), as `videoktr eval --frame-selector`."""

    def __init__(self, plan):
        super().__init__()
        self.frame_indices = plan


def test_a_frame_plan_with_relative_paths_reaches_every_prediction(items, video_root, tmp_path, monkeypatch):
    # The plan and the video root written relative to the working directory (`--video-root videos`, or the frames
    # demo's `--out runs/x`), while the runner resolves each item's video to an absolute path: the frames must still
    # be found. (Before: looked up by the absolute path in a plan keyed by relative ones -> every prediction's
    # frame_indices None, and the backend decoded uniform frames instead of the chosen ones, without a word.)
    monkeypatch.chdir(tmp_path)
    relative_root = Path(video_root.name)  # "videos"
    names = {"001-1": "fFjv93ACGo8", "001-2": "fFjv93ACGo8", "301-1": "abcdEFGhijk", "601-1": "lmnoPQRstuv"}
    plan = {str(Path("./videos") / f"{n}.mp4"): [i, i + 1] for i, n in enumerate(sorted(set(names.values())))}
    records, _ = run_evaluation(PlannedBackend(plan), items, EvalRunConfig(relative_root), tmp_path / "p.jsonl")
    expected = {"fFjv93ACGo8": [1, 2], "abcdEFGhijk": [0, 1], "lmnoPQRstuv": [2, 3]}  # sorted names -> i, i+1
    assert {r["id"]: r["frame_indices"] for r in records} == {k: expected[v] for k, v in names.items()}
    assert {r["id"]: r["frame_indices"] for r in _lines(tmp_path / "p.jsonl")} == {
        k: expected[v] for k, v in names.items()
    }


def test_a_frame_plan_missing_a_video_is_refused_before_any_generation(items, video_root, tmp_path):
    plan = {str(video_root / "fFjv93ACGo8.mp4"): [0, 1], str(video_root / "abcdEFGhijk.mp4"): [2, 3]}
    backend = PlannedBackend(plan)
    out = tmp_path / "p.jsonl"
    with pytest.raises(UserError, match=r"chose no frames for 1 of 4 records: 601-1 \(.*lmnoPQRstuv.mp4\)"):
        run_evaluation(backend, items, EvalRunConfig(video_root), out)
    assert backend.calls == [] and not out.exists()


def test_planned_frames_keys_and_refusal(tmp_path, monkeypatch):
    from videoktr.eval.backends import frame_plan_key, planned_frames

    monkeypatch.chdir(tmp_path)
    assert frame_plan_key("videos/../videos/a.mp4") == frame_plan_key(tmp_path / "videos" / "a.mp4")
    assert planned_frames(None, "videos/a.mp4") is None  # no plan: the sampling picks the frames
    assert planned_frames({"./videos/a.mp4": [3, 5]}, tmp_path / "videos" / "a.mp4") == [3, 5]
    with pytest.raises(UserError, match="chose no frames for video videos/b.mp4"):
        planned_frames({"videos/a.mp4": [3, 5]}, "videos/b.mp4")


def test_hf_backend_keys_its_frame_plan_once(tmp_path, monkeypatch):
    from videoktr.eval.backends import HFBackend, frame_plan_key, planned_frames

    monkeypatch.chdir(tmp_path)
    backend = HFBackend(None, None, None, frame_indices={"./videos/a.mp4": [1, 2]})
    assert backend.frame_indices == {frame_plan_key(tmp_path / "videos" / "a.mp4"): [1, 2]}
    backend.frame_indices = {"videos/b.mp4": [0, 3]}  # as `videoktr eval --frame-selector` assigns it
    assert planned_frames(backend.frame_indices, tmp_path / "videos" / "b.mp4") == [0, 3]
    backend.frame_indices = None
    assert backend.frame_indices is None
