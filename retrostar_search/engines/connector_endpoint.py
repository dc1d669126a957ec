"""The Retro* connector as engines and clients call it: its URL and paths, the credential an engine stores
for it, the fingerprint naming one rerank, and the request a setup plans.

Shared by the OpenSearch and Elasticsearch wiring, which both call the connector's Cohere-shaped rerank
API, and by the client-side paths (search, doctor, warm), which rank the same fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

RERANK_PATH = "/v1/rerank"
# Where the connector answers how a recent rerank went (`rerank_fingerprint` names the rerank).
OUTCOMES_PATH = "/outcomes"
# Stands in for the credential when the connector has no API key: ML Commons 2.19 refuses a connector
# without one ("Connector credential is null or empty list"), Elasticsearch's header template needs a
# value, and a keyless connector ignores the header.
NO_API_KEY = "no-api-key"
MASK = "********"


def connector_base_url(url: str) -> str:
    """The connector's base URL from what a user may type (trailing slash, or the full rerank path)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the connector URL must be http(s)://host[:port][/prefix]")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("the connector URL must not carry credentials, a query or a fragment")
    path = parts.path.rstrip("/").removesuffix(RERANK_PATH)
    return f"{parts.scheme}://{parts.netloc}{path}"


def document_digest(text: str) -> str:
    """A short digest of one document's text, as the connector's rerank outcomes name documents."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def rerank_fingerprint(query: str, documents: Iterable[str]) -> str:
    """Names one rerank by what it ranked: the query and the set of document texts, in any order.

    OpenSearch's rerank processor cannot pass a request id to the connector, so a client that searched
    through the pipeline finds the connector's outcome of that rerank by this fingerprint, computed from
    the same texts on both sides (``document_text`` mirrors the processor)."""
    digest = hashlib.blake2b(query.encode("utf-8"), digest_size=16)
    for document in sorted(document_digest(text) for text in documents):
        digest.update(b"\0" + document.encode("ascii"))
    return digest.hexdigest()


def split_fields(fields: str) -> tuple[str, ...]:
    """`title,text` (as the command line gives it) as field names."""
    return tuple(name.strip() for name in fields.split(",") if name.strip())


@dataclass(frozen=True)
class PlannedRequest:
    """One REST call of a setup, as `--dry-run` shows it."""

    purpose: str
    method: str
    path: str
    body: dict[str, Any] | None = None
