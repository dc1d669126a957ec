"""JSON Lines corpora (``.jsonl`` and ``.jsonl.gz``), read one line at a time.

Lines are read as bytes and decoded one by one, so a line that is not UTF-8 is rejected with its line
number while the lines around it are still indexed. Each document keeps its line's bytes (``raw``) so that
a later rejection quotes the line exactly.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from io import BufferedIOBase
from pathlib import Path
from typing import IO

from index_tools.readers.fields import FieldNames, document_from_row
from index_tools.records import ReadResult, Rejected, raw_text

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


def is_jsonl(path: Path) -> bool:
    return path.name.endswith(JSONL_SUFFIXES)


class ReadMeter:
    """How far reading has got through a set of files: records, and bytes as stored (compressed for gzip).

    A gzip file cannot say how many records it holds without decompressing it all; the share of its
    compressed bytes read so far can, as the reading goes, estimate it (see ``estimated_records``).
    """

    def __init__(self, files: Iterable[Path]) -> None:
        self.total_bytes = sum(file.stat().st_size for file in files)
        self.records = 0
        self._finished_bytes = 0
        self._current: IO[bytes] | None = None

    @property
    def bytes_read(self) -> int:
        current = self._current.tell() if self._current is not None and not self._current.closed else 0
        return self._finished_bytes + current

    def estimated_records(self) -> int | None:
        """Records read so far scaled by the share of bytes read; None before the first record."""
        bytes_read = self.bytes_read
        if not self.records or not bytes_read:
            return None
        return max(self.records, round(self.records * self.total_bytes / bytes_read))

    @contextmanager
    def reading(self, file: IO[bytes]) -> Iterator[None]:
        self._current = file
        try:
            yield
        finally:
            self._finished_bytes += file.tell()
            self._current = None


@contextmanager
def open_lines(path: Path, meter: ReadMeter | None = None) -> Iterator[BufferedIOBase]:
    """The file's lines as bytes, decompressed when the name ends in ``.gz``; ``meter`` follows the
    bytes read from the file as stored."""
    with path.open("rb") as stored:
        stream: BufferedIOBase = (
            gzip.GzipFile(fileobj=stored, mode="rb") if path.name.endswith(".gz") else stored
        )
        with stream:
            if meter is None:
                yield stream
            else:
                with meter.reading(stored):
                    yield stream


def iter_json_lines(
    path: Path, meter: ReadMeter | None = None
) -> Iterator[tuple[int, bytes, object | Rejected]]:
    """(line number, raw bytes, parsed JSON value or a Rejected) for every non-blank line."""
    source = str(path)
    line_no = 0
    try:
        with open_lines(path, meter) as stream:
            for line_no, raw in enumerate(stream, start=1):
                if not raw.strip():
                    continue
                if meter is not None:
                    meter.records += 1
                yield line_no, raw, _parse_line(raw, source, line_no)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        # A truncated or corrupt archive cannot be read past this point; say where it broke.
        yield line_no + 1, b"", Rejected(source, line_no + 1, f"cannot read the rest of the file: {error}")


def _parse_line(raw: bytes, source: str, line_no: int) -> object | Rejected:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejected(source, line_no, f"invalid UTF-8 at byte {error.start} of the line", raw_text(raw))
    if line_no == 1:
        text = text.removeprefix("\ufeff")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        return Rejected(source, line_no, f"invalid JSON: {error.msg} at column {error.colno}", raw_text(raw))
    except RecursionError:
        # Valid JSON, but nested deeper than Python's parser goes (about 1,000 levels): this line only.
        return Rejected(source, line_no, "JSON nested too deeply to read", raw_text(raw))


def read_jsonl(
    path: Path, fields: FieldNames = FieldNames(), meter: ReadMeter | None = None
) -> Iterator[ReadResult]:
    """Documents from one JSONL file; every bad line comes out as a Rejected with its line number."""
    source = str(path)
    for line_no, raw, value in iter_json_lines(path, meter):
        if isinstance(value, Rejected):
            yield value
        elif not isinstance(value, dict):
            yield Rejected(
                source, line_no, f"expected a JSON object, got {type(value).__name__}", raw_text(raw)
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
