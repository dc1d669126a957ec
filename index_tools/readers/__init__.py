"""Corpus readers: every supported layout streams the same Document / Rejected records.

``open_corpus`` picks the reader (detecting the format when asked to, and refusing a format that the path
plainly is not: a BEIR or BRIGHT folder read as anything else would index the wrong files); the BEIR and
BRIGHT helpers for queries and relevance judgements are re-exported here for the evaluation code.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from index_tools.readers.beir import (
    CORPUS_NAMES,
    BeirCorpus,
    DataFileError,
    beir_markers,
    is_beir_folder,
    read_beir_queries,
    read_qrels,
)
from index_tools.readers.bright import BrightExport, BrightLayoutError, bright_markers, is_bright_folder
from index_tools.readers.delimited import DelimitedCorpus
from index_tools.readers.fields import FieldNames
from index_tools.readers.files import SUPPORTED_SUFFIXES, FilesCorpus, html_to_text, visible_files
from index_tools.readers.jsonl import (
    JSONL_SUFFIXES,
    ReadMeter,
    count_lines,
    is_jsonl,
    read_jsonl,
    total_count,
)
from index_tools.readers.queries import QueryFormat, read_queries
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
    "QueryFormat",
    "detect_format",
    "html_to_text",
    "open_corpus",
    "read_beir_queries",
    "read_jsonl",
    "read_qrels",
    "read_queries",
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

    def estimated_total(self) -> int | None:
        """Where ``size_hint`` is None (gzip): an estimate made while ``documents`` runs, from the share
        of the files' bytes read so far; None before the first record or when it cannot tell."""
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
        self.meter = ReadMeter(self.files)

    def documents(self) -> Iterator[ReadResult]:
        for file in self.files:
            yield from read_jsonl(file, self.fields, self.meter)

    def size_hint(self) -> int | None:
        return total_count(count_lines(file) for file in self.files)

    def estimated_total(self) -> int | None:
        return self.meter.estimated_records()


FOLDER_FORMATS = frozenset({CorpusFormat.BEIR, CorpusFormat.BRIGHT, CorpusFormat.FILES})
FILE_FORMATS = frozenset({CorpusFormat.CSV, CorpusFormat.TSV})

# What a format does with a BEIR or BRIGHT folder that it was not made for.
_MISREAD = {
    CorpusFormat.JSONL: "would index every .jsonl file in it as documents, queries included",
    CorpusFormat.FILES: "would index only its .txt, .md and .html files",
    CorpusFormat.BEIR: "reads corpus.jsonl, which it does not have",
    CorpusFormat.BRIGHT: "reads documents it does not have",
    CorpusFormat.CSV: "reads one file",
    CorpusFormat.TSV: "reads one file",
}


def format_from_name(path: Path) -> CorpusFormat | None:
    """The format a file's name gives (``.jsonl[.gz]``, ``.csv``, ``.tsv``), else None."""
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return CorpusFormat.JSONL
    if name.endswith(".csv"):
        return CorpusFormat.CSV
    if name.endswith(".tsv"):
        return CorpusFormat.TSV
    return None


def folder_layout(path: Path) -> tuple[CorpusFormat, list[str]] | None:
    """BEIR or BRIGHT, with the entries that make ``path`` one; None for any other folder."""
    if is_beir_folder(path):
        return CorpusFormat.BEIR, beir_markers(path)
    if is_bright_folder(path):
        return CorpusFormat.BRIGHT, bright_markers(path)
    return None


def detect_format(path: Path) -> CorpusFormat:
    """The format of ``path`` from its name (files) or the layout inside it (folders).

    A folder that is neither BEIR nor BRIGHT is a folder of files, or of JSONL files when it holds
    ``.jsonl[.gz]`` files and no text files; both kinds at once is ambiguous and refused.
    """
    if path.is_file():
        corpus_format = format_from_name(path)
        if corpus_format is None:
            raise FormatError(f"cannot tell the format of {path}; name it with --format")
        return corpus_format
    if not path.is_dir():
        raise FormatError(f"{path} does not exist")
    if layout := folder_layout(path):
        return layout[0]
    has_jsonl = has_text = False
    for file in visible_files(path):
        has_jsonl = has_jsonl or is_jsonl(file)
        has_text = has_text or file.suffix.lower() in SUPPORTED_SUFFIXES
        if has_jsonl and has_text:
            raise FormatError(
                f"{path} holds both .jsonl files and text files (.txt, .md, .html): "
                "choose with --format jsonl or --format files"
            )
    return CorpusFormat.JSONL if has_jsonl else CorpusFormat.FILES


def check_format(path: Path, corpus_format: CorpusFormat) -> None:
    """Refuse a format the path plainly is not, naming what it is and the flag to use.

    Refused rather than corrected: a --format given by hand says what the user believes the data is,
    and when that is wrong the safe course is to index nothing and say so (the detected format is the
    default anyway). A BEIR or BRIGHT folder read as anything else, a file given a folder format, and a
    file whose name says JSONL read as CSV/TSV (or the reverse) are refused.
    """
    if path.is_dir():
        layout = folder_layout(path)
        if layout is not None and layout[0] is not corpus_format:
            detected, markers = layout
            raise FormatError(
                f"{path} is a {detected.value.upper()} folder ({', '.join(markers)}): --format "
                f"{corpus_format} {_MISREAD[corpus_format]}. Use --format {detected}, or leave --format out "
                "to detect it."
            )
        if corpus_format in FILE_FORMATS:
            raise FormatError(f"--format {corpus_format} needs a file; {path} is a folder")
        return
    named = format_from_name(path)
    if corpus_format in FOLDER_FORMATS:
        hint = ""
        if path.name in CORPUS_NAMES and is_beir_folder(path.parent):
            hint = f"; it is the corpus of the BEIR folder {path.parent}: pass that folder"
        elif named is not None:
            hint = f"; it is a {named} file: use --format {named}"
        raise FormatError(f"--format {corpus_format} needs a folder; {path} is a file{hint}")
    if named is not None and (named is CorpusFormat.JSONL) != (corpus_format is CorpusFormat.JSONL):
        raise FormatError(f"{path} is a {named} file by its name, not {corpus_format}: use --format {named}")


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
    else:
        check_format(path, corpus_format)
    match corpus_format:
        case CorpusFormat.JSONL:
            return JsonlCorpus(path, fields)
        case CorpusFormat.BEIR:
            if not is_beir_folder(path):
                raise FormatError(
                    f"{path} is not a BEIR folder (no corpus.jsonl or corpus.jsonl.gz){_detected_hint(path)}"
                )
            return BeirCorpus(path, fields)
        case CorpusFormat.BRIGHT:
            return BrightExport(path, task=bright_task, long_documents=long_documents, fields=fields)
        case CorpusFormat.FILES:
            if not any(file.suffix.lower() in SUPPORTED_SUFFIXES for file in visible_files(path)):
                raise FormatError(f"{path} holds no .txt, .md or .html file{_detected_hint(path)}")
            return FilesCorpus(path)
        case CorpusFormat.CSV | CorpusFormat.TSV:
            delimiter = "\t" if corpus_format is CorpusFormat.TSV else ","
            _check_header(path, corpus_format, delimiter)
            return DelimitedCorpus(path, delimiter, fields)
    raise FormatError(f"unknown format {corpus_format}")


def _check_header(path: Path, corpus_format: CorpusFormat, delimiter: str) -> None:
    """Refuse a CSV read as TSV or the reverse: its header would be one column, every row rejected."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as stream:
        header = stream.readline()
    other = "," if delimiter == "\t" else "\t"
    if delimiter not in header and other in header:
        looks_like = CorpusFormat.CSV if other == "," else CorpusFormat.TSV
        separator = "comma" if other == "," else "tab"
        raise FormatError(
            f"the header row of {path} is separated by {separator}s, not read as {corpus_format}: "
            f"use --format {looks_like}"
        )


def _detected_hint(folder: Path) -> str:
    try:
        detected = detect_format(folder)
    except FormatError:
        return ""
    return (
        ""
        if detected is CorpusFormat.FILES
        else f"; it looks like a {detected} corpus: use --format {detected}"
    )
