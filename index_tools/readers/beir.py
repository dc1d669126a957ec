"""BEIR folders: ``corpus.jsonl[.gz]``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

The corpus streams through the JSONL reader. Queries and qrels are small and feed evaluation, which needs
them whole and correct, so they are returned as dicts and a malformed line raises instead of being skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from index_tools.readers.fields import FieldNames
from index_tools.readers.jsonl import ReadMeter, count_lines, iter_json_lines, read_jsonl
from index_tools.records import ReadResult, Rejected, lone_surrogate
from retrostar_search.errors import InvalidInput

CORPUS_NAMES = ("corpus.jsonl", "corpus.jsonl.gz")
QUERY_NAMES = ("queries.jsonl", "queries.jsonl.gz")


class DataFileError(InvalidInput):
    """A queries or qrels file that evaluation cannot trust; the message names the file and line."""


def is_beir_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in CORPUS_NAMES)


def beir_markers(folder: Path) -> list[str]:
    """What makes ``folder`` a BEIR folder, as shown to a user: ``corpus.jsonl, queries.jsonl, qrels/``."""
    files = [name for name in (*CORPUS_NAMES, *QUERY_NAMES) if (folder / name).is_file()]
    return files + (["qrels/"] if (folder / "qrels").is_dir() else [])


def _find(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} has no {what} (looked for {', '.join(names)})")


class BeirCorpus:
    """A BEIR folder as a corpus to index, plus its queries and qrels for evaluation."""

    format_name = "beir"

    def __init__(self, folder: Path, fields: FieldNames = FieldNames()) -> None:
        self.folder = folder
        self.fields = fields
        self.corpus_path = _find(folder, CORPUS_NAMES, "corpus file")
        self.warnings: list[str] = []
        self.meter = ReadMeter([self.corpus_path])

    def documents(self) -> Iterator[ReadResult]:
        return read_jsonl(self.corpus_path, self.fields, self.meter)

    def size_hint(self) -> int | None:
        return count_lines(self.corpus_path)

    def estimated_total(self) -> int | None:
        return self.meter.estimated_records()

    def queries(self) -> dict[str, str]:
        return read_beir_queries(self.folder)

    def qrels(self, split: str = "test") -> dict[str, dict[str, int]]:
        return read_qrels(self.folder / "qrels" / f"{split}.tsv")


def read_beir_queries(path: Path) -> dict[str, str]:
    """Query id → query text, in file order, from a BEIR folder or a ``queries.jsonl`` file."""
    path = Path(path)
    file = _find(path, QUERY_NAMES, "queries file") if path.is_dir() else path
    queries: dict[str, str] = {}
    for line_no, _raw, value in iter_json_lines(file):
        if isinstance(value, Rejected):
            raise DataFileError(f"{value.location}: {value.reason}")
        if not isinstance(value, dict):
            raise DataFileError(f"{file}:{line_no}: expected a JSON object")
        query_id = value.get("_id", value.get("id"))
        text = value.get("text", value.get("query"))
        if query_id is None or not isinstance(text, str):
            raise DataFileError(f"{file}:{line_no}: a query needs an _id and a text")
        if problem := lone_surrogate(text, "the query"):
            raise DataFileError(f"{file}:{line_no}: {problem}")
        queries[str(query_id)] = text
    return queries


def read_qrels(path: Path, split: str = "test") -> dict[str, dict[str, int]]:
    """Query id → {document id → relevance grade}.

    ``path`` is a qrels file or a BEIR folder (then ``qrels/<split>.tsv``). Both layouts in use are read:
    BEIR's ``query-id corpus-id score`` (with its header) and TREC's ``qid iteration docid relevance``.
    Columns may be separated by tabs or spaces. Grades of 0 and below are kept: they are judged
    non-relevant, which some metrics distinguish from unjudged.
    """
    path = Path(path)
    file = path / "qrels" / f"{split}.tsv" if path.is_dir() else path
    qrels: dict[str, dict[str, int]] = {}
    with file.open(encoding="utf-8") as stream:
        for line_no, line in enumerate(stream, start=1):
            columns = line.split()
            if not columns:
                continue
            if len(columns) == 3:
                query_id, doc_id, grade = columns
            elif len(columns) == 4:
                query_id, _iteration, doc_id, grade = columns
            else:
                raise DataFileError(f"{file}:{line_no}: expected 3 or 4 columns, found {len(columns)}")
            try:
                relevance = int(grade)
            except ValueError:
                if line_no == 1:  # the BEIR header: query-id corpus-id score
                    continue
                raise DataFileError(f"{file}:{line_no}: relevance {grade!r} is not an integer") from None
            qrels.setdefault(query_id, {})[doc_id] = relevance
    return qrels
