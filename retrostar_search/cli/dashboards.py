"""`retrosearch dashboards export|import`: the rerank-log dashboard for OpenSearch Dashboards or Kibana."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape

from retrostar_search.dashboards import (
    DEFAULT_INDEX_PATTERN,
    DashboardsConnection,
    DashboardsImportError,
    ImportResult,
    Target,
    import_saved_objects,
    saved_objects,
    to_ndjson,
)

AUTH_PANEL = "Dashboards connection"

dashboards_app = typer.Typer(
    name="dashboards",
    help="Saved objects (index pattern, charts, a dashboard) that show the rerank log in OpenSearch "
    "Dashboards or Kibana.",
    no_args_is_help=True,
)

TargetOpt = Annotated[
    Target, typer.Option("--target", "-t", help="Which app the saved objects are for.", case_sensitive=False)
]
PatternOpt = Annotated[
    str,
    typer.Option(
        "--index-pattern", help="Index pattern over the rerank log's indices (the serve --log-index, then *)."
    ),
]

_out = Console()
_err = Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dashboards_app, name="dashboards")


def _fail(message: str) -> NoReturn:
    # Escaped: the message quotes the app's answer, whose brackets rich would take for markup.
    _err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(1)


@dashboards_app.command("export")
def export_command(
    target: TargetOpt = Target.OPENSEARCH_DASHBOARDS,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="File to write (default: standard output).")
    ] = None,
    index_pattern: PatternOpt = DEFAULT_INDEX_PATTERN,
) -> None:
    """Write the saved objects as NDJSON, ready for the app's Saved Objects import (UI or API)."""
    objects = saved_objects(target, index_pattern)
    ndjson = to_ndjson(objects)
    if out is None:
        typer.echo(ndjson, nl=False)
        return
    out.write_text(ndjson, encoding="utf-8")
    _err.print(
        f"wrote {len(objects)} saved objects for {target.value} to {escape(str(out))}", highlight=False
    )


@dashboards_app.command("import")
def import_command(
    url: Annotated[
        str,
        typer.Option(
            "--url", envvar="RETROSEARCH_DASHBOARDS_URL", help="Base URL of the app, e.g. http://host:5601."
        ),
    ],
    target: TargetOpt = Target.OPENSEARCH_DASHBOARDS,
    index_pattern: PatternOpt = DEFAULT_INDEX_PATTERN,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            exists=True,
            dir_okay=False,
            help="Import this NDJSON (from export) instead of generating.",
        ),
    ] = None,
    username: Annotated[
        str | None,
        typer.Option(
            "--username",
            envvar="RETROSEARCH_DASHBOARDS_USERNAME",
            help="Basic-auth user.",
            rich_help_panel=AUTH_PANEL,
        ),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            envvar="RETROSEARCH_DASHBOARDS_PASSWORD",
            help="Basic-auth password (prefer the environment variable).",
            show_default=False,
            rich_help_panel=AUTH_PANEL,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="RETROSEARCH_DASHBOARDS_API_KEY",
            help="API key, sent as 'Authorization: ApiKey ...' (Kibana).",
            show_default=False,
            rich_help_panel=AUTH_PANEL,
        ),
    ] = None,
    ca_certs: Annotated[
        Path | None,
        typer.Option(
            "--ca-certs",
            exists=True,
            dir_okay=False,
            help="CA bundle to verify https.",
            rich_help_panel=AUTH_PANEL,
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify https certificates.", rich_help_panel=AUTH_PANEL)
    ] = False,
) -> None:
    """Import the saved objects through the Saved Objects API, replacing earlier copies."""
    if username is not None and api_key is not None:
        raise typer.BadParameter("give either --username/--password or --api-key, not both")
    connection = DashboardsConnection(
        url=url,
        username=username,
        password=SecretStr(password) if password is not None else None,
        api_key=SecretStr(api_key) if api_key is not None else None,
        ca_certs=str(ca_certs) if ca_certs else None,
        verify_certs=not insecure,
    )
    ndjson = file.read_text(encoding="utf-8") if file else to_ndjson(saved_objects(target, index_pattern))
    try:
        result = import_saved_objects(connection, target, ndjson)
    except DashboardsImportError as error:
        _fail(str(error))
    _report(result, connection.display_url)
    if not result.success:
        raise typer.Exit(1)


def _report(result: ImportResult, url: str) -> None:
    if result.success:
        _out.print(f"imported {result.success_count} saved objects into {escape(url)}", highlight=False)
        return
    # One plain line per object: this often runs in a container's log, where tables wrap badly.
    for failure in result.failures:
        title = f" ({failure.title})" if failure.title else ""
        line = f"  {failure.object_type} {failure.object_id}{title}: {failure.reason}"
        _err.print(escape(line), highlight=False)
    _fail(f"{len(result.failures)} saved objects failed, {result.success_count} imported")
