"""`retrosearch search "query" --index docs`: the query with and without Retro* reranking, side by side.

OpenSearch reranks through the search pipeline made by `retrosearch setup opensearch`; Elasticsearch (and
OpenSearch with --client-side) reranks here, by sending the BM25 candidates to the connector.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from retrostar_search.cli.connection import ENGINE, connection_options
from retrostar_search.cli.errors import fail
from retrostar_search.cli.options import in_panel
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.engines.connector_endpoint import split_fields
from retrostar_search.engines.errors import engine_errors, pipeline_failure_hint
from retrostar_search.engines.search import (
    ConnectorClient,
    Hit,
    RerankedSearch,
    SearchError,
    search_and_rerank,
)

SNIPPET_CHARS = 80
RERANK_PANEL = "Reranking"

_rerank = in_panel(RERANK_PANEL)
PipelineOpt = Annotated[str, _rerank("OpenSearch search pipeline (from `setup opensearch`).")]
ClientSideOpt = Annotated[bool, _rerank("OpenSearch: rerank here through the connector, not the pipeline.")]
ConnectorUrlOpt = Annotated[
    str, _rerank("Connector for client-side rerank and --explain.", envvar="RETROSEARCH_CONNECTOR_URL")
]
ConnectorApiKeyOpt = Annotated[
    str | None,
    _rerank("The connector's API key.", envvar="RETROSEARCH_CONNECTOR_API_KEY", show_default=False),
]
TaskOpt = Annotated[str | None, _rerank("Task preset for client-side rerank (default: the connector's).")]
ConnectorTimeoutOpt = Annotated[float, _rerank("Seconds to wait for the connector.")]


@connection_options(ENGINE)
def search(
    *,
    query: Annotated[str, typer.Argument(help="What to search for.")],
    index: Annotated[str, typer.Option(help="Index to search.")],
    candidates: Annotated[int, typer.Option(help="BM25 hits to rerank (N).", min=1)] = 20,
    top: Annotated[int, typer.Option(help="Reranked hits to keep (K <= N).", min=1)] = 10,
    explain: Annotated[bool, typer.Option(help="Show Retro*'s reasoning for each kept hit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    fields: Annotated[str, typer.Option(help="Comma-separated fields searched and reranked.")] = "title,text",
    pipeline: PipelineOpt = "retrostar",
    client_side: ClientSideOpt = False,
    connector_url: ConnectorUrlOpt = "http://127.0.0.1:8000",
    connector_api_key: ConnectorApiKeyOpt = None,
    task: TaskOpt = None,
    connector_timeout: ConnectorTimeoutOpt = 60.0,
    connection: EngineConnection,
) -> None:
    """Search an index and show how Retro* reorders the hits."""
    if top > candidates:
        raise typer.BadParameter(f"--top ({top}) cannot exceed --candidates ({candidates})")
    console = Console(highlight=False)
    try:
        with ConnectorClient(connector_url, connector_api_key, connector_timeout) as connector:
            outcome = search_and_rerank(
                connection.client(),
                connection.engine,
                index,
                query,
                connector,
                candidates=candidates,
                top=top,
                fields=split_fields(fields),
                pipeline=pipeline,
                client_side=client_side,
                explain=explain,
                task=task,
            )
            fallback = connector.backend_kind() == "cpu"
    except SearchError as error:
        fail(console, error, label="rerank failed:")
    except engine_errors() as error:
        fail(
            console,
            error,
            label="search failed:",
            connection=connection,
            hint=pipeline_failure_hint(error, pipeline),
        )
    if as_json:
        print(
            json.dumps({"engine": connection.engine.value, **outcome.to_dict()}, ensure_ascii=False, indent=2)
        )
        return
    print_comparison(console, outcome, connection.engine, explain, fallback)


def print_comparison(
    console: Console, outcome: RerankedSearch, engine: Engine, explain: bool, fallback: bool
) -> None:
    """The reranked hits as a table; `fallback` labels scores from the CPU fallback as not Retro*'s."""
    if not outcome.reranked:
        console.print(f"no hits for {outcome.query!r} in {outcome.index}")
        return
    via = "in the search pipeline" if outcome.path == "pipeline" else "client-side"
    table = Table(
        title=escape(
            f"{outcome.query!r} in {outcome.index} ({engine.value}): BM25 top {len(outcome.first_stage)}, "
            f"reranked by {'the CPU fallback (not Retro*)' if fallback else 'Retro*'} {via}"
        ),
        title_justify="left",
    )
    scores = "fallback" if fallback else "Retro*"
    table.add_column(f"BM25 → {scores}", justify="right", no_wrap=True)
    table.add_column(scores, justify="right")
    table.add_column("BM25", justify="right")
    table.add_column("id", overflow="fold")
    table.add_column("title / snippet")
    for hit in outcome.reranked:
        table.add_row(
            _rank_change(hit),
            "-" if hit.retrostar_score is None else f"{hit.retrostar_score:.1f}",
            "-" if hit.first_stage_score is None else f"{hit.first_stage_score:.2f}",
            escape(hit.id),
            escape(_label(hit)),
        )
    kept = {hit.id for hit in outcome.reranked}
    dropped = [hit.id for hit in outcome.first_stage[: len(outcome.reranked)] if hit.id not in kept]
    if dropped:
        table.caption = escape(f"left BM25's top {len(outcome.reranked)}: {', '.join(dropped)}")
    console.print(table)
    if explain:
        for hit in outcome.reranked:
            console.print(
                Panel(
                    escape(
                        hit.explanation or "(no explanation: the connector could not score this document)"
                    ),
                    title=escape(f"#{hit.rank} {hit.id}"),
                    title_align="left",
                )
            )


def register(app: typer.Typer) -> None:
    app.command("search")(search)


def _rank_change(hit: Hit) -> str:
    before = "?" if hit.first_stage_rank is None else str(hit.first_stage_rank)
    after = "?" if hit.rank is None else str(hit.rank)
    return f"{before} → {after}"


def _label(hit: Hit) -> str:
    if hit.title:
        return hit.title
    text = " ".join(hit.text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"
