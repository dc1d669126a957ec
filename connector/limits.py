"""Input limits and the concurrency gate. Every refusal names the limit and its value, so a client (or the
engine's error message that wraps ours) says what to change. HTTP-free: refusals are the core's domain
errors, which connector/errors.py answers with 413 and 429."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from connector.schemas import TaskOverride
from connector.settings import LimitSettings
from retrostar_search.errors import InputTooLarge, Overloaded
from retrostar_search.reranker import Candidate

# How long a client refused for saturation should wait. Reranks take a second or more, so sooner is futile.
RETRY_AFTER_SECONDS = 1


async def read_body(chunks: AsyncIterable[bytes], declared_length: str | None, max_bytes: int) -> bytes:
    """The request body, refused as soon as it is known to exceed `max_bytes` (`declared_length`: the
    Content-Length header, when the client sent one)."""
    declared = declared_length or ""
    if declared.isdigit() and int(declared) > max_bytes:
        raise InputTooLarge(f"request body of {declared} bytes exceeds max_body_bytes ({max_bytes})")
    received: list[bytes] = []
    size = 0
    async for chunk in chunks:  # a chunked body has no Content-Length to check up front
        size += len(chunk)
        if size > max_bytes:
            raise InputTooLarge(f"request body exceeds max_body_bytes ({max_bytes})")
        received.append(chunk)
    return b"".join(received)


def check_query(query: str, limits: LimitSettings) -> None:
    if len(query) > limits.max_query_chars:
        raise InputTooLarge(
            f"the query has {len(query)} characters, over max_query_chars ({limits.max_query_chars})"
        )


def check_request(
    query: str, task: str | TaskOverride | None, candidates: Sequence[Candidate], limits: LimitSettings
) -> None:
    """Refuse a request whose query, task or documents are over their limits. Checked before the request
    takes a slot: the query and the task are copied into every document's prompt."""
    check_query(query, limits)
    if isinstance(task, TaskOverride):
        for part in ("query_type", "doc_type", "relevance_definition"):
            text = getattr(task, part) or ""
            if len(text) > limits.max_definition_chars:
                raise InputTooLarge(
                    f"task.{part} has {len(text)} characters, over max_definition_chars "
                    f"({limits.max_definition_chars})"
                )
    if len(candidates) > limits.max_documents:
        raise InputTooLarge(f"{len(candidates)} documents exceed max_documents ({limits.max_documents})")
    for index, candidate in enumerate(candidates):
        if len(candidate.text) > limits.max_document_chars:
            raise InputTooLarge(
                f"document {index} has {len(candidate.text)} characters, over max_document_chars "
                f"({limits.max_document_chars})"
            )


class RequestGate:
    """Admits at most `limit` rerank requests at once and refuses the rest at once: queueing them would
    only push them past the engine's timeout."""

    def __init__(self, limit: int, on_change: Callable[[int], object] | None = None) -> None:
        self.limit = limit
        self.in_flight = 0
        # Told every new count: a gauge set on change works across worker processes, one read at scrape
        # time would not.
        self._on_change = on_change

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        # No await between the check and the increment: one event loop, so no lock is needed.
        if self.in_flight >= self.limit:
            raise Overloaded(
                f"busy: max_concurrent_requests ({self.limit}) rerank requests in flight",
                retry_after=RETRY_AFTER_SECONDS,
            )
        self._count(+1)
        try:
            yield
        finally:
            self._count(-1)

    def _count(self, change: int) -> None:
        self.in_flight += change
        if self._on_change is not None:
            self._on_change(self.in_flight)
