"""The persistent store: a sqlite file that keeps every scored pair, reasoning included, across restarts.

All of its work runs on one thread of its own, never on the event loop: a rerank's lookups are one query,
its new scores one transaction, and the rerank awaits the commit, so a pair that was answered is in the
file (the durability the cache always had) while other requests keep the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from retrostar_search.cache._keys import decode_samples, encode_samples
from retrostar_search.scoring import Sample

# Keys per SELECT: under the 999 variables older sqlite builds allow in one statement.
_KEYS_PER_QUERY = 500
# How long a write waits for another process's transaction on the same file (`serve --workers`).
_BUSY_TIMEOUT_SECONDS = 10.0

ResultT = TypeVar("ResultT")


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.description = f"sqlite file {path}"
        # Opened here, so that a path that cannot be used fails at startup; used only on the store's thread.
        self._db = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=_BUSY_TIMEOUT_SECONDS
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL skips the fsync per commit (a power cut can lose the last scores, which only costs
        # recomputing them); a process that dies keeps everything committed.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, samples TEXT NOT NULL)")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-cache-sqlite")

    async def get_many(self, keys: Iterable[str]) -> dict[str, tuple[Sample, ...]]:
        return await self._on_thread(self._select, list(keys))

    async def put_many(self, entries: Mapping[str, tuple[Sample, ...]]) -> None:
        # Encoded on the store's thread too: JSON of a hundred trajectories is most of the work.
        await self._on_thread(self._insert, list(entries.items()))

    async def aclose(self) -> None:
        await self._on_thread(self._db.close)
        self._thread.shutdown()

    def close(self) -> None:
        """Close without an event loop (a reranker that failed to build): waits for queued work first."""
        self._thread.shutdown()
        self._db.close()

    async def _on_thread(self, work: Callable[..., ResultT], *args: object) -> ResultT:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def _select(self, keys: list[str]) -> dict[str, tuple[Sample, ...]]:
        found = {}
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start : start + _KEYS_PER_QUERY]
            placeholders = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, samples FROM scores WHERE key IN ({placeholders})", chunk)
            for key, encoded in rows:
                found[key] = decode_samples(encoded)
        return found

    def _insert(self, entries: list[tuple[str, tuple[Sample, ...]]]) -> None:
        rows = [(key, encode_samples(samples)) for key, samples in entries]
        # IMMEDIATE takes the write lock up front, so that two processes writing the file wait for each
        # other (busy timeout) instead of failing when a read transaction would have to become a write.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR REPLACE INTO scores (key, samples) VALUES (?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
