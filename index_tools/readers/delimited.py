"""CSV and TSV corpora with a header row naming the columns.

CSV follows RFC 4180 (quoted fields may hold commas, quotes and newlines). TSV is the plain IR flavour
(MS MARCO, BEIR qrels): no quoting at all, so a quote character is just text; fields cannot hold tabs or
newlines.

The file is decoded with ``surrogateescape`` so that one row with bytes that are not UTF-8 does not stop
the parser: that row is found afterwards (its fields hold lone surrogates) and rejected with its line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from index_tools.readers.fields import FieldNames, document_from_row
from index_tools.readers.jsonl import count_lines
from index_tools.records import ReadResult, Rejected, excerpt

# csv's default field limit (128 KiB) would reject ordinary long documents; the size policy applies later.
csv.field_size_limit(2**31 - 1)


def _has_undecodable_bytes(fields: list[str]) -> bool:
    try:
        "".join(fields).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class DelimitedCorpus:
    """A CSV (``delimiter=","``) or TSV (``delimiter="\\t"``) file read one row at a time."""

    def __init__(self, path: Path, delimiter: str, fields: FieldNames = FieldNames()) -> None:
        self.path = path
        self.delimiter = delimiter
        self.fields = fields
        self.format_name = "tsv" if delimiter == "\t" else "csv"
        self.warnings: list[str] = []

    def size_hint(self) -> int | None:
        lines = count_lines(self.path)
        return None if lines is None else max(lines - 1, 0)

    def documents(self) -> Iterator[ReadResult]:
        source = str(self.path)
        quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if self.delimiter == "\t" else csv.QUOTE_MINIMAL
        with self.path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as stream:
            reader = csv.reader(stream, delimiter=self.delimiter, quoting=quoting, strict=True)
            header: list[str] | None = None
            while True:
                start_line = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    yield Rejected(source, start_line, f"malformed {self.format_name} row: {error}")
                    continue
                if not row:
                    continue
                if header is None:
                    if _has_undecodable_bytes(row):
                        yield Rejected(
                            source, start_line, "header row is not valid UTF-8; nothing can be read"
                        )
                        return
                    header = row
                    continue
                if _has_undecodable_bytes(row):
                    raw = self.delimiter.join(row).encode(errors="surrogateescape")
                    yield Rejected(source, start_line, "invalid UTF-8 in the row", excerpt(raw))
                elif len(row) != len(header):
                    reason = f"row has {len(row)} fields, the header has {len(header)}"
                    yield Rejected(source, start_line, reason, excerpt(self.delimiter.join(row)))
                else:
                    yield document_from_row(
                        dict(zip(header, row, strict=True)), self.fields, source, start_line
                    )
