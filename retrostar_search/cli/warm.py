"""`retrosearch warm QUERIES --index INDEX`: score the searches of a query list into the score cache before
anyone asks, so that those searches (through the OpenSearch pipeline, or client-side) call no model.

In this process by default, with the reranker `retrosearch serve` builds from the same settings (its
options below, its `RETROSEARCH_*` environment, its `--config` file): give it the connector's cache
(`--cache-path`, the connector's sqlite file, or the shared cache server). Or through a running connector
(`--connector-url`), which fills its own cache. What it runs: retrostar_search/warming.py; how to use it:
docs/scale-out.md.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from index_tools.progress import FixedTotal, Units, run_progress
from index_tools.readers import QueryFormat
from retrostar_search.cli.connection import ENGINE, connection_options, open_engine
from retrostar_search.cli.errors import command_errors, fail, scrub
from retrostar_search.cli.options import in_panel, set_signature
from retrostar_search.cli.serve import RERANKER_PANELS, load_settings, setting_options
from retrostar_search.engines.connection import EngineConnection
from retrostar_search.engines.connector_endpoint import split_fields
from retrostar_search.engines.search import ConnectorClient
from retrostar_search.errors import ExitCode, InvalidInput, SearchError
from retrostar_search.evaluation.legs import LegOpener, open_connector_leg, open_in_process_leg
from retrostar_search.factory import check_extras
from retrostar_search.warming import (
    DEFAULT_CANDIDATES,
    DEFAULT_CONCURRENCY,
    WarmSummary,
    plan_warming,
    require_shared_cache,
    warm_cache,
)

WARMING = Units(doing="warming", things="queries", rate="queries/s")
_queries, _run, _connector = in_panel("Queries"), in_panel("Run"), in_panel("Through a running connector")
_NOT_SHOWN = {"show_default": False}

QueriesArg = Annotated[
    Path,
    typer.Argument(
        help='The queries: a BEIR folder or its queries.jsonl, JSON Lines of {"_id", "text"}, or TSV '
        "id<TAB>text."
    ),
]
IndexOpt = Annotated[str, _queries("Index the searches run on.", "--index", "-i")]
FormatOpt = Annotated[QueryFormat, _queries("Layout of QUERIES (auto: from its name).", "--format", "-f")]
CandidatesOpt = Annotated[
    int, _run("First-stage hits scored per query: the size your searches rerank.", min=1)
]
FieldsOpt = Annotated[
    str,
    _run("Comma-separated fields searched and reranked: the `setup opensearch --fields` of the pipeline."),
]
ConcurrencyOpt = Annotated[
    int, _run("Queries in flight at once, each with all its pairs (the backend bounds the pairs).", min=1)
]
ConfigOpt = Annotated[
    Path | None,
    _run(
        "The `retrosearch serve` TOML config the connector runs with (in-process warming).",
        "--config",
        exists=True,
        dir_okay=False,
    ),
]
JsonOpt = Annotated[bool, _run("Print the summary as JSON.", "--json")]
ConnectorUrlOpt = Annotated[
    str | None,
    _connector(
        "Warm through this running connector (its cache, task and cascade) instead of in this process.",
        envvar="RETROSEARCH_CONNECTOR_URL",
        **_NOT_SHOWN,
    ),
]
ConnectorApiKeyOpt = Annotated[
    str | None,
    _connector("The connector's API key.", envvar="RETROSEARCH_CONNECTOR_API_KEY", **_NOT_SHOWN),
]


def _with_reranker_options(command: Callable[..., None]) -> Callable[..., None]:
    """The command's own parameters, then one option per reranker setting (as `serve` has them), which
    reach the command through its `**reranker` parameter."""
    own = [
        parameter
        for parameter in inspect.signature(command, eval_str=True).parameters.values()
        if parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    set_signature(command, [*own, *setting_options(RERANKER_PANELS)])
    return command


@connection_options(ENGINE)
@_with_reranker_options
def warm(
    *,
    queries: QueriesArg,
    query_format: FormatOpt = QueryFormat.AUTO,
    index: IndexOpt,
    connection: EngineConnection,
    candidates: CandidatesOpt = DEFAULT_CANDIDATES,
    fields: FieldsOpt = "title,text",
    concurrency: ConcurrencyOpt = DEFAULT_CONCURRENCY,
    as_json: JsonOpt = False,
    connector_url: ConnectorUrlOpt = None,
    connector_api_key: ConnectorApiKeyOpt = None,
    serve_config: ConfigOpt = None,
    **reranker: Any,
) -> None:
    """Score the searches of a query list into the cache, so that they call no model afterwards."""
    given = {name: value for name, value in reranker.items() if value is not None}
    field_names = split_fields(fields)
    try:
        plan = plan_warming(
            queries,
            query_format,
            index=index,
            candidates=candidates,
            fields=field_names,
            concurrency=concurrency,
        )
    except (InvalidInput, OSError) as error:
        raise typer.BadParameter(str(error), param_hint="QUERIES") from None
    # With --json, stdout carries the JSON only; everything for people goes to stderr.
    console = Console(stderr=as_json, highlight=False, soft_wrap=True)
    if connector_url is None:
        open_leg = _in_process_leg(given, serve_config, field_names)
    else:
        if given or serve_config is not None:
            named = ", ".join("--" + name.replace("_", "-") for name in sorted(given)) or "--config"
            raise typer.BadParameter(
                "--connector-url warms the connector's cache with its own backend, task, cascade and cache; "
                f"the reranker options ({named}) are for warming in this process"
            )
        open_leg = _connector_leg(console, connector_url, connector_api_key, field_names)
    client = open_engine(console, connection)
    header = f"warming {len(plan.queries)} queries × {candidates} candidates of {index!r} at {connection.resolved_url}"
    console.print(escape(scrub(header, connection)))
    try:
        with run_progress(console, FixedTotal(len(plan.queries)), WARMING) as advance:
            summary = asyncio.run(warm_cache(client, plan, open_leg, on_query_done=lambda: advance(1)))
    except* command_errors() as group:
        fail(console, group.exceptions[0], connection=connection)
    finally:
        client.close()
    _print_summary(console, summary, as_json)


def register(app: typer.Typer) -> None:
    app.command("warm")(warm)


def _in_process_leg(given: dict[str, Any], config: Path | None, fields: tuple[str, ...]) -> LegOpener:
    """The reranker `serve` would build from these options (and its environment and config file)."""
    settings = load_settings({**given, **({"config": config} if config else {})})
    check_extras(settings)
    try:
        require_shared_cache(settings)
    except InvalidInput as error:
        raise typer.BadParameter(str(error)) from None
    return partial(open_in_process_leg, settings, settings.task_definition(), settings.cascade_plan(), fields)


def _connector_leg(console: Console, url: str, api_key: str | None, fields: tuple[str, ...]) -> LegOpener:
    with ConnectorClient(url, api_key=api_key) as probe:
        readiness = probe.readiness()
    if not readiness.reachable:
        problem = f"the connector at {readiness.url} does not answer: {readiness.problem}"
        fail(console, SearchError(problem, hint=readiness.hint))
    # No task: the connector's own applies, as for the searches the pipeline sends it.
    return partial(open_connector_leg, url, api_key, None, fields)


def _print_summary(console: Console, summary: WarmSummary, as_json: bool) -> None:
    """The summary line (or JSON); pairs that failed make the run INCOMPLETE."""
    if as_json:
        sys.stdout.write(json.dumps(summary.as_json(), indent=2, ensure_ascii=False) + "\n")
    left_out = f" ({summary.duplicates} repeated queries left out)" if summary.duplicates else ""
    console.print(
        f"warmed {summary.queries:,} queries{left_out} in {summary.seconds:,.1f} s: "
        f"{summary.pairs_scored:,} pairs scored, {summary.pairs_cached:,} already cached, "
        f"{summary.pairs_failed:,} failed ({summary.pairs_per_second:,.1f} pairs/s)"
    )
    if summary.complete:
        return
    for error in summary.errors:
        console.print(f"  {escape(error)}")
    console.print(
        f"[bold red]{summary.queries_incomplete} queries were warmed only in part[/]: run warm again to "
        "score what failed (what was scored is cached and not scored twice)."
    )
    raise typer.Exit(ExitCode.INCOMPLETE)
