"""The `retrosearch` command line: one typer app, each command group in a module of its own.

Each module named in ``COMMAND_MODULES`` exposes ``register(app)``, which adds its commands; keeping the
list here makes `retrosearch --help` the single place a reader sees what the tool can do.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from retrostar_search import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "node",
    "index",
    "serve",
    "setup",
    "search",
    "eval",
    "warm",
    "doctor",
    "dashboards",
)


def _hide_flag_metavars(params: list[Any]) -> list[Any]:
    # A flag takes no value, so help shows none: typer would print `<bool>` beside each.
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


class Command(TyperCommand):
    """Every command's class: its help shows no value type beside a flag."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _hide_flag_metavars(super().get_params(ctx))


class Group(TyperGroup):
    """Every command group's class: its help shows no value type beside a flag."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _hide_flag_metavars(super().get_params(ctx))


app = typer.Typer(
    name="retrosearch",
    help="Retro* reranking for OpenSearch and Elasticsearch: serve the connector, run local nodes, "
    "index corpora, wire engines, search and evaluate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    cls=Group,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"retrosearch {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    pass  # the options are eager: they act in their callbacks


def _use_classes(typer_app: typer.Typer) -> None:
    """`Command` and `Group` for every command and group registered so far, however deep."""
    typer_app.info.cls = Group
    for command in typer_app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = Command
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _use_classes(group.typer_instance)


for _module_name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_module_name}").register(app)
_use_classes(app)


def main() -> None:
    app()
