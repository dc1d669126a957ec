"""The two things a corpus reader hands on: a document to index, or a record it had to reject.

Both carry where they came from (file and line, or row for parquet) and the record's original text, so
that every problem a user sees points at the exact place in their data and shows what was there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# A record as its reader found it: the bytes of a JSONL line, the text of a CSV/TSV record (undecodable
# bytes already held as surrogateescape characters), or a parquet row, which has no text of its own.
RawRecord = bytes | str | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Document:
    """One document as read from the source, before the indexing policy (ids, empty texts, size) ran.

    ``id`` is None when the source had none; the policy then derives one. ``line`` is the 1-based line
    (JSONL, CSV/TSV) or row (parquet) where the record starts, or None for a whole file. ``raw`` is the
    record as read (see RawRecord), kept by reference so that a rejection can quote it exactly; it is
    empty where the record has no line of its own (a file of a folder, a document built in Python).
    """

    id: str | None
    title: str
    text: str
    source: str
    line: int | None
    metadata: dict[str, Any] = field(default_factory=dict)
    raw: RawRecord = ""

    @property
    def location(self) -> str:
        return _location(self.source, self.line)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that will not be indexed, and why; written as one line of the rejects file.

    ``raw`` is the record's original text (see raw_text): the whole line, not an excerpt.
    """

    source: str
    line: int | None
    reason: str
    raw: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"file": self.source, "line": self.line, "reason": self.reason, "raw": self.raw}

    @property
    def location(self) -> str:
        return _location(self.source, self.line)

    @classmethod
    def document(cls, doc: Document, reason: str) -> Rejected:
        """A document that was read fine but cannot be indexed (empty, too big, refused by the engine)."""
        return cls(doc.source, doc.line, reason, raw_text(doc.raw))


def _location(source: str, line: int | None) -> str:
    """``file:line`` fit to print, even for a file name that is not valid UTF-8."""
    return printable(source if line is None else f"{source}:{line}")


def raw_text(raw: RawRecord) -> str:
    """A record's original text for the rejects file, without its line ending, and lossless.

    Bytes that are not UTF-8 become the lone surrogates U+DC80-U+DCFF (Python's ``surrogateescape``):
    the rejects file writes them as ``\\udcXX`` escapes, and ``raw.encode("utf-8", "surrogateescape")``
    gives the original bytes back. A parquet row is written as JSON, values JSON cannot hold as their repr.
    """
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="surrogateescape")
    elif not isinstance(raw, str):
        return json.dumps(raw, ensure_ascii=False, default=repr)
    return raw.removesuffix("\n").removesuffix("\r")


def printable(text: str) -> str:
    """``text`` safe to print on any terminal: lone surrogates (from undecodable bytes) as escapes."""
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def lone_surrogate(text: str, what: str) -> str | None:
    """Why ``text`` cannot be encoded as UTF-8 (it holds a lone surrogate, U+D800-U+DFFF), else None.

    JSON lets a lone ``"\\ud800"`` escape through, and bytes decoded with surrogateescape end up so; the
    engines cannot store either (the Elasticsearch client would even send them as invalid UTF-8).
    """
    if text.isascii():  # O(1): the string knows it is ASCII
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        character = text[error.start]
        return (
            f"{what} holds a lone surrogate {printable(character)} at character {error.start}, "
            "which cannot be encoded as UTF-8"
        )
    return None


ReadResult = Document | Rejected
