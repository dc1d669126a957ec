"""What happens to documents that are empty, huge, unencodable or have no id: one place, applied to every
format.

The outcomes (documented in docs/indexing.md, each with a test):

* an id and no title or text (or only whitespace): indexed, counted as empty (found by id only; Cranfield
  has two such documents); no id and no title or text: rejected, there is nothing to derive an id from;
  a title without text is kept, the title alone is searchable;
* a lone surrogate in the id, title, text or metadata (a JSON escape such as ``\\ud800`` that is not half
  of a pair): rejected, naming the field; UTF-8 cannot encode it, so no engine can store it;
* no id: an id is derived from the content (a hash of title and text), so a re-run gives the same id
  and indexes nothing twice; identical documents without ids collapse into one (counted as duplicates);
* an id over 512 bytes (the engines' limit for ``_id``): rejected;
* title + text over ``max_doc_bytes`` (UTF-8): rejected, or with ``truncate_huge`` the text is cut at a
  character boundary to fit and the document is counted as truncated.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from index_tools.records import Document, ReadResult, Rejected, lone_surrogate

DEFAULT_MAX_DOC_BYTES = 1_048_576
# OpenSearch and Elasticsearch refuse a document `_id` longer than 512 bytes.
MAX_ID_BYTES = 512
# UTF-8 spends at most 4 bytes on a character: below this many characters no encoding is needed.
_MAX_UTF8_BYTES_PER_CHAR = 4
# Empty documents are listed by location in the run's warning up to this many.
SHOWN_EMPTY = 5


def content_id(title: str, text: str) -> str:
    """A stable id for a document that has none: the same content always gets the same id."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(title.encode("utf-8"))
    digest.update(b"\x00")
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()


class DocumentPolicy:
    """Turns what a reader produced into a document ready to index, or a rejection with its reason."""

    def __init__(self, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES, truncate_huge: bool = False) -> None:
        self.max_doc_bytes = max_doc_bytes
        self.truncate_huge = truncate_huge
        self.derived_ids = 0
        self.truncated = 0
        self.empty = 0
        self.empty_locations: list[str] = []

    def __call__(self, record: ReadResult) -> ReadResult:
        if isinstance(record, Rejected):
            return record
        doc = record
        # First: every check below encodes the id or the texts, which a lone surrogate would break.
        if problem := unencodable(doc):
            return Rejected.document(doc, problem)
        if _blank(doc.title) and _blank(doc.text):
            if doc.id is None:
                return Rejected.document(doc, "empty document: no id, no title and no text")
            self.empty += 1
            if len(self.empty_locations) < SHOWN_EMPTY:
                self.empty_locations.append(doc.location)
        if doc.id is None:
            doc = dataclasses.replace(doc, id=content_id(doc.title, doc.text))
            self.derived_ids += 1
        elif len(doc.id.encode("utf-8")) > MAX_ID_BYTES:
            return Rejected.document(doc, f"id is longer than {MAX_ID_BYTES} bytes")
        return self._fit(doc)

    def _fit(self, doc: Document) -> ReadResult:
        if (len(doc.title) + len(doc.text)) * _MAX_UTF8_BYTES_PER_CHAR <= self.max_doc_bytes:
            return doc
        title_bytes = len(doc.title.encode("utf-8"))
        text_bytes = doc.text.encode("utf-8")
        size = title_bytes + len(text_bytes)
        if size <= self.max_doc_bytes:
            return doc
        if not self.truncate_huge or title_bytes >= self.max_doc_bytes:
            return Rejected.document(
                doc, f"document is {size} bytes, over --max-doc-bytes {self.max_doc_bytes}"
            )
        # Cutting bytes may split a character; "ignore" drops that partial character.
        kept = text_bytes[: self.max_doc_bytes - title_bytes].decode("utf-8", errors="ignore")
        self.truncated += 1
        return dataclasses.replace(doc, text=kept)


def unencodable(doc: Document) -> str | None:
    """Why ``doc`` cannot be sent as UTF-8 (the first lone surrogate, with the field holding it), else None."""
    for what, value in (("id", doc.id), ("title", doc.title), ("text", doc.text)):
        if value is not None and (problem := lone_surrogate(value, what)):
            return problem
    return _unencodable_metadata(doc.metadata) if doc.metadata else None


def _unencodable_metadata(metadata: dict[str, Any]) -> str | None:
    # Iterative, not recursive: JSON nested near the parser's limit must not hit the recursion limit here.
    pending: list[tuple[str, Any]] = [("metadata", metadata)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if problem := lone_surrogate(value, path):
                return problem
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and (problem := lone_surrogate(key, f"a key of {path}")):
                    return problem
                pending.append((f"{path}.{key}", item))
        elif isinstance(value, list | tuple):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None


def _blank(value: str) -> bool:
    # isspace() stops at the first visible character; strip() would copy the whole text first.
    return not value or value.isspace()
