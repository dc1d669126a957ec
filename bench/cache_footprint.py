"""What the score cache costs: bytes per entry in memory, and how long its sqlite writes stall the event loop.

1. Bytes per entry. N entries go into a `ScoreCache` the way the reranker puts them (key from `cache_key`,
   samples from `parse_sample`), each with a realistic Retro* trajectory: a query analysis, a document
   analysis and a relevance annotation quoting SciFact text, about 1,600 characters (~350 tokens; Retro*
   generates 250-400 per sample), ending in `<score>N</score>`. Measured two ways: Python's allocations
   (tracemalloc, current after minus before, over N) and the process's resident set (RSS delta, without
   tracemalloc). For one sample per pair (the default) and sixteen (a cascade's second stage), and, as the
   floor a cache of scores alone would reach, the same entries with the text left out. Then the
   projection to the default 100,000 entries.
2. The sqlite write stall. A `Reranker` with a persistent cache scores 100 uncached pairs from a backend
   that answers at once (precomputed trajectories: no HTTP client in the measurement), while a ticker task
   records how long the event loop went without running it. The longest stall with the persistent cache,
   minus the same with a memory-only cache, is what the sqlite writes cost the loop. For reference, the
   same 100 rows written directly: one autocommit INSERT each (what `ScoreCache.put` does) against one
   transaction per request.

    python bench/cache_footprint.py            # about 30 s
    python bench/cache_footprint.py --entries 50000 --reranks 40 --json cache.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from retrostar_search.backends.base import Backend, SamplingParams
from retrostar_search.cache import ScoreCache, cache_key
from retrostar_search.prompts import RenderedPrompt
from retrostar_search.reranker import Reranker
from retrostar_search.scoring import Sample, parse_sample
from retrostar_search.tasks import DEFAULT_TASK

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl.gz"
MODEL = "ljw13/retro-star-qwen3-14b-0928"
TRAJECTORY_CHARS = 1600  # about 350 tokens of English at ~4.5 characters per token
DEFAULT_ENTRIES = 100_000  # --cache-size's default


# ------------------------------------------------------------------------------------------------
# Realistic trajectories
# ------------------------------------------------------------------------------------------------


def sentences(limit: int = 20_000) -> list[str]:
    """Sentences of SciFact abstracts (shared/data), or generated prose when the data is not there."""
    if SCIFACT.is_file():
        found: list[str] = []
        with gzip.open(SCIFACT, "rt", encoding="utf-8") as corpus:
            for line in corpus:
                found.extend(part.strip() + "." for part in json.loads(line)["text"].split(". ") if part)
                if len(found) >= limit:
                    break
        return found
    words = [
        "cell",
        "protein",
        "expression",
        "patients",
        "study",
        "risk",
        "increased",
        "associated",
        "levels",
        "response",
    ]
    generator = random.Random(7)
    return [" ".join(generator.choices(words, k=18)).capitalize() + "." for _ in range(limit)]


class Trajectories:
    """Distinct Retro*-shaped trajectories of about TRAJECTORY_CHARS characters, deterministic."""

    def __init__(self, seed: int = 15) -> None:
        self._sentences = sentences()
        self._random = random.Random(seed)

    def _prose(self, characters: int) -> str:
        parts: list[str] = []
        while sum(map(len, parts)) < characters:
            parts.append(self._random.choice(self._sentences))
        return " ".join(parts)

    def next(self) -> str:
        third = TRAJECTORY_CHARS // 3
        score = self._random.randint(0, 100)
        return (
            f"1. Query Analysis: {self._prose(third - 20)}\n"
            f"2. Document Analysis: {self._prose(third - 25)}\n"
            f"3. Relevance Annotation: {self._prose(third - 60)}\n<score>\n{score}\n</score>"
        )


# ------------------------------------------------------------------------------------------------
# 1. Bytes per entry
# ------------------------------------------------------------------------------------------------


def fill(cache: ScoreCache, entries: int, samples: int, trajectories: Trajectories, keep_text: bool) -> None:
    for number in range(entries):
        key = cache_key(MODEL, DEFAULT_TASK, f"query {number // 100}", f"document {number}", samples)
        parsed = [parse_sample(trajectories.next()) for _ in range(samples)]
        if not keep_text:
            parsed = [Sample(text="", score=sample.score) for sample in parsed]
        cache.put(key, tuple(parsed))


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def bytes_per_entry(entries: int, samples: int, keep_text: bool) -> dict[str, float]:
    """Measured in a fresh interpreter each, where freed memory of an earlier measurement cannot be reused."""
    command = [sys.executable, __file__, "--footprint-worker", f"{entries},{samples},{int(keep_text)}"]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def footprint_worker(entries: int, samples: int, keep_text: bool) -> dict[str, float]:
    trajectories = Trajectories()
    # RSS first, without tracemalloc's own bookkeeping in the process.
    gc.collect()
    cache = ScoreCache(max_entries=entries + 1)
    rss_before = rss_bytes()
    fill(cache, entries, samples, trajectories, keep_text)
    gc.collect()
    rss = (rss_bytes() - rss_before) / entries
    del cache
    gc.collect()

    cache = ScoreCache(max_entries=entries + 1)
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    fill(cache, entries, samples, trajectories, keep_text)
    gc.collect()
    traced = (tracemalloc.get_traced_memory()[0] - traced_before) / entries
    tracemalloc.stop()
    return {"traced": traced, "rss": rss}


# ------------------------------------------------------------------------------------------------
# 2. The sqlite write stall
# ------------------------------------------------------------------------------------------------


class PrecomputedBackend(Backend):
    """Answers every prompt at once with the next precomputed trajectory: the measurement then holds the
    reranker and the cache only, no HTTP client and no model server (those are connector_overhead.py's)."""

    kind = "precomputed"
    model = MODEL

    def __init__(self, trajectories: Trajectories) -> None:
        self._trajectories = trajectories

    async def generate(self, prompt: RenderedPrompt, n: int, params: SamplingParams) -> list[str]:
        return [self._trajectories.next() for _ in range(n)]

    async def ready(self) -> bool:
        return True


async def loop_stalls(work: Callable[[], Any]) -> tuple[float, float]:
    """While `work` runs, the gaps between two turns of a ticker task that yields at every loop iteration:
    the longest (the worst delay any other request saw) and their sum (the loop time the work took)."""
    gaps: list[float] = []
    finished = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not finished.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        await work()
    finally:
        finished.set()
        await tick
    return max(gaps), sum(gaps)


async def stalls(
    cache: ScoreCache | None, reranks: int, pairs: int, trajectories: Trajectories
) -> list[float]:
    reranker = Reranker(PrecomputedBackend(trajectories), cache=cache)
    documents = [f"document {number} " + "text " * 100 for number in range(pairs)]
    measured = []
    for number in range(reranks + 2):
        query = f"stall query {number} {time.time_ns()}"  # never cached
        stall = await loop_stalls(lambda query=query: reranker.rerank(query, documents))
        if number >= 2:  # the first two warm the code paths and the sqlite file
            measured.append(stall)
    return measured


def direct_writes(path: Path, rows: list[tuple[str, str]], *, one_transaction: bool) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, samples TEXT NOT NULL)")
    started = time.perf_counter()
    if one_transaction:
        db.execute("BEGIN")
        db.executemany("INSERT OR REPLACE INTO scores (key, samples) VALUES (?, ?)", rows)
        db.execute("COMMIT")
    else:
        for row in rows:
            db.execute("INSERT OR REPLACE INTO scores (key, samples) VALUES (?, ?)", row)
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def write_rows(number: int, pairs: int, trajectories: Trajectories) -> Iterator[tuple[str, str]]:
    for pair in range(pairs):
        sample = parse_sample(trajectories.next())
        key = cache_key(MODEL, DEFAULT_TASK, f"direct {number}", f"document {pair}", 1)
        yield key, json.dumps([[sample.text, sample.score]], ensure_ascii=False)


def prefill(path: Path, rows: int, trajectories: Trajectories) -> None:
    """A persistent cache that has been serving a while: `rows` scores already in the file."""
    if rows:
        direct_writes(path, list(write_rows(-1, rows, trajectories)), one_transaction=True)


def measure_stall(reranks: int, pairs: int, prefilled: int, folder: Path) -> dict[str, list[Any]]:
    trajectories = Trajectories(seed=16)
    prefill(folder / "scores.sqlite", prefilled, trajectories)
    persistent = ScoreCache(max_entries=1_000_000, path=folder / "scores.sqlite")
    memory = ScoreCache(max_entries=1_000_000)
    results: dict[str, list[Any]] = {"memory": [], "persistent": []}
    # Alternate the two caches, a few reranks at a time, so that background load hits both alike.
    for _ in range(max(1, reranks // 5)):
        results["memory"] += asyncio.run(stalls(memory, 5, pairs, trajectories))
        results["persistent"] += asyncio.run(stalls(persistent, 5, pairs, trajectories))
    persistent.close()
    # The same writes without the cache around them, into a file prefilled alike.
    prefill(folder / "direct.sqlite", prefilled, trajectories)
    results["autocommit"], results["one_transaction"] = [], []
    for number in range(reranks):
        for mode, one in (("autocommit", False), ("one_transaction", True)):
            rows = list(write_rows(number * 2 + one, pairs, trajectories))
            results[mode].append(direct_writes(folder / "direct.sqlite", rows, one_transaction=one))
    return results


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000, help="cache entries per footprint measurement")
    parser.add_argument("--reranks", type=int, default=20, help="reranks of 100 pairs per stall measurement")
    parser.add_argument("--pairs", type=int, default=100, help="uncached pairs per rerank")
    parser.add_argument("--prefill", type=int, default=20_000, help="scores already in the sqlite file")
    parser.add_argument("--db-dir", type=Path, help="where the sqlite files go (default: the temp folder)")
    parser.add_argument("--json", type=Path, help="write the measurements to this file")
    parser.add_argument("--footprint-worker", help=argparse.SUPPRESS)  # ENTRIES,SAMPLES,KEEP_TEXT
    args = parser.parse_args(argv)
    if args.footprint_worker:
        entries, samples, keep_text = (int(part) for part in args.footprint_worker.split(","))
        print(json.dumps(footprint_worker(entries, samples, bool(keep_text))))
        return 0
    record: dict[str, Any] = {"entries": args.entries, "trajectory_chars": TRAJECTORY_CHARS}

    print(
        f"Score-cache bytes per entry, {args.entries} entries, trajectories of ~{TRAJECTORY_CHARS} characters"
    )
    print("| samples per pair | reasoning text | tracemalloc B/entry | RSS B/entry | at 100,000 entries |")
    print("|---|---|---|---|---|")
    for samples, keep_text in ((1, True), (16, True), (1, False)):
        measured = bytes_per_entry(args.entries if samples == 1 else args.entries // 8, samples, keep_text)
        record[f"bytes_per_entry_k{samples}_{'text' if keep_text else 'no_text'}"] = measured
        projection = measured["traced"] * DEFAULT_ENTRIES / 2**20
        print(
            f"| {samples} | {'kept' if keep_text else 'left out'} | {measured['traced']:,.0f} | "
            f"{measured['rss']:,.0f} | {projection:,.0f} MiB |"
        )

    with tempfile.TemporaryDirectory(prefix="retrostar-cache-bench-", dir=args.db_dir) as folder:
        stall = measure_stall(args.reranks, args.pairs, args.prefill, Path(folder))
    record["stall_seconds"] = stall
    longest = {name: statistics.median(m for m, _ in stall[name]) for name in ("memory", "persistent")}
    total = {name: statistics.median(t for _, t in stall[name]) for name in ("memory", "persistent")}
    print(
        f"\nEvent loop per rerank of {args.pairs} uncached pairs, {args.reranks} reranks, persistent file prefilled "
        f"with {args.prefill:,} scores: median (range), ms"
    )
    print("| cache | longest stall | loop time of the rerank |")
    print("|---|---|---|")
    for name in ("memory", "persistent"):
        worst = [m * 1000 for m, _ in stall[name]]
        busy = [t * 1000 for _, t in stall[name]]
        print(
            f"| {name} | {statistics.median(worst):.2f} ({min(worst):.2f}-{max(worst):.2f}) | "
            f"{statistics.median(busy):.2f} ({min(busy):.2f}-{max(busy):.2f}) |"
        )
    print(
        f"sqlite on the loop: {(longest['persistent'] - longest['memory']) * 1000:.2f} ms more in the longest stall, "
        f"{(total['persistent'] - total['memory']) * 1000:.2f} ms more loop time, per {args.pairs} pairs"
    )
    autocommit = statistics.median(stall["autocommit"])
    one = statistics.median(stall["one_transaction"])
    print(
        f"the same {args.pairs} rows written directly: {autocommit * 1000:.2f} ms one autocommit each (today), "
        f"{one * 1000:.2f} ms in one transaction: ratio {autocommit / one:.2f}"
    )
    record["summary"] = {
        "longest_stall_ms": {name: value * 1000 for name, value in longest.items()},
        "loop_time_ms": {name: value * 1000 for name, value in total.items()},
        "sqlite_longest_stall_ms": (longest["persistent"] - longest["memory"]) * 1000,
        "sqlite_loop_time_ms": (total["persistent"] - total["memory"]) * 1000,
        "direct_autocommit_ms": autocommit * 1000,
        "direct_one_transaction_ms": one * 1000,
    }
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
        print(f"measurements written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
