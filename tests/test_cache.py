from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from retrostar_search.cache import MemoryCache, ScoreCache, SqliteStore, cache_key
from retrostar_search.factory import build_cache
from retrostar_search.scoring import FinishReason, Sample
from retrostar_search.settings import RerankerSettings
from retrostar_search.tasks import PRESETS, resolve_task

SAMPLES = (Sample("reasoning <score>80</score>", 80), Sample("no score", None, FinishReason.LENGTH))


def scores_of(samples: tuple[Sample, ...] | None) -> list[tuple[int | None, FinishReason]]:
    assert samples is not None
    return [(sample.score, sample.finish_reason) for sample in samples]


def test_key_changes_with_every_component() -> None:
    base = cache_key("model-a", PRESETS["biology"], "query", "document", 1)
    variants = [
        cache_key("model-b", PRESETS["biology"], "query", "document", 1),
        cache_key("model-a", PRESETS["economics"], "query", "document", 1),
        cache_key("model-a", resolve_task("biology", relevance_definition="other"), "query", "document", 1),
        cache_key("model-a", PRESETS["biology"], "query2", "document", 1),
        cache_key("model-a", PRESETS["biology"], "query", "document2", 1),
        cache_key("model-a", PRESETS["biology"], "query", "document", 16),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    # The preset's name is not part of the prompt, so it is not part of the key either.
    assert cache_key("model-a", PRESETS["aops"], "q", "d", 1) == cache_key(
        "model-a", PRESETS["theoremqa_questions"], "q", "d", 1
    )


# --- The memory layer -------------------------------------------------------------------------------


def test_memory_cache_is_an_lru_within_its_byte_bound() -> None:
    memory = MemoryCache(max_bytes=10_000)
    for number in range(200):
        memory.put(f"key {number}", SAMPLES)
        assert memory.bytes_used <= 10_000
    kept = len(memory)
    assert 10 < kept < 200
    memory.get("key 199")
    memory.get(f"key {200 - kept}")  # the oldest still kept: now the most recent
    memory.put("one more", SAMPLES)
    assert memory.get(f"key {200 - kept}") is not None
    assert memory.get(f"key {201 - kept}") is None  # the least recently used went first
    assert scores_of(memory.get("one more")) == scores_of(SAMPLES)


def test_an_entry_count_cap_applies_besides_the_bytes() -> None:
    memory = MemoryCache(max_bytes=10**9, max_entries=2)
    memory.put("a", SAMPLES)
    memory.put("b", SAMPLES)
    memory.get("a")
    memory.put("c", SAMPLES)
    assert len(memory) == 2 and memory.get("b") is None
    assert memory.get("a") is not None and memory.get("c") is not None


def test_reasoning_text_has_a_smaller_bound_of_its_own() -> None:
    trajectory = "1. Query Analysis: " + "the query asks about leaves " * 60 + "<score>70</score>"
    samples = (Sample(trajectory, 70),)
    memory = MemoryCache(max_bytes=10**6, reasoning_bytes=20_000)
    for number in range(100):
        memory.put(f"key {number}", samples)

    assert len(memory) == 100  # every score is kept...
    assert 0 < memory.reasoning_entries < 20  # ...the text of the most recent pairs only
    assert memory.reasoning_bytes_used <= 20_000
    recent, old = memory.get("key 99"), memory.get("key 0")
    assert recent is not None and recent[0].text == trajectory
    assert old is not None and old[0].text is None and old[0].score == 70


def test_without_reasoning_memory_the_scores_are_kept_alone() -> None:
    memory = MemoryCache(max_bytes=10**6, reasoning_bytes=0)
    memory.put("k", SAMPLES)
    cached = memory.get("k")
    assert scores_of(cached) == scores_of(SAMPLES)
    assert cached is not None and all(sample.text is None for sample in cached)


def test_an_evicted_score_takes_its_reasoning_along() -> None:
    memory = MemoryCache(max_bytes=1_000, reasoning_bytes=10**6)
    for number in range(50):
        memory.put(f"key {number}", SAMPLES)
    assert memory.reasoning_entries == len(memory) < 50


def test_cache_size_stays_an_entry_cap_and_zero_turns_the_cache_off() -> None:
    capped = build_cache(RerankerSettings(cache_size=2))
    assert capped is not None
    for key in "abc":
        capped.memory.put(key, SAMPLES)
    assert len(capped) == 2
    assert build_cache(RerankerSettings(cache_size=0)) is None


def test_cache_needs_room() -> None:
    with pytest.raises(ValueError):
        MemoryCache(max_entries=0)


# --- The sqlite store --------------------------------------------------------------------------------


async def test_sqlite_cache_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    first = ScoreCache(MemoryCache(), [SqliteStore(path)])
    await first.put_many({"k": SAMPLES})
    await first.aclose()

    second = ScoreCache(MemoryCache(reasoning_bytes=10**6), [SqliteStore(path)])
    assert len(second) == 0  # nothing in memory yet: the hit comes from the file
    assert await second.get_many(["k", "missing"]) == {"k": SAMPLES}  # text and finish reasons too
    assert len(second) == 1
    await second.aclose()


async def test_rows_written_before_finish_reasons_read_as_finished(tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    store = SqliteStore(path)
    await store.aclose()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO scores VALUES ('old', ?)", ('[["reasoning <score>40</score>", 40]]',))
    cache = ScoreCache(MemoryCache(), [SqliteStore(path)])
    assert await cache.get_many(["old"]) == {"old": (Sample("reasoning <score>40</score>", 40),)}
    await cache.aclose()


async def test_a_rerank_s_scores_are_written_in_one_transaction(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "scores.sqlite")
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)  # the store's own connection: what it sends

    await store.put_many({f"key {number}": SAMPLES for number in range(100)})

    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == ["BEGIN IMMEDIATE", "COMMIT"]
    await store.aclose()


async def test_a_slow_sqlite_write_does_not_hold_the_event_loop(tmp_path: Path) -> None:
    """Another process holds the file's write lock for half a second: the put waits for it, the loop
    does not (before: the write ran on the loop, and every other request waited with it)."""
    path = tmp_path / "scores.sqlite"
    cache = build_cache(RerankerSettings(cache_path=path))
    assert cache is not None
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, other.execute, ["COMMIT"]).start()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    await cache.put_many({"k": SAMPLES})
    waited = time.monotonic() - started
    ticker.cancel()

    assert waited >= 0.4  # it did wait for the lock...
    assert ticks >= 10  # ...while the loop went on
    other.close()
    await cache.aclose()
    reopened = ScoreCache(MemoryCache(), [SqliteStore(path)])
    assert await reopened.get_many(["k"]) == {"k": SAMPLES}
    await reopened.aclose()
