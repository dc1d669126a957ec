"""JSON Lines corpora (``.jsonl`` and ``.jsonl.gz``), read one line at a time.

Lines are read as bytes and decoded one by one, so a line that is not UTF-8 is rejected with its line
number while the lines around it are still indexed.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from io import BufferedIOBase
from pathlib import Path

from index_tools.readers.fields import FieldNames, document_from_row
from index_tools.records import ReadResult, Rejected, excerpt

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


def is_jsonl(path: Path) -> bool:
    return path.name.endswith(JSONL_SUFFIXES)


def open_binary(path: Path) -> BufferedIOBase:
    """The file's bytes, decompressed when the name ends in ``.gz``."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def iter_json_lines(path: Path) -> Iterator[tuple[int, bytes, object | Rejected]]:
    """(line number, raw bytes, parsed JSON value or a Rejected) for every non-blank line."""
    source = str(path)
    line_no = 0
    try:
        with open_binary(path) as stream:
            for line_no, raw in enumerate(stream, start=1):
                if not raw.strip():
                    continue
                yield line_no, raw, _parse_line(raw, source, line_no)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        # A truncated or corrupt archive cannot be read past this point; say where it broke.
        yield line_no + 1, b"", Rejected(source, line_no + 1, f"cannot read the rest of the file: {error}")


def _parse_line(raw: bytes, source: str, line_no: int) -> object | Rejected:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejected(source, line_no, f"invalid UTF-8 at byte {error.start} of the line", excerpt(raw))
    if line_no == 1:
        text = text.removeprefix("\ufeff")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        return Rejected(source, line_no, f"invalid JSON: {error.msg} at column {error.colno}", excerpt(raw))


def read_jsonl(path: Path, fields: FieldNames = FieldNames()) -> Iterator[ReadResult]:
    """Documents from one JSONL file; every bad line comes out as a Rejected with its line number."""
    source = str(path)
    for line_no, raw, value in iter_json_lines(path):
        if isinstance(value, Rejected):
            yield value
        elif not isinstance(value, dict):
            yield Rejected(
                source, line_no, f"expected a JSON object, got {type(value).__name__}", excerpt(raw)
            )
        else:
            yield document_from_row(value, fields, source, line_no, raw)


def count_lines(path: Path) -> int | None:
    """Line count of an uncompressed file (a cheap upper bound on its records); None for gzip."""
    if path.name.endswith(".gz"):
        return None
    count = 0
    last = b"\n"
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def total_count(counts: Iterable[int | None]) -> int | None:
    """The sum of per-file counts, or None when any is unknown: a partial total would pass for the whole."""
    total = 0
    for count in counts:
        if count is None:
            return None
        total += count
    return total
