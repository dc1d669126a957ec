"""The `retrosearch` command line: one typer app, each command group in a module of its own.

Each module named in ``COMMANDS`` exposes ``register(app)``, which adds its commands; keeping the list here
makes it the single place a reader sees what the tool can do. A module is imported only when one of its
commands runs or shows its help, and `retrosearch --help` lists the commands from their summaries here, so
no command pays for another's imports: `retrosearch index` never loads the connector's web stack or the
evaluation's metrics (bench/startup.py measures it; tests/test_cli_startup.py keeps it so, and checks that
each summary is the first paragraph of the command's own help).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated, Any, TypeAlias

import typer
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True, slots=True)
class CommandEntry:
    module: str  # under retrostar_search.cli; its register(app) adds the command
    summary: str  # what `retrosearch --help` shows: the first paragraph of the command's help


# In `retrosearch --help` order.
COMMANDS: dict[str, CommandEntry] = {
    "index": CommandEntry("index", "Index a corpus for BM25 retrieval and Retro* reranking."),
    "serve": CommandEntry(
        "serve", "Serve the Retro* rerank connector (Cohere- and TEI-compatible) over HTTP."
    ),
    "search": CommandEntry(
        "search",
        "Search an index and show how Retro* reorders the hits; exit 3 if the rerank left any unscored.",
    ),
    "eval": CommandEntry(
        "eval", "Evaluate first-stage BM25 against Retro* reranking on a BEIR or BRIGHT collection."
    ),
    "warm": CommandEntry(
        "warm", "Score the searches of a query list into the cache, so that they call no model afterwards."
    ),
    "doctor": CommandEntry(
        "doctor",
        "Check the chain a reranked search takes: engine, index, pipeline, model, connector, backend, task.",
    ),
    "node": CommandEntry(
        "node",
        "Run a local single-node OpenSearch (with ML Commons, neural-search, k-NN) or Elasticsearch, "
        "provisioned from Maven Central with mvn and cached for offline restarts.",
    ),
    "setup": CommandEntry("setup", "Wire the Retro* rerank connector into a search engine."),
    "teardown": CommandEntry("setup", "Remove what `retrosearch setup` made."),
    "dashboards": CommandEntry(
        "dashboards",
        "Saved objects (index pattern, charts, a dashboard) that show the rerank log in OpenSearch "
        "Dashboards or Kibana.",
    ),
}


# click's Context and Command: recent typer releases vendor click, so their classes depend on typer's version.
_Context: TypeAlias = Any
_Command: TypeAlias = Any


def _hide_flag_metavars(params: list[Any]) -> list[Any]:
    # A flag takes no value, so help shows none: typer would print `<bool>` beside each.
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


class Command(TyperCommand):
    """Every command's class: its help shows no value type beside a flag."""

    def get_params(self, ctx: _Context) -> list[Any]:
        return _hide_flag_metavars(super().get_params(ctx))


class Group(TyperGroup):
    """Every command group's class: its help shows no value type beside a flag."""

    def get_params(self, ctx: _Context) -> list[Any]:
        return _hide_flag_metavars(super().get_params(ctx))


def _use_classes(typer_app: typer.Typer) -> None:
    """`Command` and `Group` for every command and group registered so far, however deep."""
    typer_app.info.cls = Group
    for command in typer_app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = Command
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _use_classes(group.typer_instance)


class LazyCommands(Group):
    """The top-level group: a command's module is imported the first time the command is looked up; the
    group's own help lists stand-ins that carry only the name and the summary."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._listing = False

    def list_commands(self, ctx: _Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: _Context, cmd_name: str) -> _Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        if self._listing:
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name].summary)
        registered = typer.Typer()
        importlib.import_module(f"{__name__}.{COMMANDS[cmd_name].module}").register(registered)
        _use_classes(registered)
        for name, command in typer.main.get_group(registered).commands.items():
            self.add_command(command, name)
        return self.commands[cmd_name]

    def format_help(self, ctx: _Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: _Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            # What a command did not report itself still ends as one line and the exit code of its kind,
            # never a traceback: an optional extra missing wherever an option or a file format needs it
            # (exit 4, with the extra to install), an engine client's error a command did not expect.
            from rich.console import Console

            from retrostar_search.cli.errors import command_errors, fail

            if not isinstance(error, command_errors()):
                raise
            fail(Console(stderr=True), error)


def _print_version(given: bool) -> None:
    if given:
        from retrostar_search import __version__

        typer.echo(f"retrosearch {__version__}")
        raise typer.Exit()


def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Retro* reranking for OpenSearch and Elasticsearch: serve the connector, run local nodes, index
    corpora, wire engines, search and evaluate."""


app = typer.Typer(
    name="retrosearch",
    cls=LazyCommands,
    callback=_options,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def main() -> None:
    app()
