"""Query lists, for runs over many queries (`retrosearch warm`): a BEIR folder or its ``queries.jsonl``,
JSON Lines of ``{"_id", "text"}`` (``.jsonl``, ``.jsonl.gz``), or TSV ``id<TAB>text`` (MS MARCO's
``queries.*.tsv``, ``.tsv``, ``.tsv.gz``).

Read whole, in file order, and strictly, as evaluation reads BEIR queries: a malformed line is an error
that names the file and the line, raised before any query is run.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from index_tools.readers.beir import DataFileError, read_beir_queries
from index_tools.readers.jsonl import JSONL_SUFFIXES, open_lines

TSV_SUFFIXES = (".tsv", ".tsv.gz")


class QueryFormat(StrEnum):
    AUTO = "auto"
    BEIR = "beir"  # a BEIR folder (its queries.jsonl)
    JSONL = "jsonl"
    TSV = "tsv"


def query_format_of(path: Path) -> QueryFormat:
    """The format the path's name or kind says; a DataFileError when it says none."""
    if path.is_dir():
        return QueryFormat.BEIR
    if path.name.endswith(JSONL_SUFFIXES):
        return QueryFormat.JSONL
    if path.name.endswith(TSV_SUFFIXES):
        return QueryFormat.TSV
    raise DataFileError(
        f"{path}: cannot tell the query format from the name; expected a BEIR folder, .jsonl[.gz] or "
        ".tsv[.gz] (or give --format)"
    )


def read_queries(path: Path, query_format: QueryFormat = QueryFormat.AUTO) -> dict[str, str]:
    """Query id → query text, in file order."""
    if not path.exists():
        raise DataFileError(f"{path}: no such file or folder")
    if query_format is QueryFormat.AUTO:
        query_format = query_format_of(path)
    if query_format is QueryFormat.TSV:
        return read_tsv_queries(path)
    if query_format is QueryFormat.BEIR and not path.is_dir():
        raise DataFileError(f"{path}: a BEIR query list is a folder holding queries.jsonl")
    return read_beir_queries(path)


def read_tsv_queries(path: Path) -> dict[str, str]:
    """``id<TAB>text`` lines (blank lines skipped); the text is everything after the first tab."""
    queries: dict[str, str] = {}
    with open_lines(path) as stream:
        for line_no, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise DataFileError(f"{path}:{line_no}: invalid UTF-8 at byte {error.start}") from None
            if line_no == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            query_id, tab, text = line.partition("\t")
            if not tab or not query_id.strip() or not text.strip():
                raise DataFileError(f"{path}:{line_no}: expected id<TAB>text")
            queries[query_id.strip()] = text.strip()
    return queries
