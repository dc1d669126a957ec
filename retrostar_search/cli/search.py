"""`retrosearch search "query" --index docs`: the query with and without Retro* reranking, side by side.

OpenSearch reranks through the search pipeline made by `retrosearch setup opensearch`; Elasticsearch (and
OpenSearch with --client-side) reranks here, by sending the BM25 candidates to the connector. Who scored
comes from the connector that did the work (on the pipeline path, the one the pipeline's model calls),
and a rerank that left documents unscored is said under the table, with the reason, and exits 3.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from retrostar_search.cli.connection import ENGINE, connection_options, open_engine
from retrostar_search.cli.errors import fail
from retrostar_search.cli.options import in_panel
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.engines.connector_endpoint import split_fields
from retrostar_search.engines.errors import Service, engine_errors, pipeline_failure_hint
from retrostar_search.engines.search import (
    ConnectorClient,
    Hit,
    RerankedSearch,
    RerankState,
    SearchError,
    search_and_rerank,
)
from retrostar_search.errors import ExitCode
from retrostar_search.tasks import TaskDefinition, resolve_task

SNIPPET_CHARS = 80
RERANK_PANEL = "Reranking"

_rerank = in_panel(RERANK_PANEL)
PipelineOpt = Annotated[str, _rerank("OpenSearch search pipeline (from `setup opensearch`).")]
ClientSideOpt = Annotated[bool, _rerank("OpenSearch: rerank here through the connector, not the pipeline.")]
ConnectorUrlOpt = Annotated[
    str,
    _rerank(
        "Connector for the client-side rerank (the pipeline path asks the connector the pipeline calls).",
        envvar="RETROSEARCH_CONNECTOR_URL",
    ),
]
ConnectorApiKeyOpt = Annotated[
    str | None,
    _rerank("The connector's API key.", envvar="RETROSEARCH_CONNECTOR_API_KEY", show_default=False),
]
TaskOpt = Annotated[str | None, _rerank("Task preset for client-side rerank (default: the connector's).")]
ConnectorTimeoutOpt = Annotated[float, _rerank("Seconds to wait for the connector.")]
FieldsOpt = Annotated[str, typer.Option(help="Comma-separated fields searched and reranked.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@connection_options(ENGINE)
def search(
    *,
    query: Annotated[str, typer.Argument(help="What to search for.")],
    index: Annotated[str, typer.Option(help="Index to search.")],
    candidates: Annotated[int, typer.Option(help="BM25 hits to rerank (N).", min=1)] = 20,
    top: Annotated[int, typer.Option(help="Reranked hits to keep (K <= N).", min=1)] = 10,
    explain: Annotated[bool, typer.Option(help="Show Retro*'s reasoning for each kept hit.")] = False,
    as_json: JsonOpt = False,
    fields: FieldsOpt = "title,text",
    pipeline: PipelineOpt = "retrostar",
    client_side: ClientSideOpt = False,
    connector_url: ConnectorUrlOpt = "http://127.0.0.1:8000",
    connector_api_key: ConnectorApiKeyOpt = None,
    task: TaskOpt = None,
    connector_timeout: ConnectorTimeoutOpt = 60.0,
    connection: EngineConnection,
) -> None:
    """Search an index and show how Retro* reorders the hits; exit 3 if the rerank left any unscored."""
    if top > candidates:
        raise typer.BadParameter(f"--top ({top}) cannot exceed --candidates ({candidates})")
    console = Console(highlight=False, stderr=as_json)
    client = open_engine(console, connection)
    try:
        with ConnectorClient(connector_url, connector_api_key, connector_timeout) as connector:
            outcome = search_and_rerank(
                client,
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
    except SearchError as error:
        fail(console, error, label="rerank failed:", service=Service.CONNECTOR)
    except engine_errors() as error:
        fail(
            console,
            error,
            label="search failed:",
            connection=connection,
            hint=pipeline_failure_hint(error, pipeline),
        )
    # The task the documents were judged under: a --task sent with a client-side rerank, else the
    # connector's own, as its /ready says.
    judged_under = resolve_task(task) if task and outcome.path == "client-side" else None
    if as_json:
        view = {"engine": connection.engine.value, **outcome.to_dict()}
        if judged_under is not None:
            view["task"] = judged_under.model_dump()
        print(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        print_comparison(console, outcome, connection.engine, explain, judged_under)
    if outcome.degraded:
        raise typer.Exit(ExitCode.INCOMPLETE)


def print_comparison(
    console: Console,
    outcome: RerankedSearch,
    engine: Engine,
    explain: bool,
    task: TaskDefinition | None = None,
) -> None:
    """The reranked hits as a table, labelled with who scored them, then how the rerank went, the task and
    (with `explain`) the reasoning."""
    if not outcome.reranked:
        console.print(escape(f"no hits for {outcome.query!r} in {outcome.index}"))
        return
    scorer = outcome.scorer
    status = outcome.status
    label = scorer.score_label if scorer is not None else "score"
    table = Table(title=escape(_title(outcome, engine)), title_justify="left")
    table.add_column(f"BM25 → {label}", justify="right", no_wrap=True)
    table.add_column(label, justify="right")
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
    if dropped and status.state is not RerankState.NONE:
        table.caption = escape(f"left BM25's top {len(outcome.reranked)}: {', '.join(dropped)}")
    console.print(table)
    said = status.describe()
    if status.degraded:
        console.print(f"[bold red]{escape(said or '')}[/]")
        if status.request_id:
            console.print(
                escape(f"connector request {status.request_id} (its log line and rerank-log event)")
            )
    elif said:
        console.print(f"[yellow]{escape(said)}[/]")
    for note in outcome.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if scorer is not None and scorer.problem and status.state is not RerankState.NONE:
        console.print(f"[yellow]note:[/] {escape(scorer.problem)}")
    task = task or (scorer.task if scorer is not None else None)
    if task is not None:
        console.print(escape(task.describe()), style="dim")
    if explain:
        for hit in outcome.reranked:
            print_explanation(console, hit, label)


def print_explanation(console: Console, hit: Hit, score_label: str = "Retro*") -> None:
    """One hit's reasoning in a panel titled by its rank, title (or id) and score."""
    score = "unscored" if hit.retrostar_score is None else f"{score_label} {hit.retrostar_score:.1f}"
    name = hit.label if hit.label == hit.id else f"{hit.label} ({hit.id})"
    if hit.explanation is not None:
        body = hit.explanation.as_text()
    elif hit.retrostar_score is None:
        body = "not scored: the rerank left this document without a score"
    else:
        body = "(no explanation: the connector did not return one)"
    console.print(Panel(escape(body), title=escape(f"#{hit.rank} · {name} · {score}"), title_align="left"))


def _title(outcome: RerankedSearch, engine: Engine) -> str:
    head = f"{outcome.query!r} in {outcome.index} ({engine.value}): BM25 top {len(outcome.first_stage)}"
    via = "in the search pipeline" if outcome.path == "pipeline" else "client-side"
    if outcome.status.state is RerankState.NONE:
        return f"{head}, NOT reranked ({via}): first-stage order"
    scorer = outcome.scorer
    if scorer is None or scorer.backend is None:
        where = f" through {scorer.url}" if scorer is not None else ""
        return f"{head}, reranked {via}{where} (who scored is unknown)"
    return f"{head}, reranked by {scorer.scorer} {via}"


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
