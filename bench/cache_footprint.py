"""What the score cache costs: bytes per entry in memory, and how long its sqlite writes stall the event loop.

Each measurement sets the cache as it is against the cache as it was before issue 15 (reproduced here as
the baseline, `Before*`), in the same run, in separate processes:

1. Bytes per entry. N entries go into a cache the way the reranker puts them (key from `cache_key`, samples
   from `parse_sample`), each with a realistic Retro* trajectory: a query analysis, a document analysis and
   a relevance annotation quoting SciFact text, about 1,600 characters (~350 tokens; Retro* generates
   250-400 per sample), ending in `<score>N</score>`. Measured two ways: Python's allocations (tracemalloc,
   current after minus before, over N) and the process's resident set (RSS delta, without tracemalloc),
   each in a fresh interpreter. For one sample per pair (the default) and sixteen (a cascade's second
   stage): before (an OrderedDict of key to the samples, text included, bounded by count), now with the
   scores alone (what `--cache-bytes` bounds) and now with the reasoning text kept too (what
   `--cache-reasoning-bytes` bounds). Beside them, what the cache itself counts against its bounds, and
   how many entries the default bounds hold.
2. The sqlite write stall. A `Reranker` with a persistent cache scores 100 uncached pairs from a backend
   that answers at once (precomputed trajectories: no HTTP client in the measurement), while a ticker task
   records how long the event loop went without running it; then 100 more without the ticker, for the
   CPU time of the loop's thread (`time.thread_time`: work the store's own thread does is not in it) and
   the wall time of the rerank. Each with the persistent cache, minus the same with a memory-only cache, is
   what the sqlite file costs: before (lookups and one autocommit INSERT per pair on the loop) and now (one
   query and one transaction per stage, on the store's thread, the rerank awaiting the commit). For
   reference, the same 100 rows written directly: one autocommit each against one transaction.

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
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from retrostar_search.backends.base import Backend, Generation, SamplingParams
from retrostar_search.cache import MemoryCache, ScoreCache, SqliteStore, cache_key
from retrostar_search.prompts import RenderedPrompt
from retrostar_search.reranker import Candidate, Reranker
from retrostar_search.scoring import Sample, parse_sample
from retrostar_search.settings import ScoringSettings
from retrostar_search.tasks import DEFAULT_TASK

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl.gz"
MODEL = "ljw13/retro-star-qwen3-14b-0928"
TRAJECTORY_CHARS = 1600  # about 350 tokens of English at ~4.5 characters per token
BEFORE_DEFAULT_ENTRIES = 100_000  # --cache-size's default before issue 15, its only bound
DEFAULT_BYTES = ScoringSettings.model_fields["cache_bytes"].default
DEFAULT_REASONING_BYTES = ScoringSettings.model_fields["cache_reasoning_bytes"].default


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


class BeforeMemory:
    """The memory layer before issue 15: key to the samples as the reranker made them, text and all, in an
    OrderedDict bounded by count only."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, tuple[Sample, ...]] = OrderedDict()

    def put(self, key: str, samples: tuple[Sample, ...]) -> None:
        self.entries[key] = samples
        self.entries.move_to_end(key)


LAYOUTS = ("before", "scores", "scores+reasoning")


def new_memory(layout: str, entries: int) -> BeforeMemory | MemoryCache:
    if layout == "before":
        return BeforeMemory()
    # Bounds that hold every entry: the measurement is per entry, not of eviction.
    reasoning = 2**40 if layout == "scores+reasoning" else 0
    return MemoryCache(2**40, reasoning_bytes=reasoning, max_entries=entries + 1)


def fill(cache: BeforeMemory | MemoryCache, entries: int, samples: int, trajectories: Trajectories) -> None:
    for number in range(entries):
        key = cache_key(MODEL, DEFAULT_TASK, f"query {number // 100}", f"document {number}", samples)
        cache.put(key, tuple(parse_sample(trajectories.next()) for _ in range(samples)))


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def bytes_per_entry(entries: int, samples: int, layout: str) -> dict[str, float]:
    """Measured in a fresh interpreter each, where freed memory of an earlier measurement cannot be reused."""
    command = [sys.executable, __file__, "--footprint-worker", f"{entries},{samples},{layout}"]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def footprint_worker(entries: int, samples: int, layout: str) -> dict[str, float]:
    trajectories = Trajectories()
    # RSS first, without tracemalloc's own bookkeeping in the process.
    gc.collect()
    cache = new_memory(layout, entries)
    rss_before = rss_bytes()
    fill(cache, entries, samples, trajectories)
    gc.collect()
    rss = (rss_bytes() - rss_before) / entries
    del cache
    gc.collect()

    cache = new_memory(layout, entries)
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    fill(cache, entries, samples, trajectories)
    gc.collect()
    traced = (tracemalloc.get_traced_memory()[0] - traced_before) / entries
    tracemalloc.stop()
    measured = {"traced": traced, "rss": rss}
    if isinstance(cache, MemoryCache):  # what the cache counts against its bounds
        measured["accounted_scores"] = cache.bytes_used / entries
        measured["accounted_reasoning"] = cache.reasoning_bytes_used / entries
    return measured


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

    async def generate(  # rid and routing_key: nothing to route here
        self, prompt: RenderedPrompt, n: int, params: SamplingParams, **request: str | None
    ) -> list[Generation]:
        return [Generation(self._trajectories.next()) for _ in range(n)]

    async def ready(self) -> bool:
        return True


class BeforePersistentCache(ScoreCache):
    """The persistent cache before issue 15, on the event loop: a lookup per key and an autocommit INSERT
    per pair, each a sqlite call the loop waits for."""

    def __init__(self, path: Path) -> None:
        super().__init__(MemoryCache(2**40, reasoning_bytes=2**40))
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, samples TEXT NOT NULL)")

    async def get_many(
        self, keys: Iterable[str], *, reasoning: bool = False
    ) -> dict[str, tuple[Sample, ...]]:
        found = {}
        for key in keys:
            samples = self.memory.get(key)
            if samples is None:
                row = self._db.execute("SELECT samples FROM scores WHERE key = ?", (key,)).fetchone()
                if row is None:
                    continue
                samples = tuple(Sample(text=text, score=score) for text, score in json.loads(row[0]))
                self.memory.put(key, samples)
            found[key] = samples
        return found

    async def put_many(self, entries: Mapping[str, tuple[Sample, ...]]) -> None:
        for key, samples in entries.items():
            self.memory.put(key, samples)
            encoded = json.dumps([[sample.text, sample.score] for sample in samples], ensure_ascii=False)
            self._db.execute("INSERT OR REPLACE INTO scores (key, samples) VALUES (?, ?)", (key, encoded))

    async def aclose(self) -> None:
        self._db.close()


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
    new_cache: Callable[[], ScoreCache | None], reranks: int, pairs: int, trajectories: Trajectories
) -> list[tuple[float, float, float]]:
    """(longest stall, loop-thread CPU, wall time) of reranks of `pairs` uncached pairs each. The stall is
    measured with the ticker running; CPU and wall time in a rerank of their own without it, whose busy
    turns would otherwise count as the loop's work and compete with the store's thread."""
    cache = new_cache()  # inside the loop that uses it, as the connector builds it
    reranker = Reranker(PrecomputedBackend(trajectories), cache=cache)
    documents = [Candidate(f"document {number} " + "text " * 100) for number in range(pairs)]
    measured = []
    for number in range(reranks + 2):
        query = f"stall query {number} {time.time_ns()}"  # never cached
        longest, _ = await loop_stalls(lambda query=query: reranker.rerank(query, documents))
        cpu_started, started = time.thread_time(), time.perf_counter()
        await reranker.rerank(f"{query} again", documents)
        cpu, wall = time.thread_time() - cpu_started, time.perf_counter() - started
        if number >= 2:  # the first two warm the code paths and the sqlite file
            measured.append((longest, cpu, wall))
    await reranker.aclose()
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


STALL_CACHES = ("memory", "before", "now")


def measure_stall(reranks: int, pairs: int, prefilled: int, folder: Path) -> dict[str, list[Any]]:
    trajectories = Trajectories(seed=16)
    for name in STALL_CACHES[1:]:
        prefill(folder / f"{name}.sqlite", prefilled, trajectories)
    new_cache: dict[str, Callable[[], ScoreCache | None]] = {
        "memory": lambda: ScoreCache(MemoryCache(2**40, reasoning_bytes=2**40)),
        "before": lambda: BeforePersistentCache(folder / "before.sqlite"),
        "now": lambda: ScoreCache(
            MemoryCache(2**40, reasoning_bytes=2**40), [SqliteStore(folder / "now.sqlite")]
        ),
    }
    results: dict[str, list[Any]] = {name: [] for name in STALL_CACHES}
    # Alternate the caches, a few reranks at a time, so that background load hits all alike.
    for _ in range(max(1, reranks // 5)):
        for name in STALL_CACHES:
            results[name] += asyncio.run(stalls(new_cache[name], 5, pairs, trajectories))
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
    parser.add_argument("--footprint-worker", help=argparse.SUPPRESS)  # ENTRIES,SAMPLES,LAYOUT
    args = parser.parse_args(argv)
    if args.footprint_worker:
        entries, samples, layout = args.footprint_worker.split(",")
        print(json.dumps(footprint_worker(int(entries), int(samples), layout)))
        return 0
    record: dict[str, Any] = {"entries": args.entries, "trajectory_chars": TRAJECTORY_CHARS}
    record["footprint"] = report_footprint(args.entries)
    with tempfile.TemporaryDirectory(prefix="retrostar-cache-bench-", dir=args.db_dir) as folder:
        stall = measure_stall(args.reranks, args.pairs, args.prefill, Path(folder))
    record["stall_seconds"] = stall
    record["summary"] = report_stall(stall, args)
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
        print(f"measurements written to {args.json}")
    return 0


def report_footprint(entries: int) -> dict[str, Any]:
    print(f"Score-cache bytes per entry, {entries} entries, trajectories of ~{TRAJECTORY_CHARS} characters")
    print(
        "| samples per pair | cache | tracemalloc B/entry | RSS B/entry | counted B/entry | before / this |"
    )
    print("|---|---|---|---|---|---|")
    measured: dict[str, Any] = {}
    for samples in (1, 16):
        count = entries if samples == 1 else entries // 8
        for layout in LAYOUTS:
            entry = measured[f"k{samples}_{layout}"] = bytes_per_entry(count, samples, layout)
            counted = entry.get("accounted_scores", 0) + entry.get("accounted_reasoning", 0)
            before = measured[f"k{samples}_before"]["traced"]
            print(
                f"| {samples} | {layout} | {entry['traced']:,.0f} | {entry['rss']:,.0f} | "
                f"{f'{counted:,.0f}' if counted else '-'} | {before / entry['traced']:.1f}x |"
            )
    k1 = {layout: measured[f"k1_{layout}"] for layout in LAYOUTS}
    before_mib = k1["before"]["traced"] * BEFORE_DEFAULT_ENTRIES / 2**20
    scores_fit = DEFAULT_BYTES / k1["scores"]["accounted_scores"]
    reasoning_fit = DEFAULT_REASONING_BYTES / k1["scores+reasoning"]["accounted_reasoning"]
    print(
        f"\nBefore: {BEFORE_DEFAULT_ENTRIES:,} entries (the default, a count) took {before_mib:,.0f} MiB with one "
        f"sample each. Now, at the defaults, --cache-bytes {DEFAULT_BYTES / 2**20:g} MiB holds the scores of "
        f"{scores_fit:,.0f} pairs and --cache-reasoning-bytes {DEFAULT_REASONING_BYTES / 2**20:g} MiB the "
        f"reasoning of the last {reasoning_fit:,.0f} (one sample each)."
    )
    measured["defaults"] = {
        "before_mib_at_100000": before_mib,
        "pairs_in_cache_bytes": scores_fit,
        "reasoning_pairs_in_cache_reasoning_bytes": reasoning_fit,
    }
    return measured


def report_stall(stall: dict[str, list[Any]], args: argparse.Namespace) -> dict[str, Any]:
    column = {"longest": 0, "loop_cpu": 1, "wall": 2}
    median = {
        name: {what: statistics.median(run[index] for run in stall[name]) for what, index in column.items()}
        for name in STALL_CACHES
    }
    print(
        f"\nEvent loop per rerank of {args.pairs} uncached pairs, {args.reranks} reranks each, sqlite files "
        f"prefilled with {args.prefill:,} scores: median (range), ms"
    )
    print("| cache | longest stall | loop-thread CPU of the rerank | rerank wall time |")
    print("|---|---|---|---|")
    labels = {
        "memory": "memory only",
        "before": "sqlite before (on the loop)",
        "now": "sqlite now (own thread)",
    }
    for name in STALL_CACHES:
        cells = []
        for index in column.values():
            values = [run[index] * 1000 for run in stall[name]]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        print(f"| {labels[name]} | {' | '.join(cells)} |")
    added = {
        name: {what: (median[name][what] - median["memory"][what]) * 1000 for what in column}
        for name in ("before", "now")
    }
    for name in ("before", "now"):
        print(
            f"sqlite {name}: {added[name]['longest']:.2f} ms more in the longest stall, "
            f"{added[name]['loop_cpu']:.2f} ms more loop-thread CPU, {added[name]['wall']:.2f} ms more wall time, "
            f"per {args.pairs} pairs"
        )
    autocommit = statistics.median(stall["autocommit"])
    one = statistics.median(stall["one_transaction"])
    print(
        f"the same {args.pairs} rows written directly: {autocommit * 1000:.2f} ms one autocommit each (before), "
        f"{one * 1000:.2f} ms in one transaction (now): ratio {autocommit / one:.2f}"
    )
    return {
        "median_ms": {
            name: {what: value * 1000 for what, value in median[name].items()} for name in STALL_CACHES
        },
        "sqlite_added_ms": added,
        "direct_autocommit_ms": autocommit * 1000,
        "direct_one_transaction_ms": one * 1000,
    }


if __name__ == "__main__":
    sys.exit(main())
