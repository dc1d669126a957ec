"""Bulk loading through the official clients' ``streaming_bulk`` helper: parallel, retried, counted.

The helper serialises actions, splits requests by size and parses per-item results. What it does not do
is work in parallel while retrying (``parallel_bulk`` never retries; ``streaming_bulk`` retries only
429 items and only one request at a time), so each chunk runs the helper in a worker thread and a retry
loop around it pauses with exponential backoff on 429, 502-504 and connection failures.

Every document carries a stable ``_id`` and goes in with the ``index`` operation: a re-run replaces
documents (``updated``) instead of adding copies, and the per-item ``result`` tells created from updated.
A document the client cannot serialise (a metadata value JSON has no type for, such as parquet bytes)
is rejected on its own; the rest of its chunk is sent.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from index_tools.engine import RETRY_STATUSES, EngineOps
from index_tools.records import Document, Rejected
from retrostar_search.errors import EngineError

# Well under the engines' 100 MB request limit, and it bounds the memory a request in flight holds.
MAX_CHUNK_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class BulkOptions:
    chunk_size: int = 500
    threads: int = 2
    max_retries: int = 6
    initial_backoff: float = 0.5
    max_backoff: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1-based); jittered so threads do not retry in step."""
        return min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


@dataclass
class BulkStats:
    created: int = 0
    updated: int = 0
    rejected: int = 0
    duplicates: int = 0
    retries: int = 0
    # Documents sent again after a request failed without an answer: the first send may have been
    # applied, so such a document can come back "updated" although this run created it.
    resent_unanswered: int = 0


@dataclass
class _ChunkResult:
    created: int = 0
    updated: int = 0
    retries: int = 0
    resent_unanswered: int = 0
    rejected: list[Rejected] = field(default_factory=list)


class BulkAbort(EngineError):
    """The engine failed in a way no single document explains (down, refusing, out of retries)."""


def document_action(index: str, doc: Document) -> dict[str, Any]:
    return {
        "_index": index,
        "_id": doc.id,
        "_source": {"id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.metadata},
    }


def _engine_reason(info: dict[str, Any]) -> str:
    error = info.get("error")
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        caused_by = error.get("caused_by")
        if isinstance(caused_by, dict) and caused_by.get("reason"):
            reason += f" (caused by {caused_by.get('type', 'error')}: {caused_by['reason']})"
    else:
        reason = str(error)
    return f"engine refused the document (status {info.get('status')}): {reason}"


class BulkLoader:
    """Sends documents to one index and reports each outcome back on the calling thread."""

    def __init__(
        self,
        ops: EngineOps,
        index: str,
        options: BulkOptions = BulkOptions(),
        on_rejected: Callable[[Rejected], None] = lambda rejected: None,
        on_progress: Callable[[int], None] = lambda done: None,
    ) -> None:
        self.ops = ops
        self.index = index
        self.options = options
        self.on_rejected = on_rejected
        self.on_progress = on_progress

    def load(self, documents: Iterable[Document]) -> BulkStats:
        stats = BulkStats()
        # Hashes, not ids, to keep memory small; used to count duplicates and to keep "last one wins".
        seen: set[int] = set()
        in_flight: deque[Future[_ChunkResult]] = deque()
        # Two chunks per thread keeps every thread busy while bounding the documents held in memory.
        max_in_flight = 2 * self.options.threads

        def collect(until: int) -> None:
            while len(in_flight) > until:
                result = in_flight.popleft().result()
                stats.created += result.created
                stats.updated += result.updated
                stats.retries += result.retries
                stats.resent_unanswered += result.resent_unanswered
                stats.rejected += len(result.rejected)
                for rejected in result.rejected:
                    self.on_rejected(rejected)
                self.on_progress(result.created + result.updated + len(result.rejected))

        pool = ThreadPoolExecutor(max_workers=self.options.threads, thread_name_prefix="bulk")
        try:
            chunk: list[Document] = []
            has_duplicate = False
            for doc in documents:
                key = hash(doc.id)
                if key in seen:
                    stats.duplicates += 1
                    has_duplicate = True
                else:
                    seen.add(key)
                chunk.append(doc)
                if len(chunk) >= self.options.chunk_size:
                    # A repeated id may sit in a chunk still in flight: let it land first so that the
                    # later version wins, whatever the threads' timing.
                    collect(0 if has_duplicate else max_in_flight - 1)
                    in_flight.append(pool.submit(self._send, chunk))
                    chunk, has_duplicate = [], False
            if chunk:
                collect(0 if has_duplicate else max_in_flight - 1)
                in_flight.append(pool.submit(self._send, chunk))
            collect(0)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return stats

    def _send(self, chunk: list[Document]) -> _ChunkResult:
        """One chunk through the bulk helper, retrying what failed for reasons that may pass."""
        result = _ChunkResult()
        pending = chunk
        attempt = 0
        while True:
            retry: list[Document] = []
            failure = ""
            answered = 0
            try:
                outcomes = self.ops.streaming_bulk(
                    (document_action(self.index, doc) for doc in pending),
                    chunk_size=len(pending),
                    max_chunk_bytes=MAX_CHUNK_BYTES,
                    raise_on_error=False,
                    raise_on_exception=True,
                )
                for doc, (ok, item) in zip(pending, outcomes, strict=False):
                    answered += 1
                    info = next(iter(item.values()))
                    if ok:
                        if info.get("result") == "created":
                            result.created += 1
                        else:
                            result.updated += 1
                    elif info.get("status") in RETRY_STATUSES:
                        retry.append(doc)
                        failure = _engine_reason(info)
                    else:
                        result.rejected.append(Rejected.document(doc, _engine_reason(info)))
            except Exception as error:
                unanswered = pending[answered:]
                if self.ops.is_serialization_error(error):
                    # One document the client cannot write as JSON (a value of a type JSON has no place
                    # for) stops the helper before it sends its request: reject that document alone and
                    # send the others straight away, not as a retry, since the engine never saw them.
                    kept = self._without_unserialisable(unanswered, result)
                    if len(kept) == len(unanswered):
                        raise BulkAbort(f"bulk request failed: {error}") from error
                    if kept and not retry:
                        pending = kept
                        continue
                    retry.extend(kept)
                elif not self.ops.is_transient(error):
                    raise BulkAbort(f"bulk request failed: {error}") from error
                else:
                    result.resent_unanswered += len(unanswered)
                    retry.extend(unanswered)
                    failure = f"request failed: {error}"
                    if attempt == self.options.max_retries:
                        raise BulkAbort(f"engine still failing after {attempt} retries: {error}") from error
            if not retry:
                return result
            if attempt == self.options.max_retries:
                result.rejected.extend(
                    Rejected.document(doc, f"{failure}; gave up after {attempt} retries") for doc in retry
                )
                return result
            attempt += 1
            time.sleep(self.options.backoff(attempt))
            result.retries += 1
            pending = retry

    def _without_unserialisable(self, documents: list[Document], result: _ChunkResult) -> list[Document]:
        """``documents`` less those the client cannot serialise, which go to ``result.rejected``."""
        kept = []
        for doc in documents:
            problem = self.ops.unserialisable(document_action(self.index, doc))
            if problem is None:
                kept.append(doc)
            else:
                result.rejected.append(Rejected.document(doc, f"cannot be written as JSON: {problem}"))
        return kept
