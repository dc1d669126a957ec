"""BRIGHT exports in the Hugging Face layout (``xlangai/BRIGHT``), as parquet or JSONL.

Two layouts are recognised:

* the dataset repository's: ``documents/<task>-00000-of-00001.parquet``, ``examples/<task>-....parquet``
  (and ``long_documents/``), several tasks side by side: pick one with ``task``;
* a single task saved flat: ``documents.parquet`` (or ``.jsonl``/``.jsonl.gz``) and ``examples.parquet``.

``documents`` rows are ``id``/``content``; ``examples`` rows carry ``id``, ``query``, ``gold_ids``
(``gold_ids_long`` for long documents) and ``excluded_ids``: ids that must be removed from a query's
ranking before scoring, as BRIGHT's own evaluation does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from index_tools.readers.fields import FieldNames, document_from_row
from index_tools.readers.jsonl import JSONL_SUFFIXES, ReadMeter, count_lines, iter_json_lines, total_count
from index_tools.records import RawRecord, ReadResult, Rejected, lone_surrogate, raw_text
from retrostar_search.errors import InvalidInput
from retrostar_search.extras import import_extra

ROW_SUFFIXES = (".parquet", *JSONL_SUFFIXES)
# BRIGHT fills excluded_ids with this placeholder when a query has none.
NO_EXCLUSION = "N/A"
PARQUET_BATCH_ROWS = 1024
CONFIGS = ("documents", "long_documents", "examples")


class BrightLayoutError(InvalidInput):
    """The folder is not a BRIGHT export, or the task to read is ambiguous or missing."""


def _row_files(folder: Path, config: str, task: str | None) -> dict[str, list[Path]]:
    """Task name → its files for one config (documents, long_documents, examples)."""
    for suffix in ROW_SUFFIXES:
        flat = folder / f"{config}{suffix}"
        if flat.is_file():
            return {task or folder.name: [flat]}
    config_dir = folder / config
    if not config_dir.is_dir():
        return {}
    by_task: dict[str, list[Path]] = {}
    for file in sorted(config_dir.iterdir()):
        row_suffix = next((s for s in ROW_SUFFIXES if file.name.endswith(s)), None)
        if row_suffix is None or not file.is_file():
            continue
        # "biology-00000-of-00001.parquet" and "biology.jsonl" both belong to task "biology".
        stem = file.name.removesuffix(row_suffix)
        name = stem.split("-", 1)[0] if "-of-" in stem else stem
        by_task.setdefault(name, []).append(file)
    return by_task


def is_bright_folder(path: Path) -> bool:
    return path.is_dir() and any(_row_files(path, config, None) for config in ("documents", "long_documents"))


def bright_markers(folder: Path) -> list[str]:
    """What makes ``folder`` a BRIGHT export, as shown to a user: ``documents/``, ``examples.parquet``..."""
    return [
        entry.name + ("/" if entry.is_dir() else "")
        for entry in sorted(folder.iterdir())
        if entry.name in CONFIGS
        or any(entry.name == config + suffix for config in CONFIGS for suffix in ROW_SUFFIXES)
    ]


def _parquet() -> Any:
    return import_extra("pyarrow.parquet", "parquet", "reading parquet (BRIGHT exports)")


def iter_rows(
    file: Path, meter: ReadMeter | None = None
) -> Iterator[tuple[int, RawRecord, dict[str, Any] | Rejected]]:
    """(1-based row or line number, the record as read, row) from a parquet or JSONL file, one batch in
    memory at a time; ``meter`` follows a JSONL file's bytes."""
    if file.name.endswith(".parquet"):
        yield from _parquet_rows(file)
        return
    for line_no, raw, value in iter_json_lines(file, meter):
        if isinstance(value, dict | Rejected):
            yield line_no, raw, value
        else:
            reason = f"expected a JSON object, got {type(value).__name__}"
            yield line_no, raw, Rejected(str(file), line_no, reason, raw_text(raw))


def _parquet_rows(file: Path) -> Iterator[tuple[int, RawRecord, dict[str, Any] | Rejected]]:
    row_no = 0
    for batch in _parquet().ParquetFile(file).iter_batches(batch_size=PARQUET_BATCH_ROWS):
        try:
            rows: list[dict[str, Any] | Rejected] = batch.to_pylist()
        except UnicodeDecodeError:
            # A string column holds bytes that are not UTF-8 (parquet writers need not check): that
            # batch is read again value by value, to reject only the rows at fault.
            rows = [_checked_row(batch, index, file, row_no + index + 1) for index in range(batch.num_rows)]
        for row in rows:
            row_no += 1
            # A parquet row has no text of its own: it stands for itself (a Rejected carries its own raw).
            yield row_no, (row if isinstance(row, dict) else row.raw), row


def _checked_row(batch: Any, index: int, file: Path, row_no: int) -> dict[str, Any] | Rejected:
    row: dict[str, Any] = {}
    bad_columns = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        try:
            row[name] = column[index].as_py()
        except UnicodeDecodeError:
            bad_columns.append(name)
            row[name] = _undecoded(column[index])
    if not bad_columns:
        return row
    return Rejected(str(file), row_no, f"invalid UTF-8 in column {', '.join(bad_columns)}", raw_text(row))


def _undecoded(value: Any) -> str:
    """A parquet string that is not UTF-8, as its bytes decoded with surrogateescape (see raw_text)."""
    import pyarrow

    if pyarrow.types.is_string(value.type) or pyarrow.types.is_large_string(value.type):
        return bytes(value.cast(pyarrow.binary()).as_py()).decode("utf-8", errors="surrogateescape")
    return "<not valid UTF-8>"  # nested inside a list or struct: no single string to show


def _row_count(file: Path) -> int | None:
    if file.name.endswith(".parquet"):
        return _parquet().ParquetFile(file).metadata.num_rows
    return count_lines(file)


class BrightExport:
    """One BRIGHT task: its documents to index, and its queries, qrels and excluded ids for evaluation."""

    format_name = "bright"

    def __init__(
        self,
        folder: Path,
        task: str | None = None,
        long_documents: bool = False,
        fields: FieldNames = FieldNames(),
    ) -> None:
        self.folder = folder
        self.long_documents = long_documents
        self.fields = fields
        self.warnings: list[str] = []
        config = "long_documents" if long_documents else "documents"
        by_task = _row_files(folder, config, task)
        if not by_task:
            raise BrightLayoutError(f"{folder} has no BRIGHT {config} (.parquet, .jsonl or .jsonl.gz)")
        if task is None:
            if len(by_task) > 1:
                raise BrightLayoutError(
                    f"{folder} holds several BRIGHT tasks; pick one with --task: "
                    + ", ".join(sorted(by_task))
                )
            task = next(iter(by_task))
        if task not in by_task:
            raise BrightLayoutError(
                f"no task {task!r} in {folder / config}; found: {', '.join(sorted(by_task))}"
            )
        self.task = task
        self.document_files = by_task[task]
        if any(file.name.endswith(".parquet") for file in self.document_files):
            _parquet()  # fail now, with the install hint, rather than halfway through indexing
        self.meter = ReadMeter(self.document_files)

    def documents(self) -> Iterator[ReadResult]:
        for file in self.document_files:
            for row_no, raw, row in iter_rows(file, self.meter):
                if isinstance(row, Rejected):
                    yield row
                else:
                    yield document_from_row(row, self.fields, str(file), row_no, raw)

    def size_hint(self) -> int | None:
        return total_count(_row_count(file) for file in self.document_files)

    def estimated_total(self) -> int | None:
        return self.meter.estimated_records()

    def _examples(self) -> Iterator[tuple[Path, int, dict[str, Any]]]:
        files = _row_files(self.folder, "examples", self.task).get(self.task)
        if not files:
            raise BrightLayoutError(f"{self.folder} has no BRIGHT examples for task {self.task!r}")
        for file in files:
            for row_no, _raw, row in iter_rows(file):
                if isinstance(row, Rejected):
                    raise BrightLayoutError(f"{row.location}: {row.reason}")
                yield file, row_no, row

    def queries(self) -> dict[str, str]:
        """Query id → query text."""
        queries: dict[str, str] = {}
        for file, row_no, row in self._examples():
            if isinstance(row["query"], str) and (problem := lone_surrogate(row["query"], "the query")):
                raise BrightLayoutError(f"{file}:{row_no}: {problem}")
            queries[str(row["id"])] = row["query"]
        return queries

    def qrels(self) -> dict[str, dict[str, int]]:
        """Query id → {gold document id → 1}, from ``gold_ids`` (``gold_ids_long`` for long documents)."""
        key = "gold_ids_long" if self.long_documents else "gold_ids"
        qrels: dict[str, dict[str, int]] = {}
        for file, row_no, row in self._examples():
            if key not in row:
                raise BrightLayoutError(f"{file}:{row_no}: example has no {key}")
            qrels[str(row["id"])] = {str(doc_id): 1 for doc_id in row[key]}
        return qrels

    def excluded_ids(self) -> dict[str, set[str]]:
        """Query id → document ids to drop from that query's ranking before scoring (may be empty)."""
        return {
            str(row["id"]): {
                str(doc_id) for doc_id in row.get("excluded_ids") or () if doc_id != NO_EXCLUSION
            }
            for _file, _row_no, row in self._examples()
        }
