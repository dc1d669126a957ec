"""Scale-out: throughput of 1, 2 and 4 model workers behind the real SGLang router, how well each query stays
on one worker, and the score-cache hit rate of two connector replicas with a shared or a local cache.

Every part runs in processes of its own, none of them this one (this process only sends the load and
reads the figures):

- scripted SGLang workers (`python -m tests.scripted_sglang --capacity C --latency L`): each stands
  for one GPU that decodes C sequences at once, each sequence taking L seconds, the rest queued; on
  shutdown each writes how many pairs of which query it answered (`--stats-file`);
- the real router (sglang-router 0.3.2 from the test extra) with the invocation docs/scale-out.md
  recommends (`RECOMMENDED_FLAGS` in tests/sglang_router.py: `--policy manual --assignment-mode
  min_load`, a circuit breaker of 3, health checks every 5 s), or other flags (`--router-arg=...`);
- connectors (`retrosearch serve`, deadline off, explorer off).

It measures, with fresh processes for every repeat:

1. throughput: `clients per worker` x N clients send rerank requests of D documents (a fresh query each
   time, cache off) back to back through one connector and the router to N = 1, 2, 4 workers; pairs/s and
   queries/s over the measured window, the ratio to ideal linear scaling (N x the 1-worker figure of the
   same repeat) and to the workers' capacity (N x C / L pairs/s);
2. query affinity in the same runs: for each query, the share of its pairs answered by the worker that
   answered most of them (1.0: every pair of the query on one worker, where its prompt prefix is cached);
   with N workers and no affinity at all it is about 1/N;
3. cache: a replayed query log with repeats (Zipf-distributed over the distinct queries: a few head
   queries make much of the traffic) sent alternately to two connector replicas in front of one worker,
   each replica with its own in-memory cache ("local"), both on one sqlite file ("shared-sqlite": one
   host only), and, with `--cache-url`, both on that shared cache server ("shared-url"). The hit rate is
   the share of the pairs the connectors served from their cache (their `meta.retrostar` counts); the
   ideal is the log's own repeat rate, 1 - distinct / requests.

Run from the repository root (the `bench` extra brings aiohttp, the `test` extra the router):

    python bench/scale_out.py --quick                          # about 2 minutes
    python bench/scale_out.py --json bench/records/scale_out-before.json
    python bench/scale_out.py --skip throughput --cache-url redis://127.0.0.1:6379/15
    python bench/scale_out.py --workers 4 --router-arg=--policy --router-arg=cache_aware
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.* and bench.* as modules, whatever the working directory

from bench.connector_overhead import Server, free_port, spread  # noqa: E402
from tests.sglang_router import RECOMMENDED_FLAGS, RouterProcess  # noqa: E402

REPLICAS = 2
QUICK = {"repeats": 1, "duration": 10.0, "warmup": 2.0, "requests": 200}
_PASSAGE = (
    "Leaves change colour in autumn because chlorophyll breaks down as days shorten, revealing yellow and "
    "orange carotenoids, while some species produce red anthocyanins."
)


# ------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------


class Worker(Server):
    """A scripted SGLang worker; `pairs_by_query()` reads what it answered, once it has stopped."""

    def __init__(self, args: argparse.Namespace, latency: float, capacity: int | None, log_dir: Path) -> None:
        port = free_port()
        self.stats_file = log_dir / f"worker-{port}.json"
        command = [
            sys.executable, "-m", "tests.scripted_sglang", "--port", str(port),
            "--latency", str(latency), "--stats-file", str(self.stats_file),
        ]  # fmt: skip
        if capacity is not None:
            command += ["--capacity", str(capacity)]
        super().__init__(f"worker-{port}", command, port, log_dir)

    def pairs_by_query(self) -> Counter[str]:
        return Counter(json.loads(self.stats_file.read_text())["queries"])


def connector_command(backend_url: str, port: int, *options: str) -> list[str]:
    retrosearch = Path(sys.executable).with_name("retrosearch")
    return [
        str(retrosearch), "serve", "--backend", "sglang", "--backend-url", backend_url, "--port", str(port),
        "--deadline", "0", "--no-explore", "--log-level", "warning", *options,
    ]  # fmt: skip


@contextmanager
def stack_of(log_dir: Path) -> Iterator[tuple[ExitStack, Any]]:
    """An ExitStack, and `start(server)` that stops the server when the stack closes."""
    with ExitStack() as stack:

        def start(server: Any) -> Any:
            stack.callback(server.stop)
            return server

        yield stack, start


def start_connector(start: Any, name: str, backend_url: str, log_dir: Path, *options: str) -> Server:
    port = free_port()
    return start(Server(name, connector_command(backend_url, port, *options), port, log_dir))


# ------------------------------------------------------------------------------------------------
# Load
# ------------------------------------------------------------------------------------------------


def documents_for(query: str, count: int) -> list[str]:
    return [f"Passage {i} about {query}. {_PASSAGE}" for i in range(count)]


async def rerank(
    session: aiohttp.ClientSession, url: str, query: str, documents: list[str]
) -> dict[str, Any]:
    """One rerank; any answer but a complete, undegraded ranking stops the benchmark."""
    async with session.post(f"{url}/v1/rerank", json={"query": query, "documents": documents}) as response:
        body = await response.json(content_type=None)
        if response.status != 200 or body.get("degraded") or len(body.get("results", ())) != len(documents):
            raise RuntimeError(f"{url} answered {response.status}: {str(body)[:300]}")
    return body


async def saturate(
    url: str, clients: int, size: int, warmup: float, duration: float, tag: str
) -> dict[str, Any]:
    """`clients` loops of back-to-back reranks of `size` fresh documents; counts over the window after
    `warmup`."""
    done = 0
    stop = asyncio.Event()

    async def client(number: int) -> None:
        nonlocal done
        turn = 0
        while not stop.is_set():
            query = f"query {tag} client {number} turn {turn}"
            await rerank(session, url, query, documents_for(query, size))
            done += 1
            turn += 1

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients), timeout=timeout
    ) as session:
        tasks = [asyncio.create_task(client(number)) for number in range(clients)]
        await asyncio.sleep(warmup)
        before, started = done, time.perf_counter()
        await asyncio.sleep(duration)
        after, elapsed = done, time.perf_counter() - started
        stop.set()
        await asyncio.gather(*tasks)
    queries = after - before
    return {
        "queries": queries,
        "seconds": elapsed,
        "queries_per_s": queries / elapsed,
        "pairs_per_s": queries * size / elapsed,
    }


def affinity(workers: list[Worker]) -> dict[str, float]:
    """Per query, the share of its pairs on the worker that answered most of them: mean, and the share of
    queries with every pair on one worker."""
    per_worker = [worker.pairs_by_query() for worker in workers]
    queries = set().union(*per_worker)
    shares = [max(c[q] for c in per_worker) / sum(c[q] for c in per_worker) for q in queries]
    return {
        "mean_share": statistics.fmean(shares),
        "queries_on_one_worker": sum(share == 1.0 for share in shares) / len(shares),
        "queries": len(shares),
        "pairs_per_worker": [sum(counter.values()) for counter in per_worker],
    }


def zipf_log(distinct: int, requests: int, exponent: float, rng: random.Random) -> list[int]:
    """A query log: `requests` query numbers drawn with P(rank k) proportional to 1 / k**exponent."""
    weights = [1 / rank**exponent for rank in range(1, distinct + 1)]
    return rng.choices(range(distinct), weights=weights, k=requests)


async def replay(urls: list[str], log: list[int], size: int, in_flight: int, nonce: str) -> dict[str, int]:
    """The log sent in order, request i to replica i % len(urls), `in_flight` at once; the replicas' own
    counts of pairs scored and served from their caches."""
    slots = asyncio.Semaphore(in_flight)
    totals: Counter[str] = Counter()

    async def one(index: int, number: int) -> None:
        query = f"head query {number} ({nonce})"
        async with slots:
            body = await rerank(session, urls[index % len(urls)], query, documents_for(query, size))
        stats = body["meta"]["retrostar"]
        totals.update(scored=stats["pairs_scored"], cached=stats["cache_hits"])

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(one(index, number) for index, number in enumerate(log)))
    return dict(totals)


# ------------------------------------------------------------------------------------------------
# The parts
# ------------------------------------------------------------------------------------------------


def load_average(label: str) -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    print(f"  [load average {one:.2f} {five:.2f} {fifteen:.2f} {label}]", flush=True)
    return {"at": label, "load": [one, five, fifteen]}


async def run_throughput(args: argparse.Namespace, record: dict[str, Any], log_dir: Path) -> None:
    router_flags = args.router_arg or list(RECOMMENDED_FLAGS)
    for repeat in range(args.repeats):
        for workers in args.workers:
            record["load_average"].append(load_average(f"throughput repeat {repeat + 1}, {workers} workers"))
            with stack_of(log_dir) as (_, start):
                pool = [start(Worker(args, args.latency, args.capacity, log_dir)) for _ in range(workers)]
                for worker in pool:
                    worker.wait_ready()
                router = start(RouterProcess([w.url for w in pool], *router_flags, log_dir=log_dir))
                await asyncio.to_thread(router.wait_healthy, workers)
                connector = start_connector(start, "connector", router.url, log_dir, "--cache-size", "0")
                connector.wait_ready()
                clients = args.clients_per_worker * workers
                tag = f"r{repeat}w{workers}"
                block = await saturate(
                    connector.url, clients, args.documents, args.warmup, args.duration, tag
                )
                for server in (connector, router, *pool):  # the workers write their stats on the way out
                    server.stop()
            block.update(repeat=repeat, workers=workers, clients=clients, affinity=affinity(pool))
            block["capacity_pairs_per_s"] = workers * args.capacity / args.latency
            record["throughput"].append(block)
            print(
                f"  repeat {repeat + 1} {workers} workers: {block['pairs_per_s']:7.2f} pairs/s, "
                f"{block['queries_per_s']:5.2f} queries/s, affinity {block['affinity']['mean_share']:.2f}",
                flush=True,
            )


async def run_cache(args: argparse.Namespace, record: dict[str, Any], log_dir: Path) -> None:
    modes: dict[str, list[str]] = {"local": [], "shared-sqlite": ["--cache-path", "{sqlite}"]}
    if args.cache_url:
        modes["shared-url"] = ["--cache-url", args.cache_url]
    for repeat in range(args.repeats):
        log = zipf_log(args.distinct, args.requests, args.zipf, random.Random(args.seed + repeat))
        for mode, options in modes.items():
            record["load_average"].append(load_average(f"cache repeat {repeat + 1}, {mode}"))
            sqlite = log_dir / f"shared-{repeat}.sqlite"
            options = [option.format(sqlite=sqlite) for option in options]
            with stack_of(log_dir) as (_, start):
                worker = start(Worker(args, args.cache_latency, None, log_dir))
                worker.wait_ready()
                replicas = [
                    start_connector(start, f"replica-{i}", worker.url, log_dir, *options)
                    for i in range(REPLICAS)
                ]
                for replica in replicas:
                    replica.wait_ready()
                nonce = f"{repeat}-{mode}-{time.time_ns()}"  # fresh keys, even in a cache server kept between runs
                totals = await replay(
                    [r.url for r in replicas], log, args.cache_documents, args.in_flight, nonce
                )
            pairs = totals["scored"] + totals["cached"]
            row = {"repeat": repeat, "mode": mode, **totals, "hit_rate": totals["cached"] / pairs,
                   "ideal_hit_rate": 1 - len(set(log)) / len(log)}  # fmt: skip
            record["cache"].append(row)
            print(
                f"  repeat {repeat + 1} {mode:>13}: hit rate {row['hit_rate']:.3f} (ideal {row['ideal_hit_rate']:.3f}), "
                f"{totals['scored']} pairs scored",
                flush=True,
            )


# ------------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------------


def summarise(args: argparse.Namespace, record: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"throughput": [], "cache": []}
    rows = record["throughput"]
    if rows:
        one_worker = {row["repeat"]: row["pairs_per_s"] for row in rows if row["workers"] == 1}
        print(
            f"\nThroughput: {args.capacity} sequences x {args.latency:g} s per worker, {args.documents} documents "
            f"per query, {args.clients_per_worker} clients per worker, {args.duration:g} s: median (range) of "
            f"{args.repeats} repeats"
        )
        print(
            "| workers | pairs/s | queries/s | vs ideal linear | vs capacity | affinity share | queries on one worker |"
        )
        print("|---|---|---|---|---|---|---|")
        for workers in args.workers:
            cell = [row for row in rows if row["workers"] == workers]
            linear = [
                row["pairs_per_s"] / (workers * one_worker[row["repeat"]])
                for row in cell
                if row["repeat"] in one_worker
            ]
            entry = {
                "workers": workers,
                "pairs_per_s": [row["pairs_per_s"] for row in cell],
                "queries_per_s": [row["queries_per_s"] for row in cell],
                "vs_linear": linear,
                "vs_capacity": [row["pairs_per_s"] / row["capacity_pairs_per_s"] for row in cell],
                "affinity_share": [row["affinity"]["mean_share"] for row in cell],
                "queries_on_one_worker": [row["affinity"]["queries_on_one_worker"] for row in cell],
            }
            summary["throughput"].append(entry)
            print(
                f"| {workers} | {spread(entry['pairs_per_s'])} | {spread(entry['queries_per_s'], digits=2)} | "
                f"{spread(linear, digits=2) if linear else '-'} | {spread(entry['vs_capacity'], digits=2)} | "
                f"{spread(entry['affinity_share'], digits=2)} | {spread(entry['queries_on_one_worker'], digits=2)} |"
            )
    rows = record["cache"]
    if rows:
        print(
            f"\nCache hit rate of {REPLICAS} replicas: {args.requests} requests over {args.distinct} queries "
            f"(Zipf {args.zipf:g}), {args.cache_documents} documents each, {args.in_flight} in flight: "
            "median (range)"
        )
        print("| cache | hit rate | ideal (the log's repeats) | pairs scored | pairs scored vs local |")
        print("|---|---|---|---|---|")
        local = {row["repeat"]: row["scored"] for row in rows if row["mode"] == "local"}
        for mode in dict.fromkeys(row["mode"] for row in rows):
            cell = [row for row in rows if row["mode"] == mode]
            entry = {
                "mode": mode,
                "hit_rate": [row["hit_rate"] for row in cell],
                "ideal_hit_rate": [row["ideal_hit_rate"] for row in cell],
                "scored": [row["scored"] for row in cell],
                "scored_vs_local": [
                    row["scored"] / local[row["repeat"]] for row in cell if row["repeat"] in local
                ],
            }
            summary["cache"].append(entry)
            print(
                f"| {mode} | {spread(entry['hit_rate'], digits=3)} | {spread(entry['ideal_hit_rate'], digits=3)} | "
                f"{spread(entry['scored'], digits=0)} | {spread(entry['scored_vs_local'], digits=2)} |"
            )
    return summary


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one repeat, shorter windows, a shorter log")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: throughput, cache")
    parser.add_argument("--json", type=Path, help="write the record (config, rows, summary) here")
    throughput = parser.add_argument_group("throughput and affinity")
    throughput.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    throughput.add_argument("--capacity", type=int, default=8, help="sequences a worker decodes at once")
    throughput.add_argument("--latency", type=float, default=0.5, help="seconds per sequence")
    throughput.add_argument("--documents", type=int, default=16, help="documents per query")
    throughput.add_argument("--clients-per-worker", type=int, default=3)
    throughput.add_argument("--warmup", type=float, default=3.0)
    throughput.add_argument("--duration", type=float, default=20.0)
    throughput.add_argument(
        "--router-arg", action="append", default=[], help="router flags instead of the recommended ones"
    )
    cache = parser.add_argument_group("cache")
    cache.add_argument("--distinct", type=int, default=100, help="distinct queries in the log")
    cache.add_argument("--requests", type=int, default=400)
    cache.add_argument("--zipf", type=float, default=1.0, help="exponent of the query popularity")
    cache.add_argument("--cache-documents", type=int, default=10)
    cache.add_argument("--in-flight", type=int, default=4, help="requests of the log in flight at once")
    cache.add_argument("--cache-latency", type=float, default=0.02)
    cache.add_argument("--cache-url", help="a shared cache server for the replicas (serve --cache-url)")
    cache.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    if args.quick:  # shorter, where not given
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    return args


async def main() -> None:
    args = parse_args()
    skip = set(filter(None, args.skip.split(",")))
    record: dict[str, Any] = {
        "config": {
            key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
        },
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "throughput": [],
        "cache": [],
        "load_average": [],
    }
    record["config"]["router_flags"] = args.router_arg or list(RECOMMENDED_FLAGS)
    with tempfile.TemporaryDirectory(prefix="scale-out-") as folder:
        if "throughput" not in skip:
            print("throughput and affinity", flush=True)
            await run_throughput(args, record, Path(folder))
        if "cache" not in skip:
            print("cache", flush=True)
            await run_cache(args, record, Path(folder))
    record["summary"] = summarise(args, record)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nrecord written to {args.json}")


if __name__ == "__main__":
    asyncio.run(main())
