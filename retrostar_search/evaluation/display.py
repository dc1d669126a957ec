"""What `retrosearch eval` shows on the terminal: progress while queries run (a bar at a terminal, plain
lines on stderr elsewhere, as indexing does), then the table, what reranked and under which task."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from index_tools.progress import FixedTotal, Units, run_progress
from retrostar_search.evaluation.summary import EvalSummary

QUERY_UNITS = Units(doing="eval", things="queries", rate="queries/s")


@contextmanager
def query_progress(console: Console, total: int) -> Iterator[Callable[[], None]]:
    """Progress over the queries, as indexing and warming show theirs; yields the callback that marks one
    query done."""
    with run_progress(console, FixedTotal(total), QUERY_UNITS) as advance:
        yield lambda: advance(1)


def print_summary(console: Console, summary: EvalSummary) -> None:
    """metric | first stage | reranked | delta, then what reranked and where the files are."""
    table = Table(
        title=escape(f"{summary.collection} · {len(summary.per_query)} queries"), title_justify="left"
    )
    table.add_column("metric")
    table.add_column("first stage", justify="right")
    if summary.reranked is not None:
        table.add_column("reranked", justify="right")
        table.add_column("delta", justify="right")
    for name in summary.metrics:
        row = [name, f"{summary.first_stage[name]:.4f}"]
        if summary.reranked is not None and summary.delta is not None:
            row += [f"{summary.reranked[name]:.4f}", _delta(summary.delta[name])]
        table.add_row(*row)
    console.print(table)
    rerank = summary.settings.get("rerank")
    if rerank:
        details = ", ".join(f"{key} {value}" for key, value in rerank.items() if key != "task")
        console.print(escape(f"reranked: {details}"), highlight=False)
        task = rerank.get("task")
        if isinstance(task, dict):
            # What "relevant" meant to Retro* for these figures.
            console.print(escape(f"task {task['name']}: {task['relevance_definition']}"), highlight=False)
        elif task:
            console.print(escape(f"task: {task}"), highlight=False)
        if rerank.get("backend") == "cpu":
            console.print(
                "[bold yellow]the cpu backend is a lexical fallback, NOT Retro*: "
                "these are not Retro* figures[/]"
            )
        if summary.pairs_scored is not None:
            console.print(
                f"model calls: {summary.pairs_scored:,} pairs scored, {summary.cache_hits:,} from the cache"
            )
    folder = Path(summary.outputs["summary"]).parent
    console.print(f"{summary.seconds:,.1f} s · results in {escape(str(folder))}/", highlight=False)


def _delta(value: float) -> str:
    text = f"{value:+.4f}"
    if value > 0:
        return f"[green]{text}[/]"
    return f"[red]{text}[/]" if value < 0 else text
