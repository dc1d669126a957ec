"""The one place that reads the engine clients' exceptions: which they are, and what to say about them.

opensearch-py and elasticsearch-py raise different classes and keep the engine's answer in different
attributes (`info` and `body`); every command, the explorer and the rerank log describe a failed engine
call through the functions here, so an engine error reads the same wherever it surfaces.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

# opensearch-py's status of an error the engine never answered.
_NO_STATUS = "N/A"
# What OpenSearch answers a search carrying `ext.rerank` when no plugin registered that extension: a
# cluster without neural-search (such as the 3.x nodes here, whose plugins Central does not serve).
_NO_RERANK_EXTENSION = "unknown named object category [org.opensearch.search.SearchExtBuilder]"


def engine_errors() -> tuple[type[Exception], ...]:
    """Every exception the two clients raise for a failed call: HTTP errors and transport errors
    (unreachable, timeout, TLS).

    Only the clients already imported count: one that was never imported cannot have raised, and
    importing it here would cost a command for one engine the other's client (a third of a second for
    elasticsearch-py). An `except engine_errors():` clause is evaluated when an exception reaches it, by
    which time the client that raised it is imported."""
    errors: list[type[Exception]] = []
    if "opensearchpy" in sys.modules:
        from opensearchpy.exceptions import OpenSearchException

        errors.append(OpenSearchException)
    if "elasticsearch" in sys.modules:
        from elasticsearch import ApiError as ElasticsearchApiError

        errors.append(ElasticsearchApiError)
    if "elastic_transport" in sys.modules:
        from elastic_transport import TransportError as ElasticTransportError

        errors.append(ElasticTransportError)
    return tuple(errors)


def engine_reason(error: BaseException) -> str:
    """The engine's own reason (`error.reason`, else `error.type` or the error text) from the answer's
    body; "" when the engine did not answer with one."""
    body = getattr(error, "body", None) or getattr(error, "info", None)
    if not isinstance(body, Mapping):
        return ""
    detail = body.get("error")
    if isinstance(detail, Mapping):
        return str(detail.get("reason") or detail.get("type") or "")
    return str(detail or "")


def explain_engine_error(error: BaseException) -> str:
    """For a person at a terminal: the engine's reason, or, when the engine did not answer (unreachable,
    TLS, timeout), the client's own message. Callers scrub it of the connection's secrets."""
    reason = engine_reason(error)
    if reason:
        return reason
    # opensearch-py keeps the underlying message in `error`, elastic-transport in `message`.
    for attribute in ("error", "message"):
        message = getattr(error, attribute, None)
        if isinstance(message, str) and message and message != _NO_STATUS:
            return message
    return str(error)


def describe_engine_error(error: BaseException) -> str:
    """An engine error as type, HTTP status and the engine's reason, for logs and API answers: never the
    client's message, which may quote the request and its URL."""
    # opensearch-py reports "N/A" as the status of a connection error; only an HTTP status is worth showing.
    status = getattr(error, "status_code", None) or getattr(getattr(error, "meta", None), "status", None)
    parts = [type(error).__name__]
    if isinstance(status, int):
        parts.append(str(status))
    reason = engine_reason(error)
    if reason:
        parts.append(reason)
    return ": ".join(parts)


def pipeline_failure_hint(error: BaseException, pipeline: str) -> str | None:
    """What to do about an OpenSearch search through `pipeline` that failed with `error`, if known."""
    reason = engine_reason(error)
    if _NO_RERANK_EXTENSION in reason:
        return (
            "this cluster has no neural-search plugin, which the rerank pipeline needs; rerank client-side "
            "with --client-side"
        )
    if "pipeline" in reason.lower() and pipeline in reason:
        return f"create it with: retrosearch setup opensearch --pipeline {pipeline} ..."
    return None
