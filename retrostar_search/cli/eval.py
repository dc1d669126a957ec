"""`retrosearch eval PATH --format beir|bright --index NAME [--rerank]`: what reranking buys, in numbers.

Every query of the collection runs through the engine's BM25 first stage and, with `--rerank`, through
Retro*; both rankings are scored against the judgements. A table goes to the terminal (or a JSON summary
with `--json`), per-query results, TREC runs and a plot to `--out`. Documented in docs/evaluation.md.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from index_tools.engine import EngineOps
from index_tools.mapping import DEFAULT_ANALYZER
from index_tools.readers import BrightExport
from index_tools.run import IndexSettings
from retrostar_search.cli.connection import ENGINE, connection_options, open_engine
from retrostar_search.cli.errors import command_errors, fail, scrub
from retrostar_search.cli.index import index_with_progress, pick_analyzer
from retrostar_search.cli.options import in_panel
from retrostar_search.engines.connection import EngineConnection
from retrostar_search.engines.errors import engine_errors
from retrostar_search.errors import ExitCode
from retrostar_search.evaluation.collection import CollectionFormat
from retrostar_search.evaluation.display import print_summary, query_progress
from retrostar_search.evaluation.evaluate import (
    DEFAULT_CANDIDATES,
    EvalPlan,
    RerankOptions,
    evaluate,
    plan_evaluation,
)
from retrostar_search.evaluation.metrics import DEFAULT_METRICS
from retrostar_search.evaluation.report import write_report
from retrostar_search.evaluation.runner import judged_in_index
from retrostar_search.evaluation.summary import EvalSummary
from retrostar_search.extras import require_extra
from retrostar_search.factory import check_extras
from retrostar_search.settings import BackendKind

_collection, _run, _rerank, _output = (in_panel(name) for name in ("Collection", "Run", "Rerank", "Output"))
_NOT_SHOWN = {"show_default": False}

PathArg = Annotated[Path, typer.Argument(help="A BEIR folder or a BRIGHT export.")]
IndexOpt = Annotated[str, _collection("Index holding the collection's corpus.", "--index", "-i")]
FormatOpt = Annotated[CollectionFormat, _collection("Collection layout.", "--format", "-f")]
TaskOpt = Annotated[
    str | None,
    _collection(
        "BRIGHT: the task to evaluate (e.g. biology); also the Retro* task preset the reranker reasons under "
        "(BEIR: the preset only; default: the generic task)."
    ),
]
SplitOpt = Annotated[str, _collection("BEIR qrels split (qrels/<split>.tsv).")]
IndexIfMissingOpt = Annotated[
    bool,
    _collection(
        "Index the collection's corpus first (as `retrosearch index` does) when the index does not exist.",
        "--index-if-missing",
    ),
]
AnalyzerOpt = Annotated[
    str | None,
    _collection(
        "Analyzer for title and text when --index-if-missing builds the index "
        f"\\[default: {DEFAULT_ANALYZER}, or standard where the engine lacks it].",
        **_NOT_SHOWN,
    ),
]
MetricsOpt = Annotated[str, _run("Comma-separated: ndcg@K, recall@K, mrr@K, map[@K], p@K.")]
ConcurrencyOpt = Annotated[int, _run("Queries in flight at once.", min=1, max=64)]
QueriesLimitOpt = Annotated[
    int | None, _run("Evaluate only the first N judged queries (a quick look).", min=1)
]
RerankOpt = Annotated[bool, _rerank("Also rerank with Retro* and compare.", "--rerank")]
CandidatesOpt = Annotated[
    int | None,
    _rerank(
        escape(
            f"First-stage hits reranked per query [default: the cascade's first stage, else {DEFAULT_CANDIDATES}]."
        ),
        min=1,
        **_NOT_SHOWN,
    ),
]
CascadeOpt = Annotated[
    str | None, _rerank("Cascade plan, e.g. 100@1,30@16 (the reference); default: one sample per candidate.")
]
ConnectorUrlOpt = Annotated[
    str | None,
    _rerank(
        "Rerank through this running connector (client-side, as `retrosearch search` does) instead of in "
        "this process. Its cascade and cache are the connector's settings."
    ),
]
ConnectorApiKeyOpt = Annotated[
    str | None,
    _rerank("Bearer key the connector expects.", envvar="RETROSEARCH_CONNECTOR_API_KEY", **_NOT_SHOWN),
]
BackendOpt = Annotated[
    BackendKind | None,
    _rerank(
        escape(
            "In-process backend, as for `retrosearch serve` [default: sglang]. cpu is a lexical fallback, NOT Retro*."
        ),
        **_NOT_SHOWN,
    ),
]
BackendUrlOpt = Annotated[
    str | None, _rerank(escape("SGLang (or vLLM) server [default: http://127.0.0.1:30000]."), **_NOT_SHOWN)
]
ModelOpt = Annotated[str | None, _rerank("Model name (part of every cache key).")]
ServeConfigOpt = Annotated[
    Path | None,
    _rerank(
        "A `retrosearch serve` TOML config for the in-process reranker (sampling, truncation, ...).",
        "--config",
        exists=True,
        dir_okay=False,
    ),
]
CacheOpt = Annotated[
    Path | None,
    _rerank(
        escape(
            "sqlite score cache for in-process reranking; a second run scores nothing twice "
            "[default: ~/.cache/retrostar-search/eval-scores.sqlite]."
        ),
        **_NOT_SHOWN,
    ),
]
OutOpt = Annotated[Path, _output("Folder for per-query results, TREC runs and the plot.")]
JsonOpt = Annotated[bool, _output("Print a machine-readable summary instead of the table.", "--json")]


@connection_options(ENGINE)
def eval_command(
    *,
    path: PathArg,
    index: IndexOpt,
    collection_format: FormatOpt = CollectionFormat.BEIR,
    task: TaskOpt = None,
    split: SplitOpt = "test",
    index_if_missing: IndexIfMissingOpt = False,
    analyzer: AnalyzerOpt = None,
    connection: EngineConnection,
    metrics: MetricsOpt = DEFAULT_METRICS,
    concurrency: ConcurrencyOpt = 8,
    queries_limit: QueriesLimitOpt = None,
    rerank: RerankOpt = False,
    candidates: CandidatesOpt = None,
    cascade: CascadeOpt = None,
    connector_url: ConnectorUrlOpt = None,
    connector_api_key: ConnectorApiKeyOpt = None,
    backend: BackendOpt = None,
    backend_url: BackendUrlOpt = None,
    model: ModelOpt = None,
    serve_config: ServeConfigOpt = None,
    cache: CacheOpt = None,
    out: OutOpt = Path("results"),
    as_json: JsonOpt = False,
) -> None:
    """Evaluate first-stage BM25 against Retro* reranking on a BEIR or BRIGHT collection."""
    require_extra("eval", "`retrosearch eval`")  # before anything is read, indexed or scored
    options = RerankOptions(
        candidates, cascade, connector_url, connector_api_key, backend, backend_url, model, serve_config, cache
    )  # fmt: skip
    try:
        plan = plan_evaluation(
            path,
            collection_format,
            index=index,
            task=task,
            split=split,
            queries_limit=queries_limit,
            metrics=metrics,
            concurrency=concurrency,
            rerank=rerank,
            options=options,
        )
    except (ValueError, FileNotFoundError) as error:
        # InvalidInput (the readers' format errors, an unknown task) and bad metric or cascade specs.
        raise typer.BadParameter(str(error)) from None
    settings = None
    if rerank and options.in_process:
        # Here, not at the top: the connector's settings (pydantic-settings) only for in-process reranking.
        from retrostar_search.cli.serve import load_settings

        settings = load_settings(options.settings_overrides())
        check_extras(settings)
    open_leg = plan.leg_opener(settings)

    # With --json, stdout carries the JSON only; everything for people goes to stderr.
    console = Console(stderr=as_json)
    ops = EngineOps(open_engine(console, connection), connection.engine)
    _ensure_index(ops, plan, index_if_missing, analyzer, out, console, connection)
    _check_judged_documents(ops, plan, console, connection)
    header = (
        f"{plan.collection.name}: {len(plan.collection.queries)} judged queries → {connection.engine.value} "
        f"{connection.resolved_url} index {index!r}"
    )
    console.print(escape(scrub(header, connection)), highlight=False)
    try:
        with query_progress(console, len(plan.collection.queries)) as advance:
            summary, runs = asyncio.run(
                evaluate(ops.client, plan, open_leg, engine=connection.engine.value, on_query_done=advance)
            )
    except* command_errors() as group:
        fail(console, group.exceptions[0], connection=connection)
    write_report(summary, runs, out)
    _print_outcome(console, summary, as_json)


def _print_outcome(console: Console, summary: EvalSummary, as_json: bool) -> None:
    """The table (or the JSON summary); a run with degraded reranks says what went unscored and why, and
    ends INCOMPLETE."""
    if as_json:
        sys.stdout.write(json.dumps(summary.as_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        print_summary(console, summary)
    degradation = summary.degradation()
    if degradation:
        console.print(f"[bold red]{escape(degradation)}[/]", highlight=False)
        console.print(
            "The reranked figures understate Retro* (an unscored candidate keeps its first-stage place). Fix "
            "the backend and run again; scored pairs are cached."
        )
        raise typer.Exit(ExitCode.INCOMPLETE)


def _ensure_index(
    ops: EngineOps,
    plan: EvalPlan,
    index_if_missing: bool,
    analyzer: str | None,
    out: Path,
    console: Console,
    connection: EngineConnection,
) -> None:
    """The index must exist; with --index-if-missing it is built through `retrosearch index`'s code path."""
    index, reader = plan.run.index, plan.reader
    try:
        exists = ops.exists(index)
    except engine_errors() as error:
        fail(console, error, connection=connection)
    if exists:
        return
    if not index_if_missing:
        console.print(
            f"[bold red]error:[/] index {escape(repr(index))} does not exist. Index the collection first "
            "(or pass --index-if-missing):"
        )
        # Unwrapped, so that it can be copied and run as it stands.
        console.print(escape(f"  {_index_command(plan)}"), soft_wrap=True, highlight=False)
        raise typer.Exit(ExitCode.FAILED)
    settings = IndexSettings(
        index=index,
        analyzer=pick_analyzer(console, ops, analyzer, connection),
        rejects_path=out / "index-rejects.jsonl",
    )
    console.print(f"index {escape(repr(index))} does not exist: indexing {escape(str(reader.folder))} first")
    report = index_with_progress(console, ops, reader, settings, connection)
    if not report.count_ok:
        raise typer.Exit(ExitCode.FAILED)
    if report.rejected:
        # Rejected records (e.g. lines that are not valid JSON) cannot be retrieved by any system;
        # the figures stay comparable, but the user should know.
        console.print(
            f"[yellow]warning:[/] {report.rejected} record(s) not indexed; a judged one among them can "
            "never be retrieved"
        )


def _check_judged_documents(
    ops: EngineOps, plan: EvalPlan, console: Console, connection: EngineConnection
) -> None:
    """An index holding none of the judged documents is not this collection's corpus: every figure would
    be 0, so the run is refused; one missing some is run, with a warning."""
    try:
        found, looked_up = judged_in_index(ops.client, plan.run.index, plan.collection)
    except engine_errors() as error:
        fail(console, error, connection=connection)
    if not looked_up or found == looked_up:
        return
    index = escape(repr(plan.run.index))
    if found == 0:
        console.print(
            f"[bold red]error:[/] index {index} holds none of the {looked_up:,} relevant judged documents "
            f"looked up: it does not hold {escape(plan.collection.name)}'s corpus, and every figure would be 0. "
            "Index the collection into it (or pass the index that holds it):"
        )
        console.print(escape(f"  {_index_command(plan)}"), soft_wrap=True, highlight=False)
        raise typer.Exit(ExitCode.FAILED)
    console.print(
        f"[yellow]warning:[/] index {index} holds {found:,} of {looked_up:,} relevant judged documents "
        "looked up: queries judged on the missing ones cannot reach their full score"
    )


def _index_command(plan: EvalPlan) -> str:
    reader = plan.reader
    task_option = f" --task {reader.task}" if isinstance(reader, BrightExport) else ""
    return f"retrosearch index {reader.folder} --format {reader.format_name}{task_option} --index {plan.run.index}"


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
