"""Input limits and the concurrency gate. Every refusal names the limit and its value, so a client (or the
engine's error message that wraps ours) says what to change."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import HTTPException, Request, status

# How long a client refused for saturation should wait. Reranks take a second or more, so sooner is futile.
RETRY_AFTER_SECONDS = 1

# OpenSearch's ML Commons retries a remote call only when the reply carries this header (with its
# connector's max_retry_times); Cohere's SDK and other clients go by Retry-After.
_THROTTLED_HEADERS = {
    "Retry-After": str(RETRY_AFTER_SECONDS),
    "x-amzn-ErrorType": "ThrottlingException",
}


def _too_large(message: str) -> HTTPException:
    return HTTPException(status_code=413, detail=message)  # Content Too Large


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(f"request body of {declared} bytes exceeds max_body_bytes ({max_bytes})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # a chunked body has no Content-Length to check up front
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(f"request body exceeds max_body_bytes ({max_bytes})")
        chunks.append(chunk)
    return b"".join(chunks)


def check_documents(documents: Sequence[str], *, max_documents: int, max_document_chars: int) -> None:
    if len(documents) > max_documents:
        raise _too_large(f"{len(documents)} documents exceed max_documents ({max_documents})")
    for index, document in enumerate(documents):
        if len(document) > max_document_chars:
            raise _too_large(
                f"document {index} has {len(document)} characters, over max_document_chars "
                f"({max_document_chars})"
            )


class RequestGate:
    """Admits at most `limit` rerank requests at once and refuses the rest with 429 at once: queueing them
    would only push them past the engine's timeout."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        # No await between the check and the increment: one event loop, so no lock is needed.
        if self.in_flight >= self.limit:
            raise HTTPException(
                status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"busy: max_concurrent_requests ({self.limit}) rerank requests in flight",
                headers=_THROTTLED_HEADERS,
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
