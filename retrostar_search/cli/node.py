"""`retrosearch node start|stop|status|logs`: a local single-node engine for demos and tests."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.table import Table

from retrostar_search.cli.errors import fail
from retrostar_search.engines.connection import Engine
from retrostar_search.errors import ExitCode
from retrostar_search.nodes import (
    DEFAULT_HEAP,
    DEFAULT_START_TIMEOUT_S,
    VERSIONS,
    NodeError,
    NodeInfo,
    ensure_node,
    node_log,
    node_status,
    stop_node,
)

node_app = typer.Typer(
    name="node",
    help="Run a local single-node OpenSearch (with ML Commons, neural-search, k-NN) or Elasticsearch, "
    "provisioned from Maven Central with mvn and cached for offline restarts.",
    no_args_is_help=True,
)

EngineOpt = Annotated[Engine, typer.Option("--engine", "-e", help="Which engine.")]
PortOpt = Annotated[
    int | None,
    typer.Option(
        "--port",
        "-p",
        help="HTTP port (default 9200 for opensearch, 9201 for elasticsearch); transport uses port + 100.",
        show_default=False,
    ),
]

VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version",
        "-V",
        help="Engine version: opensearch "
        + ", ".join(VERSIONS[Engine.OPENSEARCH])
        + "; elasticsearch "
        + ", ".join(VERSIONS[Engine.ELASTICSEARCH])
        + ". \\[default: the first of each, whose whole pipeline runs here; for stop, status and "
        "logs, the version on that port]",
        show_default=False,
    ),
]

_out = Console()
# soft_wrap keeps an error on one line however narrow the terminal.
_err = Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")


@node_app.command()
def start(
    engine: EngineOpt = Engine.OPENSEARCH,
    port: PortOpt = None,
    version: VersionOpt = None,
    heap: Annotated[str, typer.Option(help="JVM heap, both -Xms and -Xmx.")] = DEFAULT_HEAP,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for a yellow cluster.")
    ] = DEFAULT_START_TIMEOUT_S,
) -> None:
    """Start the node (provisioning it on first use); says so and succeeds if it already runs."""
    with _node_errors(), _out.status(f"starting {engine.value}…") as status:
        info = ensure_node(engine, port, heap, version=version, timeout_s=timeout, report=status.update)
    if info.started_by_us:
        _out.print(f"[green]{engine.value} {info.version} started[/] in {info.start_seconds:.1f} s")
    else:
        _out.print(f"{engine.value} {info.version} is already running at {info.url}; nothing to do")
    _out.print(_info_table(info))


@node_app.command()
def stop(engine: EngineOpt = Engine.OPENSEARCH, port: PortOpt = None, version: VersionOpt = None) -> None:
    """Stop the node and wait until none of its processes is left."""
    with _node_errors():
        stopped = stop_node(engine, port, version)
    _out.print(f"{engine.value} stopped" if stopped else f"{engine.value} was not running")


@node_app.command()
def status(engine: EngineOpt = Engine.OPENSEARCH, port: PortOpt = None, version: VersionOpt = None) -> None:
    """Show whether the node runs, with version and plugins (exit status 3 when stopped)."""
    with _node_errors():
        state = node_status(engine, port, version)
    if state.info is not None:
        _out.print(f"[green]running[/] {engine.value} at {state.url}")
        _out.print(_info_table(state.info))
        return
    if state.pid is not None:
        _out.print(
            f"[yellow]starting[/] {engine.value} (pid {state.pid}) is not answering at {state.url} yet"
        )
        return
    _out.print(
        f"[red]stopped[/] {engine.value} {state.version} (would listen on {state.url}; folder {state.home})"
    )
    raise typer.Exit(ExitCode.INCOMPLETE)  # LSB init scripts' "not running"


@node_app.command()
def logs(
    engine: EngineOpt = Engine.OPENSEARCH,
    port: PortOpt = None,
    version: VersionOpt = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines from the end.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
) -> None:
    """Print the end of the node's console log (its current or last run)."""
    with _node_errors():
        path = node_log(engine, port, version)
    if not path.exists():
        fail(_err, NodeError(f"no log at {path}: the {engine.value} node on this port was never started"))
    with path.open(errors="replace") as log:
        # The deque reads to the end, which is where following picks up.
        for line in deque(log, maxlen=max(lines, 0)):
            print(line, end="")
        if follow:
            _follow(path, log)


@contextmanager
def _node_errors() -> Iterator[None]:
    """A NodeError ends the command with its one-line message."""
    try:
        yield
    except NodeError as exc:
        fail(_err, exc)


def _follow(path: Path, handle: TextIO) -> None:
    """Print lines as they arrive; a restart truncates the log, so reopen when it shrinks."""
    try:
        while True:
            line = handle.readline()
            if line:
                print(line, end="", flush=True)
            elif path.exists() and path.stat().st_size < handle.tell():
                handle.close()
                handle = path.open(errors="replace")
            else:
                time.sleep(0.5)
    except KeyboardInterrupt:
        return
    finally:
        handle.close()


def _info_table(info: NodeInfo) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # paths are copied from here: never elide them
    table.add_row("url", info.url)
    table.add_row("version", f"{info.engine.value} {info.version}")
    table.add_row("health", info.health)
    table.add_row("plugins", ", ".join(info.plugins) or "(none)")
    table.add_row("pid", str(info.pid))
    table.add_row("folder", str(info.home))
    table.add_row("log", str(info.log_file))
    return table
