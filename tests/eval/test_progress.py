import io

from videoktr.eval.progress import ProgressReport


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_plain_lines_every_few_percent_with_resumed_rate_failures_and_eta(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("videoktr.eval.progress.time.perf_counter", clock)
    stream = io.StringIO()
    # 40 items, 10 of them resumed; lines every 25%: at 10/40 (start), then when crossing 50%, 75%, 100%
    with ProgressReport(
        "eval videomme", 40, 10, every_percent=25, stream=stream, interactive=False
    ) as report:
        for step in range(30):
            clock.now += 2.0  # one item every 2 s -> 0.50 items/s
            report.advance(1, failures=int(step == 3))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "eval videomme: 10/40 (25%), 10 resumed"
    # 50% = 20/40 after 10 new items in 20 s: rate 0.5/s (resumed ones not counted), 20 left -> 40 s
    assert lines[1] == "eval videomme: 20/40 (50%) 0.50 items/s, 1 failure, ETA 40s"
    assert lines[2].startswith("eval videomme: 30/40 (75%)")
    # the last line says how long this run took (30 new items, 2 s each), not "ETA 0s"
    assert lines[-1] == "eval videomme: 40/40 (100%) 0.50 items/s, 1 failure, took 1m00s"
    assert len(lines) == 4  # nothing printed twice at the end


def test_every_advance_for_slow_units(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("videoktr.eval.progress.time.perf_counter", clock)
    stream = io.StringIO()
    with ProgressReport(
        "ablate", 24, 2, unit="runs", every_percent=0, stream=stream, interactive=False
    ) as report:
        clock.now += 600
        report.advance(1)
    assert stream.getvalue().splitlines()[-1] == "ablate: 3/24 (12%) 600 s per run, 0 failures, ETA 3h30m"


def test_rich_bar_when_interactive():
    stream = io.StringIO()
    with ProgressReport("eval", 3, 1, stream=stream, interactive=True) as report:
        report.advance(2, failures=1)
    shown = stream.getvalue()
    assert "3/3" in shown and "1 failure," in shown and "took 0s" in shown and "eval (1 resumed)" in shown
