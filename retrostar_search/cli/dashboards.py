"""`retrosearch dashboards export|import`: the rerank-log dashboard for OpenSearch Dashboards or Kibana."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from connector.settings import CONFIG_ENV_VAR
from retrostar_search.cli.connection import ConnectionOptions, connection_options
from retrostar_search.cli.errors import fail
from retrostar_search.dashboards import (
    DashboardsConnection,
    DashboardsImportError,
    ImportResult,
    Target,
    import_saved_objects,
    saved_objects,
    to_ndjson,
)
from retrostar_search.errors import ExitCode
from retrostar_search.rerank_log.settings import DEFAULT_LOG_INDEX

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
    str | None,
    typer.Option(
        "--index-pattern",
        help="Index pattern over the rerank log's indices \\[default: the log index, then *].",
        show_default=False,
    ),
]
LogIndexOpt = Annotated[
    str | None,
    typer.Option(
        "--log-index",
        help="The connector's --log-index: the prefix of the log's daily indices \\[default: the serve "
        f"config file's log_index, else {DEFAULT_LOG_INDEX}].",
        envvar="RETROSEARCH_LOG_INDEX",
        show_default=False,
    ),
]
ServeConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The connector's TOML config file, read for its log_index.",
        envvar=CONFIG_ENV_VAR,
        exists=True,
        dir_okay=False,
    ),
]

_out = Console()
_err = Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dashboards_app, name="dashboards")


def log_index_pattern(index_pattern: str | None, log_index: str | None, config: Path | None) -> str:
    """The pattern the saved objects read: as given, else over the log index the connector writes (its
    --log-index, its RETROSEARCH_LOG_INDEX, its config file's log_index), else the default's."""
    if index_pattern:
        return index_pattern
    if log_index is None and config is not None:
        try:
            log_index = tomllib.loads(config.read_text(encoding="utf-8")).get("log_index")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise typer.BadParameter(f"{config} is not valid TOML: {error}", param_hint="--config") from None
    return f"{log_index or DEFAULT_LOG_INDEX}*"


@dashboards_app.command("export")
def export_command(
    target: TargetOpt = Target.OPENSEARCH_DASHBOARDS,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="File to write (default: standard output).")
    ] = None,
    index_pattern: PatternOpt = None,
    log_index: LogIndexOpt = None,
    config: ServeConfigOpt = None,
) -> None:
    """Write the saved objects as NDJSON, ready for the app's Saved Objects import (UI or API)."""
    objects = saved_objects(target, log_index_pattern(index_pattern, log_index, config))
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
    index_pattern: PatternOpt = None,
    log_index: LogIndexOpt = None,
    config: ServeConfigOpt = None,
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
    pattern = log_index_pattern(index_pattern, log_index, config)
    ndjson = file.read_text(encoding="utf-8") if file else to_ndjson(saved_objects(target, pattern))
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
