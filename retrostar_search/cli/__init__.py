"""The `retrosearch` command line: one typer app, each command group in a module of its own.

Each module named in ``COMMAND_MODULES`` exposes ``register(app)``, which adds its commands; keeping the
list here makes `retrosearch --help` the single place a reader sees what the tool can do.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES: tuple[str, ...] = ("node", "index", "serve", "setup", "search", "eval", "warm", "dashboards")

app = typer.Typer(
    name="retrosearch",
    help="Retro* reranking for OpenSearch and Elasticsearch: serve the connector, run local nodes, "
    "index corpora, wire engines, search and evaluate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

for _module_name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_module_name}").register(app)


def main() -> None:
    app()
