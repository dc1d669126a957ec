"""Progress of a long run (indexing a corpus, warming the score cache): a live bar at a terminal, plain
lines on stderr everywhere else.

A run whose output goes to a file or a pipe (CI, ``nohup``, ``| tee``) gets no live bar, which would
only be drawn once at the end; it gets a line every ``PLAIN_INTERVAL_SECONDS`` instead, so a long run is
never silent. For indexing the total comes from the corpus: an exact count where it is cheap (plain
files, parquet, folders), else an estimate from the share of compressed bytes read (gzip), shown with
``≈``; a run that knows its count up front (`FixedTotal`) shows it as is.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from index_tools.readers import Corpus

PLAIN_INTERVAL_SECONDS = 10.0


class Total(Protocol):
    """What a progress line knows of the total: the count as now known, and how to print progress."""

    @property
    def estimated(self) -> bool: ...

    def current(self, done: int) -> int | None: ...

    def label(self, done: int) -> str: ...


class FixedTotal:
    """A total known from the start (the queries of an evaluation or a warm-up)."""

    estimated = False

    def __init__(self, count: int) -> None:
        self.count = count

    def current(self, done: int) -> int:
        return max(self.count, done)

    def label(self, done: int) -> str:
        return f"{done:,}/{self.current(done):,}"


class RecordTotal:
    """How many records a run expects: the corpus's count, or its running estimate while reading."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.exact = corpus.size_hint()

    @property
    def estimated(self) -> bool:
        return self.exact is None

    def current(self, done: int) -> int | None:
        """The total as now known; never below what is already done."""
        total = self.exact if self.exact is not None else self.corpus.estimated_total()
        return None if total is None else max(total, done)

    def label(self, done: int) -> str:
        total = self.current(done)
        if total is None:
            return f"{done:,}"
        return f"{done:,}/{'≈' if self.estimated else ''}{total:,}"


@dataclass(frozen=True)
class Units:
    """How a progress line names its work: "indexing: 1,000/5,000 records (20%), 310 docs/s, ..."."""

    doing: str = "indexing"
    things: str = "records"
    rate: str = "docs/s"


INDEXING = Units()


class _CountColumn(ProgressColumn):
    def __init__(self, total: Total) -> None:
        super().__init__()
        self.total = total

    def render(self, task: Task) -> Text:
        return Text(self.total.label(int(task.completed)), style="progress.download")


# Rate and time left from the average since the start: rich's own estimates restart whenever the total
# changes, which an estimated total does at every step.
class _RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        rate = _rate(task)
        return Text(_rate_text(rate, self.unit) if rate else f"- {self.unit}", style="progress.data.speed")


class _TimeLeftColumn(ProgressColumn):
    def __init__(self, total: Total) -> None:
        super().__init__()
        self.total = total

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        total, rate = self.total.current(done), _rate(task)
        left = _duration((total - done) / rate) if total is not None and rate else "-:--:--"
        return Text(f"ETA {left}", style="progress.remaining")


def _rate(task: Task) -> float:
    elapsed = task.elapsed
    return task.completed / elapsed if elapsed else 0.0


def _rate_text(rate: float, unit: str) -> str:
    # A decimal below 10/s: a warm-up or an evaluation with Retro* runs a query or two a second.
    return f"{rate:,.{0 if rate >= 10 else 1}f} {unit}"


@contextmanager
def live_bar(console: Console, total: Total, units: Units = INDEXING) -> Iterator[Callable[[int], None]]:
    """A progress bar of things done (records indexed or rejected), with their rate and an ETA once a
    total is known."""
    columns: list[ProgressColumn] = [
        TextColumn(f"[bold]{units.doing}"),
        BarColumn(),
        _CountColumn(total),
        _RateColumn(units.rate),
        TimeElapsedColumn(),
        _TimeLeftColumn(total),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(units.doing, total=total.current(0))

        def advance(done: int) -> None:
            progress.advance(task, done)
            if total.estimated:
                progress.update(task, total=total.current(int(progress.tasks[0].completed)))

        yield advance
        # The total is an estimate (blank lines, CSV records spanning lines): end the bar where the run ended.
        progress.update(task, total=progress.tasks[0].completed)


class PlainProgress:
    """A plain line on ``stream`` at the start, every ``interval`` seconds, and at the end."""

    def __init__(
        self,
        stream: TextIO,
        total: Total,
        interval: float = PLAIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        units: Units = INDEXING,
    ) -> None:
        self.stream, self.total, self.units = stream, total, units
        self.interval = interval
        self.clock = clock
        self.done = 0
        self.started = clock()
        self.next_line = self.started + interval

    def advance(self, done: int) -> None:
        self.done += done
        now = self.clock()
        if now >= self.next_line:
            self.write(now)
            self.next_line = now + self.interval

    def write(self, now: float | None = None) -> None:
        elapsed = (self.clock() if now is None else now) - self.started
        units = self.units
        line = f"{units.doing}: {self.total.label(self.done)} {units.things}"
        total = self.total.current(self.done)
        if total:
            line += f" ({100 * self.done / total:.0f}%)"
        if self.done:
            rate = self.done / elapsed if elapsed > 0 else 0.0
            line += f", {_rate_text(rate, units.rate)}, {_duration(elapsed)} elapsed"
            if total and rate and self.done < total:
                line += f", about {_duration((total - self.done) / rate)} left"
        print(line, file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


@contextmanager
def plain_lines(
    stream: TextIO, total: Total, interval: float = PLAIN_INTERVAL_SECONDS, units: Units = INDEXING
) -> Iterator[Callable[[int], None]]:
    progress = PlainProgress(stream, total, interval, units=units)
    progress.write()
    yield progress.advance
    progress.write()


@contextmanager
def run_progress(console: Console, total: Total, units: Units) -> Iterator[Callable[[int], None]]:
    """Progress of a run: a live bar when ``console`` is a terminal, else plain lines on stderr (the
    summary stays on ``console``). Yields the callback that adds the things done."""
    if console.is_terminal:
        with live_bar(console, total, units) as advance:
            yield advance
    else:
        with plain_lines(sys.stderr, total, units=units) as advance:
            yield advance


def indexing_progress(console: Console, corpus: Corpus) -> AbstractContextManager[Callable[[int], None]]:
    """Progress for ``index_corpus``'s ``on_progress``."""
    return run_progress(console, RecordTotal(corpus), INDEXING)
