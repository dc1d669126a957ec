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

from index_tools.bulk import BulkOptions
from index_tools.engine import EngineOps
from index_tools.mapping import DEFAULT_ANALYZER, choose_analyzer
from index_tools.policy import DEFAULT_MAX_DOC_BYTES
from index_tools.progress import indexing_progress
from index_tools.readers import (
    Corpus,
    CorpusFormat,
    FieldNames,
    open_corpus,
)
from index_tools.records import Rejected
from index_tools.rejects import DEFAULT_REJECTS_PATH
from index_tools.run import IndexReport, IndexSettings, index_corpus
from retrostar_search.cli.connection import ENGINE, connection_options, open_engine
from retrostar_search.cli.errors import command_errors, fail, scrub
from retrostar_search.cli.options import in_panel
from retrostar_search.engines.connection import EngineConnection
from retrostar_search.engines.errors import engine_errors
from retrostar_search.errors import InvalidInput

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
    except engine_errors() as error:
        fail(console, error, connection=connection)
    if note:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    return analyzer


def index_with_progress(
    console: Console, ops: EngineOps, corpus: Corpus, settings: IndexSettings, connection: EngineConnection
) -> IndexReport:
    """``index_corpus`` under a progress bar, then its report; a failure is printed and ends the command."""
    try:
        with indexing_progress(console, corpus) as advance:
            report = index_corpus(ops, corpus, settings, advance, show_rejections(console))
    except command_errors() as error:
        hint = None
        if isinstance(error, engine_errors()) and "analyzer" in str(error):
            hint = (
                f"the engine may lack the {settings.analyzer!r} analyzer (a node without the analysis-common "
                "module only has 'standard' and a few others); choose another with --analyzer"
            )
        fail(console, error, connection=connection, hint=hint)
    print_report(console, report)
    return report


_source, _index, _loading = in_panel(SOURCE_PANEL), in_panel(INDEX_PANEL), in_panel(LOADING_PANEL)

PathArg = Annotated[
    Path, typer.Argument(help="A JSONL file, a BEIR or BRIGHT folder, a folder of files, a CSV/TSV.")
]
IndexOpt = Annotated[str, _index("Index to write into.", "--index", "-i")]
FormatOpt = Annotated[CorpusFormat, _source("Input format.", "--format", "-f")]
IdFieldOpt = Annotated[str | None, _source("Field holding the id (default: id, then _id).")]
TitleFieldOpt = Annotated[str | None, _source("Field holding the title (default: title).")]
TextFieldOpt = Annotated[str | None, _source("Field holding the text (default: text, contents, content).")]
TaskOpt = Annotated[str | None, _source("BRIGHT task, when the export holds several.")]
LongDocumentsOpt = Annotated[
    bool, _source("BRIGHT: index long_documents instead of documents.", "--long-documents")
]
AnalyzerOpt = Annotated[
    str | None,
    _index(
        f"Analyzer for title and text \\[default: {DEFAULT_ANALYZER}, or standard where the engine lacks it].",
        show_default=False,
    ),
]
ShardsOpt = Annotated[int, _index("Primary shards.", min=1)]
ReplicasOpt = Annotated[int, _index("Replicas.", min=0)]
RecreateOpt = Annotated[bool, _index("Delete the index first if it exists.", "--recreate")]
ForceOpt = Annotated[bool, _index("Write into an existing index even if its mapping differs.", "--force")]
ChunkSizeOpt = Annotated[int, _loading("Documents per bulk request.", min=1)]
ThreadsOpt = Annotated[int, _loading("Bulk requests in parallel.", min=1)]
MaxRetriesOpt = Annotated[int, _loading("Retries (with backoff) on 429 and transient errors.", min=0)]
MaxErrorsOpt = Annotated[int | None, _loading("Stop once more records than this are rejected.", min=0)]
MaxDocBytesOpt = Annotated[int, _loading("Largest title + text (UTF-8 bytes).", min=1)]
TruncateHugeOpt = Annotated[
    bool, _loading("Cut over-long texts to --max-doc-bytes instead of rejecting.", "--truncate-huge")
]
RejectsOpt = Annotated[Path, _loading("Where rejected records are written (JSONL).")]


@connection_options(ENGINE)
def index_command(
    *,
    path: PathArg,
    index: IndexOpt,
    corpus_format: FormatOpt = CorpusFormat.AUTO,
    id_field: IdFieldOpt = None,
    title_field: TitleFieldOpt = None,
    text_field: TextFieldOpt = None,
    task: TaskOpt = None,
    long_documents: LongDocumentsOpt = False,
    connection: EngineConnection,
    analyzer: AnalyzerOpt = None,
    shards: ShardsOpt = 1,
    replicas: ReplicasOpt = 0,
    recreate: RecreateOpt = False,
    force: ForceOpt = False,
    chunk_size: ChunkSizeOpt = 500,
    threads: ThreadsOpt = 2,
    max_retries: MaxRetriesOpt = 6,
    max_errors: MaxErrorsOpt = None,
    max_doc_bytes: MaxDocBytesOpt = DEFAULT_MAX_DOC_BYTES,
    truncate_huge: TruncateHugeOpt = False,
    rejects: RejectsOpt = DEFAULT_REJECTS_PATH,
) -> None:
    """Index a corpus for BM25 retrieval and Retro* reranking."""
    try:
        corpus = open_corpus(
            path, corpus_format, FieldNames(id_field, title_field, text_field), task, long_documents
        )
    except (InvalidInput, FileNotFoundError) as error:
        raise typer.BadParameter(str(error), param_hint="PATH") from None
    console = Console()
    # Reached first: an engine that does not answer fails here, before any note or progress bar.
    ops = EngineOps(open_engine(console, connection), connection.engine)
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
    target = f"{corpus.format_name} corpus {str(path)!r} → {connection.engine.value} {connection.resolved_url} index {index!r}"
    console.print(escape(scrub(target, connection)), highlight=False)
    report = index_with_progress(console, ops, corpus, settings, connection)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    app.command("index")(index_command)
