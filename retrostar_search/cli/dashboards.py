"""`retrosearch dashboards export|import`: the rerank-log dashboard for OpenSearch Dashboards or Kibana."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from retrostar_search.cli.connection import ConnectionOptions, connection_options
from retrostar_search.cli.errors import fail
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
from retrostar_search.errors import ExitCode

DASHBOARDS = ConnectionOptions(
    model=DashboardsConnection,
    env_prefix="RETROSEARCH_DASHBOARDS",
    panel="Dashboards connection",
    url_help="Base URL of the app, e.g. http://host:5601.",
    url_required=True,
    url_in_panel=False,
    api_key_help="API key, sent as 'Authorization: ApiKey ...' (Kibana).",
)

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
@connection_options(DASHBOARDS)
def import_command(
    *,
    connection: DashboardsConnection,
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
) -> None:
    """Import the saved objects through the Saved Objects API, replacing earlier copies."""
    ndjson = file.read_text(encoding="utf-8") if file else to_ndjson(saved_objects(target, index_pattern))
    try:
        result = import_saved_objects(connection, target, ndjson)
    except DashboardsImportError as error:
        fail(_err, error, connection=connection)
    _report(result, connection.display_url)


def _report(result: ImportResult, url: str) -> None:
    if result.success:
        _out.print(f"imported {result.success_count} saved objects into {escape(url)}", highlight=False)
        return
    # One plain line per object: this often runs in a container's log, where tables wrap badly.
    for failure in result.failures:
        title = f" ({failure.title})" if failure.title else ""
        line = f"  {failure.object_type} {failure.object_id}{title}: {failure.reason}"
        _err.print(escape(line), highlight=False)
    _err.print(
        f"[bold red]error:[/] {len(result.failures)} saved objects failed, {result.success_count} imported",
        highlight=False,
    )
    raise typer.Exit(ExitCode.INCOMPLETE)
