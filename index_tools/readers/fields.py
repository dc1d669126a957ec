"""Turning one source row (a JSON object, a CSV row, a parquet row) into a Document.

Every structured format shares these rules, so `--id-field`, `--title-field` and `--text-field` mean the
same thing whatever the file type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from index_tools.records import Document, RawRecord, ReadResult, Rejected, raw_text
from retrostar_search.errors import InvalidInput

DEFAULT_ID_FIELDS = ("id", "_id")
DEFAULT_TITLE_FIELDS = ("title",)
DEFAULT_TEXT_FIELDS = ("text", "contents", "content")


@dataclass(frozen=True, slots=True)
class FieldNames:
    """Which source fields hold the id, title and text; None means "the usual names"."""

    id: str | None = None
    title: str | None = None
    text: str | None = None

    @property
    def id_candidates(self) -> tuple[str, ...]:
        return (self.id,) if self.id else DEFAULT_ID_FIELDS

    @property
    def title_candidates(self) -> tuple[str, ...]:
        return (self.title,) if self.title else DEFAULT_TITLE_FIELDS

    @property
    def text_candidates(self) -> tuple[str, ...]:
        return (self.text,) if self.text else DEFAULT_TEXT_FIELDS


class FieldError(InvalidInput):
    """A field holds a value that cannot be a document id, title or text."""


def document_from_row(
    row: Mapping[str, Any], fields: FieldNames, source: str, line: int | None, raw: RawRecord
) -> ReadResult:
    """Pick id, title and text out of ``row``; every other field is kept as metadata. ``raw`` is the
    record as read (the row itself where there is no text, as for parquet).

    A nested ``metadata`` object (BEIR corpora have one) is merged into the metadata rather than nested
    twice. A missing id is left as None: the indexing policy decides what to do with it.
    """
    try:
        id_key, doc_id = _first_present(row, fields.id_candidates)
        title_key, title = _first_present(row, fields.title_candidates)
        text_key, text = _first_present(row, fields.text_candidates)
        document_id = _as_id(doc_id)
        title_text = _as_text(title, "title")
        body = _as_text(text, "text")
    except FieldError as error:
        return Rejected(source, line, str(error), raw_text(raw))

    used = {id_key, title_key, text_key}
    metadata: dict[str, Any] = {}
    for key, value in row.items():
        if key in used:
            continue
        if key == "metadata" and isinstance(value, Mapping):
            metadata.update(value)
        else:
            metadata[key] = value
    return Document(document_id, title_text, body, source, line, metadata, raw)


def _first_present(row: Mapping[str, Any], candidates: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in candidates:
        if key in row:
            return key, row[key]
    return None, None


def _as_id(value: Any) -> str | None:
    # bool is an int subclass, but a boolean id is certainly a mistake in the data.
    if isinstance(value, bool):
        raise FieldError(f"id is a boolean ({value!r}), not a string or integer")
    if isinstance(value, int):
        return str(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        return value
    raise FieldError(f"id is a {type(value).__name__}, not a string or integer")


def _as_text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise FieldError(f"{what} is a {type(value).__name__}, not a string")
