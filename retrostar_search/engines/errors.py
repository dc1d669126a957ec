"""The one place that reads the engine clients' exceptions: which they are, and what to say about them.

opensearch-py and elasticsearch-py raise different classes and keep the engine's answer in different
attributes (`info` and `body`); every command, the explorer and the rerank log describe a failed engine
call through the functions here, so an engine error reads the same wherever it surfaces.

A call that never got an answer (nothing listening, an unknown host, https spoken to an http port or the
reverse, an untrusted certificate, a timeout) and a refused login read the same for every service a
command talks to, engine, connector or dashboards app: what happened, at which URL, and what to try
(`describe_failure`). The clients' own messages (``HTTPConnection(host=..., port=...): Failed to ...``)
are matched here and never printed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

# opensearch-py's status of an error the engine never answered.
_NO_STATUS = "N/A"
# What OpenSearch answers a search carrying `ext.rerank` when no plugin registered that extension: a
# cluster without neural-search (such as the 3.x nodes here, whose plugins Central does not serve).
_NO_RERANK_EXTENSION = "unknown named object category [org.opensearch.search.SearchExtBuilder]"


class Service(StrEnum):
    """Who a command was talking to when a call failed: it decides what to suggest."""

    ENGINE = "engine"
    CONNECTOR = "connector"
    DASHBOARDS = "dashboards"


class Problem(StrEnum):
    """What went wrong with a call, in the words a person needs."""

    REFUSED = "connection refused: nothing listens there"
    UNKNOWN_HOST = "the host name does not resolve"
    TIMEOUT = "no answer in time"
    HTTPS_TO_HTTP = "TLS handshake failed: the server speaks plain http, not https"
    CLOSED = "the server closed the connection without answering (an https port spoken to in plain http?)"
    CERTIFICATE = "its TLS certificate is not trusted"
    UNAUTHORIZED = "authentication failed (HTTP 401)"
    FORBIDDEN = "permission denied (HTTP 403)"
    OTHER = "the request failed"


@dataclass(frozen=True)
class Failure:
    """A failed call described for a person: `message` (what happened, with the URL when the call never
    got an answer) and `hint` (what to try), None when there is nothing better to suggest."""

    problem: Problem
    message: str
    hint: str | None = None


# Matched in the message chain of the clients' exceptions (urllib3 under both engine clients, httpx).
_PATTERNS: tuple[tuple[Problem, re.Pattern[str]], ...] = (
    (Problem.CERTIFICATE, re.compile(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed", re.I)),
    (
        Problem.HTTPS_TO_HTTP,
        re.compile(r"WRONG_VERSION_NUMBER|wrong version number|record layer failure|packet length too long"),
    ),
    (Problem.REFUSED, re.compile(r"Connection refused|Errno 111\b|ECONNREFUSED", re.I)),
    (
        Problem.UNKNOWN_HOST,
        re.compile(r"Failed to resolve|Name or service not known|nodename nor servname|getaddrinfo", re.I),
    ),
    (Problem.TIMEOUT, re.compile(r"timed out|timeout", re.I)),
    (
        Problem.CLOSED,
        re.compile(
            r"Connection reset|Connection aborted|RemoteDisconnected|without (sending )?a response|"
            r"Server disconnected|EOF occurred",
            re.I,
        ),
    ),
)

_HINTS: dict[Service, dict[Problem, str]] = {
    Service.ENGINE: {
        Problem.REFUSED: "is the engine running? `retrosearch node status` lists the local nodes "
        "(`retrosearch node start` starts one); else check --url",
        Problem.UNKNOWN_HOST: "check the host in --url",
        Problem.TIMEOUT: "the engine did not answer: check it with `retrosearch node status` or `retrosearch "
        "doctor`, and that --url points at it",
        Problem.HTTPS_TO_HTTP: "use an http:// URL",
        Problem.CLOSED: "if the engine serves https, use an https:// URL",
        Problem.CERTIFICATE: "give its CA bundle with --ca-certs, or --insecure (test clusters only)",
        Problem.UNAUTHORIZED: "check --username and --password (RETROSEARCH_ENGINE_PASSWORD) or --api-key "
        "(RETROSEARCH_ENGINE_API_KEY)",
        Problem.FORBIDDEN: "these credentials lack a permission this command needs: use a user that has it",
    },
    Service.CONNECTOR: {
        Problem.REFUSED: "is the connector running there (`retrosearch serve`)? Check --connector-url, or run "
        "`retrosearch doctor`",
        Problem.UNKNOWN_HOST: "check the host in the connector URL",
        Problem.TIMEOUT: "the connector did not answer in time: raise --connector-timeout, or check it with "
        "`retrosearch doctor`",
        Problem.HTTPS_TO_HTTP: "use an http:// connector URL",
        Problem.CLOSED: "if the connector serves https, use an https:// connector URL",
        Problem.CERTIFICATE: "the connector's certificate is not trusted by this machine",
        Problem.UNAUTHORIZED: "give the connector's key with --connector-api-key "
        "(RETROSEARCH_CONNECTOR_API_KEY)",
        Problem.FORBIDDEN: "the connector refused this key",
    },
    Service.DASHBOARDS: {
        Problem.REFUSED: "is the app running there? Check --url",
        Problem.UNKNOWN_HOST: "check the host in --url",
        Problem.TIMEOUT: "the app did not answer in time: check --url",
        Problem.HTTPS_TO_HTTP: "use an http:// URL",
        Problem.CLOSED: "if the app serves https, use an https:// URL",
        Problem.CERTIFICATE: "give its CA bundle with --ca-certs, or --insecure (test setups only)",
        Problem.UNAUTHORIZED: "check --username and --password (RETROSEARCH_DASHBOARDS_PASSWORD) or "
        "--api-key (RETROSEARCH_DASHBOARDS_API_KEY)",
        Problem.FORBIDDEN: "these credentials may not import saved objects: use a user that may",
    },
}


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


def http_status(error: BaseException) -> int | None:
    """The HTTP status a failed call was answered with; None when no answer came (opensearch-py says
    "N/A" then, elastic-transport has no `meta.status`, httpx no `response`)."""
    response = getattr(error, "response", None)
    candidates = (
        getattr(error, "status_code", None),
        getattr(getattr(error, "meta", None), "status", None),
        getattr(response, "status_code", None),
    )
    return next((status for status in candidates if isinstance(status, int)), None)


def failure_problem(error: BaseException) -> Problem:
    """What kind of failure `error` is, from its HTTP status or, for a call that got no answer, from the
    messages of its chain of causes."""
    status = http_status(error)
    if status == 401:
        return Problem.UNAUTHORIZED
    if status == 403:
        return Problem.FORBIDDEN
    if status is not None:
        return Problem.OTHER
    text = " ".join(_messages(error))
    for problem, pattern in _PATTERNS:
        if pattern.search(text):
            return problem
    return Problem.OTHER


def describe_failure(error: BaseException, url: str, service: Service = Service.ENGINE) -> Failure:
    """`error` from a call to `url` (given without credentials) for a person at a terminal.

    An answer the engine gave is its reason; a refused login, or a call that never got an answer, is
    said the same way for every command: the URL, what happened and what to try."""
    problem = failure_problem(error)
    if problem is Problem.OTHER:
        return Failure(problem, explain_engine_error(error))
    if problem in (Problem.UNAUTHORIZED, Problem.FORBIDDEN):
        reason = engine_reason(error)
        message = f"{url}: {problem.value}" + (f": {reason}" if reason else "")
    else:
        message = f"cannot reach {url}: {problem.value}"
    return Failure(problem, message, _HINTS[service].get(problem))


def describe_status(status: int, url: str, service: Service = Service.ENGINE) -> Failure:
    """An HTTP error answer from a client that does not raise one (httpx), described as `describe_failure`
    describes a raised one."""
    return describe_failure(_Answered(status), url, service)


class _Answered(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


def explain_engine_error(error: BaseException) -> str:
    """For a person at a terminal: the engine's reason, or, when the engine did not answer (unreachable,
    TLS, timeout), what happened, in words (never the client's repr). Callers scrub it of the
    connection's secrets; `describe_failure` adds the URL and what to try."""
    reason = engine_reason(error)
    if reason:
        return reason
    problem = failure_problem(error)
    if problem is not Problem.OTHER:
        return problem.value
    # opensearch-py keeps the underlying message in `error`, elastic-transport in `message`.
    for attribute in ("error", "message"):
        message = getattr(error, attribute, None)
        if isinstance(message, str) and message and message != _NO_STATUS:
            return message
    return str(error) or type(error).__name__


def describe_engine_error(error: BaseException) -> str:
    """An engine error as type, HTTP status and the engine's reason, for logs and API answers: never the
    client's message, which may quote the request and its URL."""
    status = http_status(error)
    parts = [type(error).__name__]
    if status is not None:
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


def _messages(error: BaseException) -> list[str]:
    """The texts of `error`, its causes and whatever the clients keep beside them (`info`, `errors`)."""
    found: list[str] = []
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        item = pending.pop()
        if id(item) in seen or item is None:
            continue
        seen.add(id(item))
        if isinstance(item, BaseException):
            found.append(f"{type(item).__name__}: {item}")
            pending += [item.__cause__, item.__context__, getattr(item, "info", None)]
            pending += list(getattr(item, "errors", ()) or ())
            pending += [arg for arg in item.args if isinstance(arg, BaseException)]
        elif isinstance(item, str):
            found.append(item)
    return found
