"""How much latency the rerank connector adds on top of the model backend, and how much it can serve.

Everything runs in this process on real ports: the scripted SGLang server (tests/scripted_sglang.py) and
the connector each on a uvicorn server in a thread of its own, the load from this thread's event loop. For
each request size (10, 100, 1000 documents) and backend latency (0 and 50 ms) it alternates two
measurements of the same pairs:

- backend only: the connector's own SGLang client sends every pair straight to the scripted server, all at
  once, as the connector would;
- through the connector: one `POST /v1/rerank` with those documents.

It reports the connector's added latency two ways, p50 and p99 over the requests: `added`, the difference
of the two (it carries the variance of two separate backend runs), and `own`, the request's wall time
minus the time the connector reports waiting for the backend in that same request (HTTP hop, parsing,
prompts, cache keys, serialising the answer). All threads share one interpreter, so both are pessimistic
next to a connector in a process of its own. Then the ratio of a 100-document request to one backend call,
and requests per second under concurrency. The score cache is off, so every request reaches the backend.

Run from the repository root: `python bench/connector_overhead.py` (1-2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.scripted_sglang

from connector.app import create_app
from connector.background import BackgroundServer
from connector.settings import ConnectorSettings
from retrostar_search.backends.base import SamplingParams
from retrostar_search.backends.sglang_http import SGLangGenerateBackend
from retrostar_search.prompts import render_prompt
from retrostar_search.tasks import DEFAULT_TASK
from tests.scripted_sglang import ScriptedSGLangServer

SIZES = (10, 100, 1000)
LATENCIES = (0.0, 0.05)
# The 100-document ratio also at 1 s, nearer a real Retro* generation (a few hundred tokens per pair), where
# the scripted server's per-pair CPU no longer hides what the connector does.
RATIO_LATENCIES = (0.05, 1.0)
MAX_CONCURRENCY = 256  # the connector's default pairs in flight; the backend-only client uses the same
# A passage of BRIGHT-like length (about 600 characters).
_FILLER = (
    "Leaves change colour in autumn because chlorophyll breaks down as days shorten, revealing yellow and "
    "orange carotenoids, while some species produce red anthocyanins from sugars trapped in the leaf. "
) * 3


@dataclass
class Pair:
    backend_only: float  # the same pairs sent straight to the backend
    connector: float  # the request through the connector, as its client saw it
    connector_model: float  # of which the connector spent waiting for the backend (its own report)

    @property
    def added(self) -> float:
        return self.connector - self.backend_only

    @property
    def own(self) -> float:
        """The connector's own share of its request, measured within that request: no baseline noise."""
        return self.connector - self.connector_model


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with few samples p99 is the worst one, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def documents_for(request: int, size: int) -> tuple[str, list[str]]:
    # Fresh text per request: nothing may be served from a cache anywhere.
    query = f"why do leaves change colour in autumn (request {request})"
    return query, [f"Passage {i} of request {request}. {_FILLER}" for i in range(size)]


async def backend_only(backend: SGLangGenerateBackend, query: str, documents: list[str]) -> float:
    prompts = [render_prompt(DEFAULT_TASK, query, document) for document in documents]
    started = time.perf_counter()
    await asyncio.gather(*(backend.generate(prompt, 1, SamplingParams()) for prompt in prompts))
    return time.perf_counter() - started


async def through_connector(
    client: httpx.AsyncClient, query: str, documents: list[str]
) -> tuple[float, float]:
    """Wall time of one rerank request, and the time the connector says it waited for the backend."""
    started = time.perf_counter()
    response = await client.post("/v1/rerank", json={"query": query, "documents": documents})
    elapsed = time.perf_counter() - started
    body = response.json()
    if response.status_code != 200 or body["degraded"] or len(body["results"]) != len(documents):
        raise RuntimeError(f"connector answered {response.status_code}: {response.text[:300]}")
    return elapsed, body["meta"]["retrostar"]["model_seconds"]


async def measure_overhead(
    backend: SGLangGenerateBackend, client: httpx.AsyncClient, size: int, repeats: int, first_request: int
) -> list[Pair]:
    pairs = []
    for repeat in range(repeats):
        query, documents = documents_for(first_request + repeat, size)
        # Alternate which goes first so that warm-up or background load does not favour one side.
        if repeat % 2 == 0:
            direct = await backend_only(backend, query, documents)
            connector, model = await through_connector(client, query, documents)
        else:
            connector, model = await through_connector(client, query, documents)
            direct = await backend_only(backend, query, documents)
        pairs.append(Pair(backend_only=direct, connector=connector, connector_model=model))
    return pairs


async def single_call_latency(backend: SGLangGenerateBackend, repeats: int = 3) -> float:
    times = [await backend_only(backend, f"single call {i}", ["one passage"]) for i in range(repeats)]
    return statistics.median(times)


async def throughput(
    client: httpx.AsyncClient, size: int, concurrency: int, duration: float
) -> tuple[float, int]:
    """Requests per second with `concurrency` clients sending `size`-document requests back to back."""
    done = 0
    stop_at = time.perf_counter() + duration

    async def worker(worker_id: int) -> None:
        nonlocal done
        request = 0
        while time.perf_counter() < stop_at:
            query, documents = documents_for(1_000_000 * (worker_id + 1) + request, size)
            await through_connector(client, query, documents)
            done += 1
            request += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done / (time.perf_counter() - started), done


async def run(scripted: ScriptedSGLangServer, connector_url: str, args: argparse.Namespace) -> None:
    repeats = {10: 40 * args.repeats, 100: 20 * args.repeats, 1000: 5 * args.repeats}
    backend = SGLangGenerateBackend(scripted.url, model="bench", max_concurrency=MAX_CONCURRENCY)
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=connector_url, timeout=120, limits=limits) as client:
        # Warm both paths (connections, imports, first-request costs) before anything is timed.
        await measure_overhead(backend, client, 10, 2, first_request=-10)

        print(f"load average before the run: {', '.join(f'{load:.1f}' for load in os.getloadavg())}")
        print("added = request through the connector - the same pairs sent to the backend directly")
        print("own   = request through the connector - the time it waited for the backend (same request)")
        print(
            f"{'backend':>8} {'docs':>5} {'n':>3} {'backend-only p50':>17} {'connector p50':>14} "
            f"{'added p50':>10} {'added p99':>10} {'own p50':>8} {'own p99':>8}   (ms)"
        )
        request_number = 0
        for latency in LATENCIES:
            scripted.script(latency=latency)
            for size in SIZES:
                pairs = await measure_overhead(backend, client, size, repeats[size], request_number)
                request_number += repeats[size]
                added = [pair.added for pair in pairs]
                own = [pair.own for pair in pairs]
                connector_p50 = statistics.median(pair.connector for pair in pairs)
                backend_p50 = statistics.median(pair.backend_only for pair in pairs)
                print(
                    f"{latency * 1000:>5.0f} ms {size:>5} {len(pairs):>3} "
                    f"{ms(backend_p50):>17} {ms(connector_p50):>14} "
                    f"{ms(percentile(added, 50)):>10} {ms(percentile(added, 99)):>10} "
                    f"{ms(percentile(own, 50)):>8} {ms(percentile(own, 99)):>8}"
                )

        print()
        print("100-document request / one backend call (ideal about 1.0: all pairs in flight together)")
        for latency in RATIO_LATENCIES:
            scripted.script(latency=latency)
            one_call = await single_call_latency(backend)
            pairs = await measure_overhead(backend, client, 100, 4, request_number)
            request_number += 4
            connector_wall = statistics.median(pair.connector for pair in pairs)
            backend_wall = statistics.median(pair.backend_only for pair in pairs)
            # The same pairs sent straight to the scripted server show the floor its per-pair CPU sets on
            # this machine (a GPU server batches them instead); the connector cannot go below it.
            print(
                f"  backend latency {latency * 1000:>5.0f} ms: {ms(connector_wall)} ms / {ms(one_call)} ms = "
                f"{connector_wall / one_call:.2f}   (the same pairs backend-only: "
                f"{backend_wall / one_call:.2f})"
            )

        print()
        print(
            f"throughput: {args.concurrency} concurrent clients, {args.duration:g} s per run, score cache off"
        )
        for size in (10, 100):
            for latency in LATENCIES:
                scripted.script(latency=latency)
                rate, count = await throughput(client, size, args.concurrency, args.duration)
                print(
                    f"  {size:>4} documents/request, backend latency {latency * 1000:>3.0f} ms: "
                    f"{rate:7.1f} requests/s = {rate * size:6.0f} pairs/s ({count} requests)"
                )
    await backend.aclose()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="multiply the number of timed requests")
    parser.add_argument("--concurrency", type=int, default=8, help="clients in the throughput runs")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per throughput run")
    args = parser.parse_args()

    with ScriptedSGLangServer() as scripted:
        settings = ConnectorSettings(
            backend="sglang",
            backend_url=scripted.url,
            max_concurrency=MAX_CONCURRENCY,
            cache_size=0,
            deadline=0,
            max_documents=max(SIZES),
            max_concurrent_requests=args.concurrency + 4,
        )
        with BackgroundServer(create_app(settings)) as connector:
            asyncio.run(run(scripted, connector.url, args))


if __name__ == "__main__":
    main()
