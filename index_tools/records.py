"""The two things a corpus reader hands on: a document to index, or a record it had to reject.

Both carry where they came from (file and line, or row for parquet) so that every problem a user sees
points at the exact place in their data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# How much of a bad record goes into the rejects file: enough to recognise it, never a whole document.
RAW_EXCERPT_CHARS = 200


@dataclass(frozen=True, slots=True)
class Document:
    """One document as read from the source, before the indexing policy (ids, empty texts, size) ran.

    ``id`` is None when the source had none; the policy then derives one. ``line`` is the 1-based line
    (JSONL, CSV/TSV) or row (parquet) where the record starts, or None for a whole file.
    """

    id: str | None
    title: str
    text: str
    source: str
    line: int | None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that will not be indexed, and why; written as one line of the rejects file."""

    source: str
    line: int | None
    reason: str
    raw: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"file": self.source, "line": self.line, "reason": self.reason, "raw": self.raw}

    @property
    def location(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"

    @classmethod
    def document(cls, doc: Document, reason: str) -> Rejected:
        """A document that was read fine but cannot be indexed (empty, too big, refused by the engine)."""
        label = f"id={doc.id} " if doc.id is not None else ""
        return cls(
            doc.source, doc.line, reason, excerpt(f"{label}title={doc.title[:100]!r} text={doc.text[:200]!r}")
        )


def excerpt(raw: str | bytes) -> str:
    """The start of a raw record, decoded leniently so that undecodable bytes still show as escapes."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="backslashreplace")
    raw = raw.rstrip("\r\n")
    return raw if len(raw) <= RAW_EXCERPT_CHARS else raw[:RAW_EXCERPT_CHARS] + "…"


ReadResult = Document | Rejected
