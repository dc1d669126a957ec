"""`ScoreCache`: the memory layer in front of the stores, and what happens when a store fails."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol

from retrostar_search.cache._memory import MemoryCache
from retrostar_search.scoring import Sample

logger = logging.getLogger(__name__)

Operation = Literal["get", "put"]

# A store that failed is tried again after this long; meanwhile reranks do not wait on it.
RETRY_AFTER_SECONDS = 1.0


class ScoreStore(Protocol):
    """A persistent or shared layer behind the memory cache (`SqliteStore`, `RedisStore`)."""

    name: str  # the metrics' label: "sqlite", "redis"
    description: str  # for logs: where it is, never a credential

    async def get_many(self, keys: Iterable[str]) -> dict[str, tuple[Sample, ...]]: ...

    async def put_many(self, entries: Mapping[str, tuple[Sample, ...]]) -> None: ...

    async def aclose(self) -> None: ...

    def close(self) -> None: ...


class CacheObserver(Protocol):
    """Told what the stores did, for metrics (the connector's `ConnectorMetrics` is one)."""

    def store_hits(self, store: str, pairs: int) -> None: ...

    def store_failed(self, store: str, operation: Operation) -> None: ...


class _Unobserved:
    def store_hits(self, store: str, pairs: int) -> None:
        pass

    def store_failed(self, store: str, operation: Operation) -> None:
        pass


class _Health:
    """A store's outages. The first failure is logged, later ones only counted, until an operation succeeds
    again (logged too); meanwhile the store is tried at most once per RETRY_AFTER_SECONDS, so that an
    unreachable store costs the reranks nothing but those tries."""

    def __init__(self, store: ScoreStore) -> None:
        self.store = store
        self.down_since: float | None = None
        self.failures = 0
        self._retry_at = 0.0

    def available(self) -> bool:
        return self.down_since is None or time.monotonic() >= self._retry_at

    def failed(self, operation: Operation, error: Exception) -> None:
        now = time.monotonic()
        self._retry_at = now + RETRY_AFTER_SECONDS
        self.failures += 1
        if self.down_since is None:
            self.down_since = now
            # The error's type only: a client's message may quote a key or, for some, the URL it was given.
            logger.warning(
                "score cache: the %s failed (%s on %s); reranks go on without it, retrying every %g s",
                self.store.description,
                type(error).__name__,
                operation,
                RETRY_AFTER_SECONDS,
            )

    def succeeded(self) -> None:
        if self.down_since is not None:
            logger.warning(
                "score cache: the %s answers again after %.1f s (%d failed operations)",
                self.store.description,
                time.monotonic() - self.down_since,
                self.failures,
            )
            self.down_since, self.failures = None, 0


class ScoreCache:
    """The memory layer, then the stores (looked up together); every put goes to all of them, and returns
    once each store has it (or has failed), so that a pair that was answered survives a restart."""

    def __init__(self, memory: MemoryCache | None = None, stores: Sequence[ScoreStore] = ()) -> None:
        self.memory = memory if memory is not None else MemoryCache()  # an empty one is falsy
        self.stores = tuple(stores)
        self.observer: CacheObserver = _Unobserved()
        self._health = {store.name: _Health(store) for store in self.stores}

    def __len__(self) -> int:
        return len(self.memory)

    async def get_many(
        self, keys: Iterable[str], *, reasoning: bool = False
    ) -> dict[str, tuple[Sample, ...]]:
        """The cached samples of those `keys` that are cached: the reranker asks once per cascade stage.

        A pair found in memory without its reasoning text comes back with `Sample.text` None, unless
        `reasoning` asks for it: then the stores are asked for the text too."""
        found: dict[str, tuple[Sample, ...]] = {}
        wanted: list[str] = []
        for key in keys:
            samples = self.memory.get(key)
            if samples is not None:
                found[key] = samples
                if not (reasoning and _textless(samples)):
                    continue
            wanted.append(key)
        if not wanted or not self.stores:
            return found
        answers = await asyncio.gather(*(self._get(store, wanted) for store in self.stores))
        for store, answer in zip(self.stores, answers, strict=True):
            fresh = {
                key: samples for key, samples in answer.items() if key not in found or _textless(found[key])
            }
            if not fresh:
                continue
            self.observer.store_hits(store.name, sum(1 for key in fresh if key not in found))
            for key, samples in fresh.items():
                self.memory.put(key, samples)
            found.update(fresh)
        return found

    async def put_many(self, entries: Mapping[str, tuple[Sample, ...]]) -> None:
        """Store the samples of every key: the reranker stores once per cascade stage."""
        for key, samples in entries.items():
            self.memory.put(key, samples)
        if entries and self.stores:
            await asyncio.gather(*(self._put(store, entries) for store in self.stores))

    async def aclose(self) -> None:
        for store in self.stores:
            await store.aclose()

    def close(self) -> None:
        for store in self.stores:
            store.close()

    async def _get(self, store: ScoreStore, keys: list[str]) -> dict[str, tuple[Sample, ...]]:
        health = self._health[store.name]
        if not health.available():
            return {}
        try:
            answer = await store.get_many(keys)
        except Exception as error:
            self._failed(health, "get", error)
            return {}
        health.succeeded()
        return answer

    async def _put(self, store: ScoreStore, entries: Mapping[str, tuple[Sample, ...]]) -> None:
        health = self._health[store.name]
        if not health.available():
            return
        try:
            await store.put_many(entries)
        except Exception as error:
            self._failed(health, "put", error)
            return
        health.succeeded()

    def _failed(self, health: _Health, operation: Operation, error: Exception) -> None:
        health.failed(operation, error)
        self.observer.store_failed(health.store.name, operation)


def _textless(samples: tuple[Sample, ...]) -> bool:
    return any(sample.text is None for sample in samples)
