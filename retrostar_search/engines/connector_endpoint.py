"""The Retro* connector as an engine calls it: its URL, and the credential an engine stores for it.

Shared by the OpenSearch and Elasticsearch wiring, which both call the connector's Cohere-shaped rerank API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

RERANK_PATH = "/v1/rerank"
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
