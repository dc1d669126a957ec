"""Corpus readers: every supported layout streams the same Document / Rejected records.

``open_corpus`` picks the reader (detecting the format when asked to); the BEIR and BRIGHT helpers for
queries and relevance judgements are re-exported here for the evaluation code.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from index_tools.readers.beir import (
    BeirCorpus,
    DataFileError,
    is_beir_folder,
    read_beir_queries,
    read_qrels,
)
from index_tools.readers.bright import BrightExport, BrightLayoutError, is_bright_folder
from index_tools.readers.delimited import DelimitedCorpus
from index_tools.readers.fields import FieldNames
from index_tools.readers.files import FilesCorpus, html_to_text
from index_tools.readers.jsonl import count_lines, is_jsonl, read_jsonl, total_count
from index_tools.records import ReadResult
from retrostar_search.errors import InvalidInput

__all__ = [
    "BeirCorpus",
    "BrightExport",
    "BrightLayoutError",
    "Corpus",
    "CorpusFormat",
    "DataFileError",
    "FieldNames",
    "FilesCorpus",
    "FormatError",
    "JsonlCorpus",
    "detect_format",
    "html_to_text",
    "open_corpus",
    "read_beir_queries",
    "read_jsonl",
    "read_qrels",
]


class CorpusFormat(StrEnum):
    AUTO = "auto"
    JSONL = "jsonl"
    BEIR = "beir"
    BRIGHT = "bright"
    FILES = "files"
    CSV = "csv"
    TSV = "tsv"


class FormatError(InvalidInput):
    """The path does not hold the format asked for, or its format cannot be told."""


class Corpus(Protocol):
    format_name: str
    # Things worth telling the user that are not rejected records (e.g. files of other types skipped).
    warnings: list[str]

    def documents(self) -> Iterator[ReadResult]: ...

    def size_hint(self) -> int | None:
        """About how many records ``documents`` yields, when that is cheap to know; else None."""
        ...


class JsonlCorpus:
    """One JSONL file, or every ``.jsonl``/``.jsonl.gz`` file under a folder (sorted)."""

    format_name = "jsonl"

    def __init__(self, path: Path, fields: FieldNames = FieldNames()) -> None:
        self.files = (
            sorted(p for p in path.rglob("*") if is_jsonl(p) and p.is_file()) if path.is_dir() else [path]
        )
        if not self.files:
            raise FormatError(f"{path} holds no .jsonl or .jsonl.gz file")
        self.fields = fields
        self.warnings: list[str] = []

    def documents(self) -> Iterator[ReadResult]:
        for file in self.files:
            yield from read_jsonl(file, self.fields)

    def size_hint(self) -> int | None:
        return total_count(count_lines(file) for file in self.files)


def detect_format(path: Path) -> CorpusFormat:
    """The format of ``path`` from its name (files) or the layout inside it (folders)."""
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".jsonl", ".jsonl.gz")):
            return CorpusFormat.JSONL
        if name.endswith(".csv"):
            return CorpusFormat.CSV
        if name.endswith(".tsv"):
            return CorpusFormat.TSV
        raise FormatError(f"cannot tell the format of {path}; name it with --format")
    if not path.is_dir():
        raise FormatError(f"{path} does not exist")
    if is_beir_folder(path):
        return CorpusFormat.BEIR
    if is_bright_folder(path):
        return CorpusFormat.BRIGHT
    return CorpusFormat.FILES


def open_corpus(
    path: Path,
    corpus_format: CorpusFormat = CorpusFormat.AUTO,
    fields: FieldNames = FieldNames(),
    bright_task: str | None = None,
    long_documents: bool = False,
) -> Corpus:
    """The reader for ``path``; raises FormatError (or BrightLayoutError) when it cannot be read so."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path} does not exist")
    if corpus_format is CorpusFormat.AUTO:
        corpus_format = detect_format(path)
    needs_folder = corpus_format in {CorpusFormat.BEIR, CorpusFormat.BRIGHT, CorpusFormat.FILES}
    if needs_folder and not path.is_dir():
        raise FormatError(f"--format {corpus_format} needs a folder; {path} is a file")
    match corpus_format:
        case CorpusFormat.JSONL:
            return JsonlCorpus(path, fields)
        case CorpusFormat.BEIR:
            if not is_beir_folder(path):
                raise FormatError(f"{path} is not a BEIR folder (no corpus.jsonl or corpus.jsonl.gz)")
            return BeirCorpus(path, fields)
        case CorpusFormat.BRIGHT:
            return BrightExport(path, task=bright_task, long_documents=long_documents, fields=fields)
        case CorpusFormat.FILES:
            return FilesCorpus(path)
        case CorpusFormat.CSV | CorpusFormat.TSV:
            if path.is_dir():
                raise FormatError(f"--format {corpus_format} needs a file; {path} is a folder")
            return DelimitedCorpus(path, "\t" if corpus_format is CorpusFormat.TSV else ",", fields)
    raise FormatError(f"unknown format {corpus_format}")
