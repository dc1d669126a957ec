"""`retrosearch index PATH --index NAME`: load a corpus into OpenSearch or Elasticsearch for BM25 + rerank.

Formats, flags and what happens to bad input are documented in docs/indexing.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from index_tools.bulk import BulkAbort, BulkOptions
from index_tools.engine import EngineOps
from index_tools.mapping import DEFAULT_ANALYZER, IncompatibleIndexError, choose_analyzer
from index_tools.policy import DEFAULT_MAX_DOC_BYTES
from index_tools.progress import indexing_progress
from index_tools.readers import (
    BrightLayoutError,
    Corpus,
    CorpusFormat,
    FieldNames,
    FormatError,
    open_corpus,
)
from index_tools.records import Rejected
from index_tools.rejects import DEFAULT_REJECTS_PATH
from index_tools.run import ExitCode, IndexReport, IndexSettings, index_corpus
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
from retrostar_search.engines.connection import Engine, EngineConnection

SOURCE_PANEL = "Source"
INDEX_PANEL = "Index"
LOADING_PANEL = "Loading and bad input"


# Rejections are listed as they happen up to this many; the rejects file has them all.
SHOWN_REJECTIONS = 20


def show_rejections(console: Console) -> Callable[[Rejected], None]:
    shown = 0

    def show(rejected: Rejected) -> None:
        nonlocal shown
        shown += 1
        if shown <= SHOWN_REJECTIONS:
            console.print(
                f"[red]rejected[/] {escape(rejected.location)}: {escape(rejected.reason)}", highlight=False
            )
        elif shown == SHOWN_REJECTIONS + 1:
            console.print("[red]more rejections:[/] see the rejects file")

    return show


def print_report(console: Console, report: IndexReport) -> None:
    table = Table(title=escape(f"index {report.index!r}"), show_header=False, title_justify="left")
    table.add_column(justify="left")
    table.add_column(justify="right")
    rows = [
        ("records read", report.read),
        ("indexed", report.indexed),
        ("  created", report.created),
        ("  updated (already there, or duplicate id)", report.updated),
        ("  of them empty (no title or text: found by id only)", report.empty),
        ("duplicate ids in this run (last one kept)", report.duplicates),
        ("rejected", report.rejected),
        ("truncated (--truncate-huge)", report.truncated),
        ("ids derived from content", report.derived_ids),
        ("retries", report.retries),
    ]
    for label, value in rows:
        table.add_row(label, f"{value:,}")
    table.add_row("seconds", f"{report.seconds:,.1f}")
    table.add_row("docs/s", f"{report.docs_per_second:,.0f}")
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if report.count_ok:
        console.print(
            f"count check: the index holds {report.count_after:,} documents "
            f"({report.count_before:,} before + {report.created:,} created) [green]OK[/]"
        )
    else:
        console.print(
            f"[bold red]count mismatch:[/] the engine counts {report.count_after:,} documents in "
            f"{escape(repr(report.index))}, expected {report.expected_count:,} ({report.count_before:,} before + "
            f"{report.created:,} created). Another writer, or documents lost on the way: re-run to repair."
        )
    if report.stopped_early:
        console.print("[bold red]stopped early:[/] more than --max-errors records were rejected")
    if report.rejected:
        console.print(
            f"[red]{report.rejected:,} record(s) rejected:[/] see {escape(str(report.rejects_path))}"
        )


def pick_analyzer(
    console: Console, ops: EngineOps, requested: str | None, connection: EngineConnection
) -> str:
    """``choose_analyzer`` for a command: its note printed, an engine failure ending the command."""
    try:
        analyzer, note = choose_analyzer(ops, requested)
    except ops.errors as error:
        print_error(console, error, connection)
        raise typer.Exit(ExitCode.FAILED) from None
    if note:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    return analyzer


def index_with_progress(
    console: Console, ops: EngineOps, corpus: Corpus, settings: IndexSettings, connection: EngineConnection
) -> IndexReport:
    """``index_corpus`` under a progress bar, then its report; a failure is printed and ends the command
    with ExitCode.FAILED."""
    try:
        with indexing_progress(console, corpus) as advance:
            report = index_corpus(ops, corpus, settings, advance, show_rejections(console))
    except (IncompatibleIndexError, BulkAbort, *ops.errors) as error:
        print_error(console, error, connection)
        if isinstance(error, ops.errors) and "analyzer" in str(error):
            console.print(
                f"hint: the engine may lack the {settings.analyzer!r} analyzer (a node without the "
                "analysis-common module only has 'standard' and a few others); choose another with --analyzer"
            )
        raise typer.Exit(ExitCode.FAILED) from None
    print_report(console, report)
    return report


def index_command(
    path: Annotated[
        Path, typer.Argument(help="A JSONL file, a BEIR or BRIGHT folder, a folder of files, a CSV/TSV.")
    ],
    index: Annotated[
        str, typer.Option("--index", "-i", help="Index to write into.", rich_help_panel=INDEX_PANEL)
    ],
    corpus_format: Annotated[
        CorpusFormat, typer.Option("--format", "-f", help="Input format.", rich_help_panel=SOURCE_PANEL)
    ] = CorpusFormat.AUTO,
    id_field: Annotated[
        str | None,
        typer.Option(help="Field holding the id (default: id, then _id).", rich_help_panel=SOURCE_PANEL),
    ] = None,
    title_field: Annotated[
        str | None,
        typer.Option(help="Field holding the title (default: title).", rich_help_panel=SOURCE_PANEL),
    ] = None,
    text_field: Annotated[
        str | None,
        typer.Option(
            help="Field holding the text (default: text, contents, content).", rich_help_panel=SOURCE_PANEL
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="BRIGHT task, when the export holds several.", rich_help_panel=SOURCE_PANEL),
    ] = None,
    long_documents: Annotated[
        bool,
        typer.Option(
            "--long-documents",
            help="BRIGHT: index long_documents instead of documents.",
            rich_help_panel=SOURCE_PANEL,
        ),
    ] = False,
    engine: EngineOpt = Engine.OPENSEARCH,
    url: UrlOpt = None,
    username: UsernameOpt = None,
    password: PasswordOpt = None,
    api_key: ApiKeyOpt = None,
    ca_certs: CaCertsOpt = None,
    insecure: InsecureOpt = False,
    analyzer: Annotated[
        str | None,
        typer.Option(
            help=f"Analyzer for title and text \\[default: {DEFAULT_ANALYZER}, or standard where the engine lacks it].",
            show_default=False,
            rich_help_panel=INDEX_PANEL,
        ),
    ] = None,
    shards: Annotated[int, typer.Option(min=1, help="Primary shards.", rich_help_panel=INDEX_PANEL)] = 1,
    replicas: Annotated[int, typer.Option(min=0, help="Replicas.", rich_help_panel=INDEX_PANEL)] = 0,
    recreate: Annotated[
        bool,
        typer.Option("--recreate", help="Delete the index first if it exists.", rich_help_panel=INDEX_PANEL),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into an existing index even if its mapping differs.",
            rich_help_panel=INDEX_PANEL,
        ),
    ] = False,
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Documents per bulk request.", rich_help_panel=LOADING_PANEL)
    ] = 500,
    threads: Annotated[
        int, typer.Option(min=1, help="Bulk requests in parallel.", rich_help_panel=LOADING_PANEL)
    ] = 2,
    max_retries: Annotated[
        int,
        typer.Option(
            min=0, help="Retries (with backoff) on 429 and transient errors.", rich_help_panel=LOADING_PANEL
        ),
    ] = 6,
    max_errors: Annotated[
        int | None,
        typer.Option(
            min=0, help="Stop once more records than this are rejected.", rich_help_panel=LOADING_PANEL
        ),
    ] = None,
    max_doc_bytes: Annotated[
        int, typer.Option(min=1, help="Largest title + text (UTF-8 bytes).", rich_help_panel=LOADING_PANEL)
    ] = DEFAULT_MAX_DOC_BYTES,
    truncate_huge: Annotated[
        bool,
        typer.Option(
            "--truncate-huge",
            help="Cut over-long texts to --max-doc-bytes instead of rejecting.",
            rich_help_panel=LOADING_PANEL,
        ),
    ] = False,
    rejects: Annotated[
        Path, typer.Option(help="Where rejected records are written (JSONL).", rich_help_panel=LOADING_PANEL)
    ] = DEFAULT_REJECTS_PATH,
) -> None:
    """Index a corpus for BM25 retrieval and Retro* reranking."""
    connection = engine_connection(engine, url, username, password, api_key, ca_certs, insecure)
    try:
        corpus = open_corpus(
            path, corpus_format, FieldNames(id_field, title_field, text_field), task, long_documents
        )
    except (FormatError, BrightLayoutError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error), param_hint="PATH") from None
    console = Console()
    ops = EngineOps.connect(connection)
    settings = IndexSettings(
        index=index,
        analyzer=pick_analyzer(console, ops, analyzer, connection),
        shards=shards,
        replicas=replicas,
        recreate=recreate,
        force=force,
        max_errors=max_errors,
        max_doc_bytes=max_doc_bytes,
        truncate_huge=truncate_huge,
        rejects_path=rejects,
        bulk=BulkOptions(chunk_size=chunk_size, threads=threads, max_retries=max_retries),
    )
    target = f"{corpus.format_name} corpus {str(path)!r} → {engine.value} {connection.resolved_url} index {index!r}"
    console.print(escape(scrub(target, connection)), highlight=False)
    report = index_with_progress(console, ops, corpus, settings, connection)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    app.command("index")(index_command)
