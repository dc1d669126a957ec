"""Score cache: a (query, document) pair scored once is never sent to the model again.

Keys cover everything that changes the model's answer: the model, the prompt version, the task definition,
the query, the document (hashed) and the number of samples K. Values are the samples themselves, so the
integration policy can change without invalidating anything.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from retrostar_search.prompts import PROMPT_VERSION
from retrostar_search.scoring import Sample
from retrostar_search.tasks import TaskDefinition


def cache_key(model: str, task: TaskDefinition, query: str, document: str, samples: int) -> str:
    return query_cache_keys(model, task, query)(document, samples)


def query_cache_keys(model: str, task: TaskDefinition, query: str) -> Callable[[str, int], str]:
    """`cache_key` for every document of one query: the query is hashed once, not once per document.

    The key is the hash of the JSON list [model, prompt version, task, query, document hash, K]; its text
    up to the query is the same for every document, so that much is hashed once and the hash copied."""
    opening = json.dumps([model, PROMPT_VERSION, task.fingerprint, query], ensure_ascii=False)[:-1] + ", "
    query_hash = hashlib.sha256(opening.encode("utf-8", "surrogatepass"))

    def key(document: str, samples: int) -> str:
        document_hash = hashlib.sha256(document.encode("utf-8", "surrogatepass")).hexdigest()
        hashed = query_hash.copy()
        hashed.update(json.dumps([document_hash, samples])[1:].encode())
        return hashed.hexdigest()

    return key


class ScoreCache:
    """An in-memory LRU bounded by entry count, optionally backed by a sqlite file that survives restarts."""

    def __init__(self, max_entries: int = 100_000, path: Path | None = None) -> None:
        if max_entries < 1:
            raise ValueError("the score cache needs room for at least one entry")
        self.max_entries = max_entries
        self._memory: OrderedDict[str, tuple[Sample, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # Every scored pair is written from the event loop; with WAL, NORMAL skips the fsync per write
            # (about 5x faster here, far more on slow disks). A power cut can lose the last scores, which
            # only costs recomputing them.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, samples TEXT NOT NULL)"
            )

    def __len__(self) -> int:
        return len(self._memory)

    def get(self, key: str) -> tuple[Sample, ...] | None:
        with self._lock:
            samples = self._memory.get(key)
            if samples is not None:
                self._memory.move_to_end(key)
                return samples
            if self._db is None:
                return None
            row = self._db.execute("SELECT samples FROM scores WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            samples = tuple(Sample(text=text, score=score) for text, score in json.loads(row[0]))
            self._remember(key, samples)
            return samples

    def put(self, key: str, samples: tuple[Sample, ...]) -> None:
        with self._lock:
            self._remember(key, samples)
            if self._db is not None:
                encoded = json.dumps([[sample.text, sample.score] for sample in samples], ensure_ascii=False)
                self._db.execute("INSERT OR REPLACE INTO scores (key, samples) VALUES (?, ?)", (key, encoded))

    def _remember(self, key: str, samples: tuple[Sample, ...]) -> None:
        self._memory[key] = samples
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)

    async def get_many(self, keys: Iterable[str]) -> dict[str, tuple[Sample, ...]]:
        """The cached samples of those `keys` that are cached: the reranker asks once per cascade stage."""
        found = {}
        for key in keys:
            samples = self.get(key)
            if samples is not None:
                found[key] = samples
        return found

    async def put_many(self, entries: Mapping[str, tuple[Sample, ...]]) -> None:
        """Store the samples of every key: the reranker stores once per cascade stage."""
        for key, samples in entries.items():
            self.put(key, samples)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
