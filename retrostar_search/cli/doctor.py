"""`retrosearch doctor`: check every link a reranked search goes through and say what to do about each one
that fails. Exit 0 when nothing failed (warnings included), 1 otherwise."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from retrostar_search.cli.connection import ENGINE, connection_options
from retrostar_search.cli.errors import display_url
from retrostar_search.cli.search import (
    ClientSideOpt,
    ConnectorApiKeyOpt,
    ConnectorTimeoutOpt,
    ConnectorUrlOpt,
    FieldsOpt,
    JsonOpt,
    PipelineOpt,
)
from retrostar_search.doctor import Diagnosis, Status, diagnose
from retrostar_search.engines.connection import EngineConnection
from retrostar_search.engines.connector_endpoint import split_fields
from retrostar_search.engines.search import ConnectorClient
from retrostar_search.errors import ExitCode

_STYLES = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.SKIPPED: "dim"}


@connection_options(ENGINE)
def doctor(
    *,
    index: Annotated[str | None, typer.Option(help="Index to check (its documents and fields).")] = None,
    fields: FieldsOpt = "title,text",
    pipeline: PipelineOpt = "retrostar",
    client_side: ClientSideOpt = False,
    connector_url: ConnectorUrlOpt = "http://127.0.0.1:8000",
    connector_api_key: ConnectorApiKeyOpt = None,
    connector_timeout: ConnectorTimeoutOpt = 10.0,
    as_json: JsonOpt = False,
    connection: EngineConnection,
) -> None:
    """Check the chain a reranked search takes: engine, index, pipeline, model, connector, backend, task."""
    with ConnectorClient(connector_url, connector_api_key, connector_timeout) as connector:
        diagnosis = diagnose(
            connection.client(),
            connection.engine,
            display_url(connection),
            index=index,
            fields=split_fields(fields),
            pipeline=pipeline,
            client_side=client_side,
            connector=connector,
        )
    if as_json:
        print(json.dumps(diagnosis.to_dict(), ensure_ascii=False, indent=2))
    else:
        print_diagnosis(Console(highlight=False), diagnosis, connection)
    if not diagnosis.ok:
        raise typer.Exit(ExitCode.FAILED)


def print_diagnosis(console: Console, diagnosis: Diagnosis, connection: EngineConnection) -> None:
    title = f"the {diagnosis.path} rerank path of {connection.engine.value} at {display_url(connection)}"
    table = Table(title=escape(title), title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail")
    table.add_column("what to do")
    for check in diagnosis.checks:
        style = _STYLES[check.status]
        table.add_row(
            escape(check.name),
            f"[{style}]{check.status.value}[/]",
            escape(check.detail),
            escape(check.fix or ""),
        )
    console.print(table)
    failed = [check.name for check in diagnosis.checks if check.status is Status.FAIL]
    if failed:
        console.print(f"[bold red]{len(failed)} failed:[/] {escape(', '.join(failed))}")
    else:
        console.print("[green]every link answered[/]")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
