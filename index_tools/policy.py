"""What happens to documents that are empty, huge or have no id: one place, applied to every format.

The outcomes (documented in docs/indexing.md, each with a test):

* no title and no text (or only whitespace): rejected — there is nothing to search;
  a title without text is kept, the title alone is searchable;
* no id: an id is derived from the content (a hash of title and text), so a re-run gives the same id
  and indexes nothing twice; identical documents without ids collapse into one (counted as duplicates);
* an id over 512 bytes (the engines' limit for ``_id``): rejected;
* title + text over ``max_doc_bytes`` (UTF-8): rejected, or with ``truncate_huge`` the text is cut at a
  character boundary to fit and the document is counted as truncated.
"""

from __future__ import annotations

import dataclasses
import hashlib

from index_tools.records import Document, ReadResult, Rejected

DEFAULT_MAX_DOC_BYTES = 1_048_576
# OpenSearch and Elasticsearch refuse a document `_id` longer than 512 bytes.
MAX_ID_BYTES = 512
# UTF-8 spends at most 4 bytes on a character: below this many characters no encoding is needed.
_MAX_UTF8_BYTES_PER_CHAR = 4


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

    def __call__(self, record: ReadResult) -> ReadResult:
        if isinstance(record, Rejected):
            return record
        doc = record
        if _blank(doc.title) and _blank(doc.text):
            return Rejected.document(doc, "empty document: no title and no text")
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


def _blank(value: str) -> bool:
    # isspace() stops at the first visible character; strip() would copy the whole text first.
    return not value or value.isspace()
