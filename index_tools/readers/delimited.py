"""CSV and TSV corpora with a header row naming the columns.

CSV follows RFC 4180 (quoted fields may hold commas, quotes and newlines). TSV is the plain IR flavour
(MS MARCO, BEIR qrels): no quoting at all, so a quote character is just text; fields cannot hold tabs or
newlines.

The file is decoded with ``surrogateescape`` so that one row with bytes that are not UTF-8 does not stop
the parser: that row is found afterwards (its fields hold lone surrogates) and rejected with its line.
Each record keeps the exact text of the line(s) it was parsed from, for the rejects file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from index_tools.readers.fields import FieldNames, document_from_row
from index_tools.readers.jsonl import count_lines
from index_tools.records import ReadResult, Rejected, raw_text

# csv's default field limit (128 KiB) would reject ordinary long documents; the size policy applies later.
csv.field_size_limit(2**31 - 1)


def _has_undecodable_bytes(fields: list[str]) -> bool:
    try:
        "".join(fields).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _RecordLines:
    """The lines handed to the csv parser, kept until ``take``: the parser pulls exactly the lines of one
    record (several when a quoted field holds newlines) and never reads ahead, so these are its text."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self._taken: list[str] = []

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._taken.append(line)
        return line

    def take(self) -> str:
        text = "".join(self._taken)
        self._taken.clear()
        return text


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

    def estimated_total(self) -> int | None:
        return None  # size_hint counts lines, always known for a plain file

    def documents(self) -> Iterator[ReadResult]:
        source = str(self.path)
        quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if self.delimiter == "\t" else csv.QUOTE_MINIMAL
        with self.path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as stream:
            lines = _RecordLines(stream)
            reader = csv.reader(lines, delimiter=self.delimiter, quoting=quoting, strict=True)
            header: list[str] | None = None
            while True:
                start_line = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    reason = f"malformed {self.format_name} row: {error}"
                    yield Rejected(source, start_line, reason, raw_text(lines.take()))
                    continue
                raw = lines.take()
                if not row:
                    continue
                if header is None:
                    if _has_undecodable_bytes(row):
                        yield Rejected(
                            source,
                            start_line,
                            "header row is not valid UTF-8; nothing can be read",
                            raw_text(raw),
                        )
                        return
                    header = row
                    continue
                if _has_undecodable_bytes(row):
                    yield Rejected(source, start_line, "invalid UTF-8 in the row", raw_text(raw))
                elif len(row) != len(header):
                    reason = f"row has {len(row)} fields, the header has {len(header)}"
                    yield Rejected(source, start_line, reason, raw_text(raw))
                else:
                    yield document_from_row(
                        dict(zip(header, row, strict=True)), self.fields, source, start_line, raw
                    )
