"""Which HTTP client serves a warm burst in one backend latency: the measurement behind the backends' pool.

A Retro* rerank sends all its pairs at once. With a warm pool (idle connections left by the previous
rerank) a client should hand every request of the burst a connection at once, so the burst takes one
backend latency. For each client, in a process of its own against a fresh lean scripted backend
(`python -m tests.scripted_sglang --lean --latency L`): a warm-up burst of N `/generate` requests, then the
measured burst of N: its wall time over the backend latency, the client's CPU per request, and the
connections it opened for the measured burst.

    python bench/client_burst.py                  # 100 requests, 1 s backend, 3 repeats
    python bench/client_burst.py --requests 256 --latency 0.5

Clients: aiohttp's pool (what the backends use, `retrostar_search/backends/_client.py`), httpx with its
keep-alive pool, httpx without keep-alive (what the backends used before: a connection per request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ("aiohttp", "httpx-keepalive", "httpx-no-keepalive")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def body(number: int) -> bytes:
    text = f"[Begin of Query]\nwhy do leaves fall\n[End of Query]\n[Begin of Document]\npassage {number}\n[End of Document]\n"
    return json.dumps({"text": text, "sampling_params": {"n": 1}}).encode()


async def burst_with(client_name: str, url: str, requests: int) -> tuple[float, float, int]:
    """Warm-up burst, then the measured one: (wall seconds, client CPU seconds, connections opened)."""
    opened = 0
    if client_name == "aiohttp":
        import aiohttp

        async def count(*_: object) -> None:
            nonlocal opened
            opened += 1

        tracing = aiohttp.TraceConfig()
        tracing.on_connection_create_end.append(count)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=4.0), trace_configs=[tracing]
        )

        async def post(data: bytes) -> None:
            async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as response:
                await response.read()

        close = session.close
    else:
        import httpx

        keepalive = 256 if client_name == "httpx-keepalive" else 0

        limits = httpx.Limits(max_connections=256, max_keepalive_connections=keepalive)
        client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(limits=limits), timeout=60)

        async def trace(event: str, info: object) -> None:
            nonlocal opened
            opened += event == "connection.connect_tcp.complete"

        async def post(data: bytes) -> None:
            response = await client.post(
                url, content=data, headers={"Content-Type": "application/json"}, extensions={"trace": trace}
            )
            response.raise_for_status()

        close = client.aclose
    await asyncio.gather(*(post(body(i)) for i in range(requests)))
    opened = 0
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(post(body(requests + i)) for i in range(requests)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    await close()
    return wall, cpu, opened


def run_one(client_name: str, requests: int, latency: float) -> dict[str, float]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tests.scripted_sglang",
        "--lean",
        "--port",
        str(port),
        "--latency",
        str(latency),
    ]
    backend = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.05)
        measure = [sys.executable, __file__, "--one", client_name, "--url", f"http://127.0.0.1:{port}/generate",
                   "--requests", str(requests)]  # fmt: skip
        output = subprocess.run(measure, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        wall, cpu, opened = json.loads(output)
        return {"over_latency": wall / latency, "cpu_ms_per_request": cpu * 1000 / requests, "opened": opened}
    finally:
        backend.terminate()
        backend.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # the measuring process: this client only
        print(json.dumps(asyncio.run(burst_with(args.one, args.url, args.requests))))
        return
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
    for repeat in range(args.repeats):
        for name in CLIENTS[repeat % 3 :] + CLIENTS[: repeat % 3]:
            rows[name].append(run_one(name, args.requests, args.latency))
    print(
        f"Warm burst of {args.requests} requests, backend {args.latency:g} s, median (range) of {args.repeats}"
    )
    print("| client | wall / backend latency | client CPU ms/request | connections opened |")
    print("|---|---|---|---|")
    for name, results in rows.items():
        cells = []
        for key, digits in (("over_latency", 2), ("cpu_ms_per_request", 2), ("opened", 0)):
            values = [result[key] for result in results]
            cells.append(
                f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"
            )
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
