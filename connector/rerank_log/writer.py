"""The background writer: rerank events in, bulk requests out, and never in the way of a rerank.

`submit` only appends to an in-memory queue (or drops and counts when it is full); one asyncio task drains
it in batches, and the engine work (serialising, hashing, the bulk request) runs on a thread of the
writer's own, so neither a slow engine nor a large batch can stall the event loop that serves requests.
An event's summary and document records go in the same bulk batch, and it counts as written only when
the engine accepted all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from connector.rerank_log.install import InstallReport, install
from connector.rerank_log.records import RerankEvent, event_records
from retrostar_search.engines.connection import Engine
from retrostar_search.engines.errors import describe_engine_error
from retrostar_search.rerank_log.schema import daily_index
from retrostar_search.rerank_log.settings import RerankLogSettings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch
    from opensearchpy import OpenSearch

logger = logging.getLogger(__name__)

# Actions per bulk request: a batch of events with 100 documents each is split into requests this big.
_BULK_CHUNK_ACTIONS = 500
# After a failed installation, batches are dropped without contacting the engine for this long, so a dead
# or hung engine costs one timeout per interval instead of one per batch, and the queue keeps draining.
_INSTALL_RETRY_SECONDS = 5.0


@dataclass(slots=True)
class LogCounters:
    """Cumulative counts of rerank events (not documents), for export as Prometheus counters; the writer
    hands out copies.

    `dropped_queue_full` also counts events submitted after `stop()`."""

    written: int = 0
    dropped_queue_full: int = 0
    dropped_engine_error: int = 0


@dataclass(slots=True)
class _Barrier:
    """Queued behind the events before it: resolved once they are written (flush), or ends the task."""

    done: asyncio.Future[None]
    stop: bool = False


@dataclass(frozen=True, slots=True)
class _BatchOutcome:
    written: int
    error: str | None = None  # why the rest of the batch was dropped


class RerankLogWriter:
    """Writes rerank events to OpenSearch or Elasticsearch in bulk batches from a bounded queue.

    Use from one event loop: `await start()`, then `submit(event)` per rerank, `await stop()` at shutdown.
    """

    def __init__(
        self,
        settings: RerankLogSettings,
        *,
        client: OpenSearch | Elasticsearch | None = None,
        observer: Callable[[LogCounters, int], None] | None = None,
    ) -> None:
        """`observer` is called with the totals and the queued count after every change of either (on the
        event loop; `RerankLogMetrics.observe` makes Prometheus metrics of them)."""
        if not settings.log_enabled and client is None:
            raise ValueError("the rerank log needs log_url")
        self.settings = settings
        self._engine: Engine = settings.log_engine
        # A client passed in stays the caller's to close; one built here is closed by stop().
        self._owns_client = client is None
        self._client = client if client is not None else settings.log_connection().client()
        self._queue: asyncio.Queue[RerankEvent | _Barrier] = asyncio.Queue()
        self._totals = LogCounters()
        self._observer = observer
        # Events waiting in the queue (the queue itself also holds barriers, which the bound ignores), and
        # events of the batch being written right now.
        self._queued = 0
        self._in_flight = 0
        # One thread: bulk requests go out one at a time, in order, and never compete with the app's pool.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rerank-log")
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._install_report: InstallReport | None = None
        self._next_install_at = 0.0  # time.monotonic() before which a failed installation is not retried
        self._engine_healthy = True  # only changes of health are logged, not every failed batch

    # -- the connector's side ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task. Returns at once: the task installs the template and retention
        policy first (and again before a write, until that succeeds), so an engine that is down at
        startup delays nothing."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rerank-log-writer")

    def submit(self, event: RerankEvent) -> bool:
        """Queue one event without waiting; False (and counted) when the queue is full or the writer stopped."""
        if self._stopped or self._queued >= self.settings.log_queue_size:
            self._totals.dropped_queue_full += 1
            self._counts_changed()
            return False
        self._queued += 1
        self._queue.put_nowait(event)
        self._counts_changed()
        return True

    def counters(self) -> LogCounters:
        return replace(self._totals)

    @property
    def queued(self) -> int:
        """Events waiting to be written (a gauge)."""
        return self._queued

    @property
    def install_report(self) -> InstallReport | None:
        """The last template / retention installation, None before the first attempt."""
        return self._install_report

    async def flush(self) -> None:
        """Wait until every event submitted so far is written or dropped."""
        await self._barrier(stop=False)

    async def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (for up to `timeout` seconds), then release the thread (and the client,
        unless it was passed in).

        Events still queued or in flight when the time runs out are counted as engine errors: the engine
        was too slow."""
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._barrier(stop=True), timeout)
            except TimeoutError:
                self._task.cancel()
                self._totals.dropped_engine_error += self._queued + self._in_flight
                self._queued = self._in_flight = 0
                self._counts_changed()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_client:
            self._client.close()

    async def install(self) -> InstallReport:
        """Install the index template and retention policy now (the task also does it before writing)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._install_blocking)

    # -- the background task -------------------------------------------------------------------------

    async def _barrier(self, *, stop: bool) -> None:
        if self._task is None:
            raise RuntimeError("the rerank log writer is not started")
        barrier = _Barrier(done=asyncio.get_running_loop().create_future(), stop=stop)
        self._queue.put_nowait(barrier)
        # Should the task ever die, nobody would resolve the barrier: stop waiting for it then.
        await asyncio.wait({barrier.done, self._task}, return_when=asyncio.FIRST_COMPLETED)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        await self.install()
        batch: list[RerankEvent] = []
        batch_deadline: float | None = None
        while True:
            timeout = None if batch_deadline is None else max(0.0, batch_deadline - loop.time())
            try:
                item: RerankEvent | _Barrier | None = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                item = None  # the oldest event in the batch has waited the flush interval
            if isinstance(item, RerankEvent):
                self._queued -= 1
                self._counts_changed()
                batch.append(item)
                if batch_deadline is None:
                    batch_deadline = loop.time() + self.settings.log_flush_interval
                if len(batch) < self.settings.log_batch_size:
                    continue
            if batch:
                await self._write(batch)
                batch, batch_deadline = [], None
            if isinstance(item, _Barrier):
                item.done.set_result(None)
                if item.stop:
                    return

    async def _write(self, batch: list[RerankEvent]) -> None:
        loop = asyncio.get_running_loop()
        self._in_flight = len(batch)
        try:
            outcome = await loop.run_in_executor(self._executor, self._write_blocking, batch)
        except Exception as error:  # a bug in serialisation must not kill the task that drains the queue
            outcome = _BatchOutcome(written=0, error=describe_engine_error(error))
        self._in_flight = 0
        self._totals.written += outcome.written
        self._totals.dropped_engine_error += len(batch) - outcome.written
        self._counts_changed()
        self._note_engine_health(outcome.error)

    def _counts_changed(self) -> None:
        if self._observer is not None:
            self._observer(self._totals, self._queued)

    # -- on the writer's thread ----------------------------------------------------------------------

    def _install_blocking(self) -> InstallReport:
        report = install(
            self._client, self._engine, self.settings.log_index, self.settings.log_retention_days
        )
        self._install_report = report
        if not report.ok:
            self._next_install_at = time.monotonic() + _INSTALL_RETRY_SECONDS
        elif report.message:
            logger.warning("rerank log: %s", report.message)
        return report

    def _write_blocking(self, batch: list[RerankEvent]) -> _BatchOutcome:
        report = self._install_report
        if report is None or not report.ok:
            # Writing without the template would let the engine guess the mapping for today's index.
            if time.monotonic() < self._next_install_at and report is not None:
                return _BatchOutcome(written=0, error=report.message)
            report = self._install_blocking()
            if not report.ok:
                return _BatchOutcome(written=0, error=report.message)
        owners: list[int] = []
        actions: list[dict[str, Any]] = []
        failed: set[int] = set()
        error: str | None = None
        for position, event in enumerate(batch):
            try:
                records = event_records(
                    event, log_queries=self.settings.log_queries, log_reasoning=self.settings.log_reasoning
                )
            except Exception as exc:  # one malformed event must not cost the others their place
                failed.add(position)
                error = f"an event could not be serialised ({describe_engine_error(exc)})"
                continue
            index = daily_index(self.settings.log_index, event.timestamp)
            owners.extend(position for _ in records)
            actions.extend({"_index": index, "_source": record} for record in records)
        # An event counts as written only when all its records went in; a request that fails part-way
        # (engine gone between chunks) leaves the events it did not reach failed.
        answered = 0
        try:
            for owner, (ok, _item) in zip(owners, self._streaming_bulk(actions), strict=False):
                answered += 1
                if not ok:
                    failed.add(owner)
                    error = "the engine rejected some log records"
        except Exception as exc:
            error = describe_engine_error(exc)
        failed.update(owners[answered:])
        return _BatchOutcome(written=len(batch) - len(failed), error=error)

    def _streaming_bulk(self, actions: list[dict[str, Any]]) -> Any:
        # Per-item results, in action order, so a rejected record is charged to its own event.
        bulk: Any
        if self._engine is Engine.OPENSEARCH:
            from opensearchpy.helpers import streaming_bulk as bulk
        else:
            from elasticsearch.helpers import streaming_bulk as bulk
        return bulk(
            self._client,
            actions,
            chunk_size=_BULK_CHUNK_ACTIONS,
            raise_on_error=False,
            # No retries: a later batch matters more than an old one, and retries would back the queue up.
            max_retries=0,
        )

    def _note_engine_health(self, error: str | None) -> None:
        healthy = error is None
        if healthy == self._engine_healthy:
            return
        self._engine_healthy = healthy
        if healthy:
            logger.info("rerank log: writing again")
        else:
            logger.warning("rerank log: dropping events (%s)", error)
