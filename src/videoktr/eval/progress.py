"""Where a long job is: items done / total (resumed ones included), items per second, failures so far, time left.

On a terminal: a rich progress bar (as the demo's). Otherwise (a log file, a batch job): one plain line on stderr
every ``every_percent`` percent and at the end, e.g.
``eval videomme: 270/2700 (10%) 0.42 items/s, 3 failures, ETA 1h36m``; the last one says how long the run took
(``... 2700/2700 (100%) 0.43 items/s, 5 failures, took 1h44m``). Used by ``videoktr eval`` and
``videoktr ablate``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressReport:
    """A context manager; call :meth:`advance` after each finished unit (``failures``: how many of them failed).

    ``total``: all units of the job; ``done``: units already finished before this run (resumed), shown as done
    but not used for the rate. ``interactive``: force the rich bar (True) or plain lines (False); default: the
    bar when ``stream`` is a terminal. ``every_percent`` <= 0: a plain line after every :meth:`advance`.
    """

    def __init__(self, label: str, total: int, done: int = 0, *, unit: str = "items", every_percent: float = 5.0,
                 stream: TextIO | None = None, interactive: bool | None = None):  # fmt: skip
        self.label, self.total, self.done, self.unit = label, total, done, unit
        self.resumed, self.failures, self.every = done, 0, every_percent
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._start = time.perf_counter()
        self._next_percent = 0.0
        self._bar: Any = None
        self._printed = -1

    def __enter__(self) -> ProgressReport:
        self._start = time.perf_counter()
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}, {task.fields[fails]}, {task.fields[eta]}"),
                console=Console(file=self.stream), transient=False,
            )  # fmt: skip
            self._bar.start()
            label = f"{self.label} ({self.resumed} resumed)" if self.resumed else self.label
            self._task = self._bar.add_task(label, total=self.total, completed=self.done, **self._fields())
        else:
            self._next_percent = self._percent() + self.every
            self._line(start=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, **self._fields())  # "took ..." once finished
            self._bar.stop()
        elif self._printed != self.done:
            self._line()

    def _percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0

    def rate(self) -> float | None:
        """Units per second over the units finished by this run (resumed ones excluded)."""
        elapsed, new = time.perf_counter() - self._start, self.done - self.resumed
        return new / elapsed if new and elapsed > 0 else None

    def eta(self) -> float | None:
        rate = self.rate()
        return (self.total - self.done) / rate if rate else None

    def _fields(self) -> dict[str, str]:
        rate = self.rate()
        if not rate:
            shown = f"- {self.unit}/s"
        elif rate >= 0.1:
            shown = f"{rate:.2f} {self.unit}/s"
        else:  # slow units (an ablation run): seconds per unit reads better than 0.00/s
            shown = f"{1 / rate:.0f} s per {self.unit.rstrip('s')}"
        eta = self.eta()
        if self.done >= self.total:
            when = f"took {_duration(time.perf_counter() - self._start)}"
        else:
            when = f"ETA {_duration(eta)}" if eta is not None else "ETA -"
        return {
            "rate": shown,
            "fails": f"{self.failures} failure{'' if self.failures == 1 else 's'}",
            "eta": when,
        }

    def _line(self, start: bool = False) -> None:
        text = f"{self.label}: {self.done}/{self.total} ({self._percent():.0f}%)"
        if start:
            text += f", {self.resumed} resumed" if self.resumed else ""
        else:
            fields = self._fields()
            text += f" {fields['rate']}, {fields['fails']}" + (
                f", {fields['eta']}" if fields["eta"] != "ETA -" else ""
            )
        print(text, file=self.stream, flush=True)
        self._printed = self.done

    def advance(self, n: int = 1, failures: int = 0) -> None:
        self.done += n
        self.failures += failures
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, **self._fields())
            return
        if self.every <= 0 or self._percent() >= self._next_percent or self.done >= self.total:
            while 0 < self.every and self._next_percent <= self._percent():
                self._next_percent += self.every
            self._line()
