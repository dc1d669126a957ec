"""`retrosearch eval PATH --format beir|bright --index NAME [--rerank]`: what reranking buys, in numbers.

Every query of the collection runs through the engine's BM25 first stage and, with `--rerank`, through
Retro*; both rankings are scored against the judgements. A table goes to the terminal (or a JSON summary
with `--json`), per-query results, TREC runs and a plot to `--out`. Documented in docs/evaluation.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from enum import IntEnum
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from connector.settings import BackendKind
from index_tools.engine import EngineOps
from index_tools.mapping import DEFAULT_ANALYZER
from index_tools.readers import BeirCorpus, BrightExport
from index_tools.run import IndexSettings
from retrostar_search.backends.base import BackendError
from retrostar_search.cli.common import (
    ApiKeyOpt,
    CaCertsOpt,
    EngineOpt,
    InsecureOpt,
    PasswordOpt,
    UrlOpt,
    UsernameOpt,
    engine_connection,
    print_error,
    scrub,
)
from retrostar_search.cli.index import index_with_progress, pick_analyzer
from retrostar_search.cli.serve import load_settings
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.engines.search import SearchError
from retrostar_search.evaluation.collection import (
    CollectionFormat,
    EvalCollection,
    load_collection,
    open_reader,
)
from retrostar_search.evaluation.display import print_summary, query_progress
from retrostar_search.evaluation.legs import RerankLeg, open_connector_leg, open_in_process_leg
from retrostar_search.evaluation.metrics import DEFAULT_METRICS, Metric, deepest_cutoff, parse_metrics
from retrostar_search.evaluation.report import write_report
from retrostar_search.evaluation.runner import QueryRun, RunPlan, run_queries
from retrostar_search.evaluation.summary import EvalSummary, summarise
from retrostar_search.scoring import Cascade
from retrostar_search.tasks import PRESETS, TaskDefinition, UnknownTaskError, resolve_task

_COLLECTION, _RUN, _RERANK, _OUTPUT = "Collection", "Run", "Rerank", "Output"
DEFAULT_CANDIDATES = 100
# First-stage depth when a metric has no cutoff (map, ndcg): BEIR's retrieval depth.
FULL_DEPTH = 1000

LegOpener = Callable[[], AbstractAsyncContextManager[RerankLeg]]


class ExitCode(IntEnum):
    """What `retrosearch eval` returns (2 is typer's own, for usage errors)."""

    OK = 0
    # Some queries' reranking was degraded (backend failures): the reranked figures are not trustworthy.
    DEGRADED = 1
    FAILED = 3


def default_cache_path() -> Path:
    """Where in-process scores persist between runs: the user's cache folder, shared by all evaluations
    (keys cover model, prompt, task, query, document and samples, so sharing is safe)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "retrostar-search" / "eval-scores.sqlite"


def eval_command(
    path: Annotated[Path, typer.Argument(help="A BEIR folder or a BRIGHT export.")],
    index: Annotated[
        str,
        typer.Option(
            "--index", "-i", help="Index holding the collection's corpus.", rich_help_panel=_COLLECTION
        ),
    ],
    collection_format: Annotated[
        CollectionFormat,
        typer.Option("--format", "-f", help="Collection layout.", rich_help_panel=_COLLECTION),
    ] = CollectionFormat.BEIR,
    task: Annotated[
        str | None,
        typer.Option(
            help="BRIGHT: the task to evaluate (e.g. biology); also the Retro* task preset the reranker "
            "reasons under (BEIR: the preset only; default: the generic task).",
            rich_help_panel=_COLLECTION,
        ),
    ] = None,
    split: Annotated[
        str, typer.Option(help="BEIR qrels split (qrels/<split>.tsv).", rich_help_panel=_COLLECTION)
    ] = "test",
    index_if_missing: Annotated[
        bool,
        typer.Option(
            "--index-if-missing",
            help="Index the collection's corpus first (as `retrosearch index` does) when the index does not exist.",
            rich_help_panel=_COLLECTION,
        ),
    ] = False,
    analyzer: Annotated[
        str | None,
        typer.Option(
            help="Analyzer for title and text when --index-if-missing builds the index "
            f"\\[default: {DEFAULT_ANALYZER}, or standard where the engine lacks it].",
            show_default=False,
            rich_help_panel=_COLLECTION,
        ),
    ] = None,
    engine: EngineOpt = Engine.OPENSEARCH,
    url: UrlOpt = None,
    username: UsernameOpt = None,
    password: PasswordOpt = None,
    api_key: ApiKeyOpt = None,
    ca_certs: CaCertsOpt = None,
    insecure: InsecureOpt = False,
    metrics: Annotated[
        str,
        typer.Option(help="Comma-separated: ndcg@K, recall@K, mrr@K, map[@K], p@K.", rich_help_panel=_RUN),
    ] = DEFAULT_METRICS,
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Queries in flight at once.", rich_help_panel=_RUN)
    ] = 8,
    queries_limit: Annotated[
        int | None,
        typer.Option(
            min=1, help="Evaluate only the first N judged queries (a quick look).", rich_help_panel=_RUN
        ),
    ] = None,
    rerank: Annotated[
        bool, typer.Option("--rerank", help="Also rerank with Retro* and compare.", rich_help_panel=_RERANK)
    ] = False,
    candidates: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=escape(
                f"First-stage hits reranked per query [default: the cascade's first stage, else {DEFAULT_CANDIDATES}]."
            ),
            show_default=False,
            rich_help_panel=_RERANK,
        ),
    ] = None,
    cascade: Annotated[
        str | None,
        typer.Option(
            help="Cascade plan, e.g. 100@1,30@16 (the reference); default: one sample per candidate.",
            rich_help_panel=_RERANK,
        ),
    ] = None,
    connector_url: Annotated[
        str | None,
        typer.Option(
            help="Rerank through this running connector (client-side, as `retrosearch search` does) instead "
            "of in this process. Its cascade and cache are the connector's settings.",
            rich_help_panel=_RERANK,
        ),
    ] = None,
    connector_api_key: Annotated[
        str | None,
        typer.Option(
            envvar="RETROSEARCH_CONNECTOR_API_KEY",
            help="Bearer key the connector expects.",
            show_default=False,
            rich_help_panel=_RERANK,
        ),
    ] = None,
    backend: Annotated[
        BackendKind | None,
        typer.Option(
            help=escape(
                "In-process backend, as for `retrosearch serve` [default: sglang]. cpu is a lexical "
                "fallback, NOT Retro*."
            ),
            show_default=False,
            rich_help_panel=_RERANK,
        ),
    ] = None,
    backend_url: Annotated[
        str | None,
        typer.Option(
            help=escape("SGLang (or vLLM) server [default: http://127.0.0.1:30000]."),
            show_default=False,
            rich_help_panel=_RERANK,
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name (part of every cache key).", rich_help_panel=_RERANK)
    ] = None,
    serve_config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            exists=True,
            dir_okay=False,
            help="A `retrosearch serve` TOML config for the in-process reranker (sampling, truncation, ...).",
            rich_help_panel=_RERANK,
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help=escape(
                "sqlite score cache for in-process reranking; a second run scores nothing twice "
                "[default: ~/.cache/retrostar-search/eval-scores.sqlite]."
            ),
            show_default=False,
            rich_help_panel=_RERANK,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(help="Folder for per-query results, TREC runs and the plot.", rich_help_panel=_OUTPUT),
    ] = Path("results"),
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print a machine-readable summary instead of the table.", rich_help_panel=_OUTPUT
        ),
    ] = False,
) -> None:
    """Evaluate first-stage BM25 against Retro* reranking on a BEIR or BRIGHT collection."""
    connection = engine_connection(engine, url, username, password, api_key, ca_certs, insecure)
    # With --json, stdout carries the JSON only; everything for people goes to stderr.
    console = Console(stderr=as_json)
    try:
        metric_list = parse_metrics(metrics)
        cascade_plan = Cascade.parse(cascade) if cascade else None
        reader = open_reader(path, collection_format, task)
        collection = load_collection(reader, split).limited(queries_limit)
        rerank_task = _rerank_task(task or getattr(reader, "task", None), collection_format)
    except (ValueError, FileNotFoundError) as error:
        # FormatError, BrightLayoutError, DataFileError and bad metric or cascade specs are ValueErrors.
        raise typer.BadParameter(str(error)) from None
    if not collection.queries:
        raise typer.BadParameter(f"{path}: no query has a relevant judgement; nothing to evaluate")
    rerank_options = (candidates, cascade, connector_url, backend, backend_url, model, serve_config, cache)
    if not rerank and any(option is not None for option in rerank_options):
        # Without this, a forgotten --rerank would print first-stage figures the user takes for reranked.
        raise typer.BadParameter("the Rerank options apply only with --rerank")
    if connector_url and (cascade or backend or backend_url or model or serve_config or cache):
        raise typer.BadParameter(
            "--connector-url reranks with the connector's own backend, cascade and cache; "
            "--cascade, --backend, --backend-url, --model, --config and --cache are for in-process reranking"
        )

    candidate_count = candidates or _first_stage_count(cascade_plan) or DEFAULT_CANDIDATES
    plan = RunPlan(
        index=index,
        depth=max(candidate_count if rerank else 0, deepest_cutoff(metric_list) or FULL_DEPTH),
        candidates=candidate_count,
        concurrency=concurrency,
    )
    ops = EngineOps.connect(connection)
    _ensure_index(ops, reader, index, index_if_missing, analyzer, out, console, connection)

    open_leg: LegOpener | None = None
    if rerank:
        if connector_url:
            open_leg = partial(open_connector_leg, connector_url, connector_api_key, rerank_task)
        else:
            overrides: dict[str, Any] = {
                "backend": backend,
                "backend_url": backend_url,
                "model": model,
                "config": serve_config,
                "cache_path": cache or default_cache_path(),
            }
            serve_settings = load_settings(
                {name: value for name, value in overrides.items() if value is not None}
            )
            open_leg = partial(
                open_in_process_leg,
                serve_settings,
                rerank_task,
                cascade_plan or serve_settings.cascade_plan(),
            )

    console.print(
        escape(
            scrub(
                f"{collection.name}: {len(collection.queries)} judged queries → {engine.value} "
                f"{connection.resolved_url} index {index!r}",
                connection,
            )
        ),
        highlight=False,
    )
    settings = {
        "path": str(path),
        "format": collection_format.value,
        "candidates": plan.candidates if rerank else None,
        "depth": plan.depth,
        "concurrency": concurrency,
        "queries_skipped_unjudged": collection.skipped_unjudged,
    }
    try:
        summary, runs = asyncio.run(
            _evaluate(ops.client, collection, plan, metric_list, open_leg, console, engine, settings)
        )
    except* (SearchError, BackendError, *ops.errors) as group:
        print_error(console, group.exceptions[0], connection)
        raise typer.Exit(ExitCode.FAILED) from None
    write_report(summary, runs, out)
    if as_json:
        sys.stdout.write(json.dumps(summary.as_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        print_summary(console, summary)
    if summary.degraded_queries:
        console.print(
            f"[bold red]{summary.degraded_queries} queries were reranked only in part[/] (backend errors): "
            "the reranked figures understate Retro*. Fix the backend and run again; scored pairs are cached."
        )
        raise typer.Exit(ExitCode.DEGRADED)


async def _evaluate(
    client: Any,
    collection: EvalCollection,
    plan: RunPlan,
    metric_list: list[Metric],
    open_leg: LegOpener | None,
    console: Console,
    engine: Engine,
    settings: dict[str, Any],
) -> tuple[EvalSummary, list[QueryRun]]:
    started = time.perf_counter()
    # The leg is opened inside the event loop: async HTTP clients bind to the loop that uses them.
    async with open_leg() if open_leg is not None else nullcontext() as leg:
        with query_progress(console, len(collection.queries)) as advance:
            runs = await run_queries(client, collection, plan, leg, advance)
        rerank = leg.describe() if leg is not None else None
    summary = summarise(
        collection,
        runs,
        metric_list,
        index=plan.index,
        engine=engine.value,
        settings={**settings, "rerank": rerank},
        seconds=time.perf_counter() - started,
    )
    return summary, runs


def _first_stage_count(cascade: Cascade | None) -> int | None:
    return None if cascade is None else cascade.stages[0].candidates


def _rerank_task(name: str | None, collection_format: CollectionFormat) -> TaskDefinition:
    """The Retro* task: the preset named by --task (BRIGHT's task names are presets), else the generic one."""
    if name is None:
        return resolve_task(None)
    if collection_format is CollectionFormat.BRIGHT and name not in PRESETS:
        # A BRIGHT export may hold a task Retro* has no preset for; it is still evaluable.
        return resolve_task(None)
    try:
        return resolve_task(name)
    except UnknownTaskError as error:
        raise ValueError(str(error)) from None


def _ensure_index(
    ops: EngineOps,
    reader: BeirCorpus | BrightExport,
    index: str,
    index_if_missing: bool,
    analyzer: str | None,
    out: Path,
    console: Console,
    connection: EngineConnection,
) -> None:
    """The index must exist; with --index-if-missing it is built through `retrosearch index`'s code path."""
    try:
        exists = ops.exists(index)
    except ops.errors as error:
        print_error(console, error, connection)
        raise typer.Exit(ExitCode.FAILED) from None
    if exists:
        return
    if not index_if_missing:
        console.print(
            f"[bold red]error:[/] index {escape(repr(index))} does not exist. Index the collection first "
            "(or pass --index-if-missing):"
        )
        task_option = f" --task {reader.task}" if isinstance(reader, BrightExport) else ""
        command = (
            f"retrosearch index {reader.folder} --format {reader.format_name}{task_option} --index {index}"
        )
        # Unwrapped, so that it can be copied and run as it stands.
        console.print(escape(f"  {command}"), soft_wrap=True, highlight=False)
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


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
