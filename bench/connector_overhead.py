"""The connector against the floor: latency, CPU, throughput and a warm burst, ratios in the same run.

Three kinds of process, each on its own port, none of them this one:

- the scripted SGLang server (`python -m tests.scripted_sglang --latency L`), the model backend;
- the connector, `retrosearch serve` (uvicorn, `create_app`), score cache off so every pair reaches the
  backend, no deadline, explorer off;
- the floor, bench/floor.py: an aiohttp pass-through with a pooled aiohttp client that renders the same
  prompt, sends the same `/generate` per document, parses `<score>` and sorts. Nothing more.

This process only sends the load (aiohttp, bodies encoded before the clock starts) and reads the servers'
CPU from /proc. Every repeat starts fresh processes; within a repeat the connector and the floor take turns,
the order alternating, on the same backend process. It measures:

1. latency (p50, p99 over sequential requests) and CPU per request of the server process (user + sys of
   all its threads over the block / requests) for 10, 100 and 1000 documents at 0 ms, 50 ms and 1 s of
   backend latency; the backend's own CPU per request is shown too, to see whether it is the bottleneck;
2. throughput: requests/s with 1, 8 and 32 clients sending 100-document requests back to back (50 ms);
3. the warm burst: after one 100-document warm-up request, one more (a burst of 100 pairs) with 1 s of
   backend latency: its wall time over that latency (1.0 is ideal: every pair in flight at once), CPU per
   pair, and the TIME_WAIT sockets the burst left on the backend's port (/proc/net/tcp state 06, counted 1 s
   after the answer). Each side gets a fresh backend process here so that the sockets can be told apart.

It prints absolute figures, the connector/floor ratios per repeat (median and range), and PASS/FAIL against
issue 15's targets: 100 documents at a 50 ms backend within 1.3x the floor's latency and 1.5x its CPU,
1000 documents (50 ms) within 1.3x latency, throughput at 32 clients at least 0.75x the floor's. The
1000-document ratios at other latencies are printed for information.

Run from the repository root:

    python bench/connector_overhead.py --quick                   # 2-3 minutes on 2 busy cores
    python bench/connector_overhead.py --json bench-before.json  # the full run, 3 repeats
    python bench/connector_overhead.py --sizes 100 --latencies 0.05 --skip throughput,burst

The backend must not be the bottleneck: `--backend-arg=...` passes options to the scripted server (e.g. a
cheaper mode it offers), `--connector-arg=...` to `retrosearch serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
CONNECTOR, FLOOR = "connector", "floor"
SIDES = (CONNECTOR, FLOOR)
MAX_CONCURRENCY = 256  # pairs in flight to the backend, the connector's default; the floor's pool the same
TARGETS = {"latency_100": 1.3, "cpu_100": 1.5, "latency_1000": 1.3, "throughput_32": 0.75}
TARGET_LATENCY = 0.05  # the backend latency the targets are stated at
SETTLE_SECONDS = 1.0  # after the burst, before counting TIME_WAIT sockets
# A passage of BRIGHT-like length (about 600 characters).
_FILLER = (
    "Leaves change colour in autumn because chlorophyll breaks down as days shorten, revealing yellow and "
    "orange carotenoids, while some species produce red anthocyanins from sugars trapped in the leaf. "
) * 3


# ------------------------------------------------------------------------------------------------
# Processes and their CPU
# ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class CPUSnapshot:
    ticks: int  # utime + stime of the whole process, exited threads included, in clock ticks
    threads: dict[str, int]  # on-CPU nanoseconds of each live thread (/proc/PID/task/TID/schedstat)


def cpu_snapshot(pid: int) -> CPUSnapshot:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            threads[task.name] = int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return CPUSnapshot(ticks=int(fields[11]) + int(fields[12]), threads=threads)


def cpu_seconds_between(before: CPUSnapshot, after: CPUSnapshot) -> float:
    """CPU the process used between two snapshots: nanosecond-exact from the threads' schedstat, unless a
    thread ended in between (its time would be lost), then from the process's 10 ms clock ticks."""
    if set(before.threads) <= set(after.threads):
        return sum(after.threads[tid] - before.threads.get(tid, 0) for tid in after.threads) / 1e9
    return (after.ticks - before.ticks) / os.sysconf("SC_CLK_TCK")


class Server:
    """One benchmark process on a port of its own, stopped (TERM, then KILL) when the context ends."""

    def __init__(self, name: str, command: list[str], port: int, log_dir: Path) -> None:
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        self.log_path = log_dir / f"{name}-{port}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, path: str = "/health", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:  # not listening yet (URLError is an OSError)
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer {path} within {timeout:.0f} s")

    def cpu(self) -> CPUSnapshot:
        return cpu_snapshot(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def servers(
    args: argparse.Namespace, latency: float, sides: tuple[str, ...], log_dir: Path, *, own_backend: bool
) -> Iterator[dict[str, Server]]:
    """The backend(s) and the servers in front: one shared backend, or one per side (`own_backend`)."""
    with ExitStack() as stack:
        started: dict[str, Server] = {}

        def start(name: str, command: list[str], port: int) -> Server:
            server = Server(name, command, port, log_dir)
            stack.callback(server.stop)
            return server

        def backend(label: str) -> Server:
            port = free_port()
            command = [sys.executable, "-m", "tests.scripted_sglang", "--lean", "--port", str(port)]
            return start(label, [*command, "--latency", str(latency), *args.backend_arg], port)

        shared = None if own_backend else backend("backend")
        for side in sides:
            side_backend = shared or backend(f"backend-{side}")
            started[f"backend:{side}"] = side_backend
            port = free_port()
            started[side] = start(side, server_command(side, side_backend.url, port, args), port)
        for server in {id(s): s for s in started.values()}.values():
            server.wait_ready()
        yield started


def server_command(side: str, backend_url: str, port: int, args: argparse.Namespace) -> list[str]:
    if side == FLOOR:
        return [
            sys.executable, str(ROOT / "bench" / "floor.py"), "--port", str(port),
            "--backend-url", backend_url, "--max-concurrency", str(MAX_CONCURRENCY),
        ]  # fmt: skip
    script = Path(sys.executable).with_name("retrosearch")
    launcher = [str(script)] if script.exists() else [sys.executable, "-c", _CLI]
    return [
        *launcher, "serve", "--backend", "sglang", "--backend-url", backend_url, "--port", str(port),
        "--max-concurrency", str(MAX_CONCURRENCY), "--cache-size", "0", "--deadline", "0", "--no-explore",
        *args.connector_arg,
    ]  # fmt: skip


_CLI = "from retrostar_search.cli import main; main()"


def time_wait_sockets(port: int) -> int:
    """Sockets in TIME_WAIT (state 06) with `port` at either end, from /proc/net/tcp and tcp6."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] != "06":
                continue
            ports = {int(parts[1].rsplit(":", 1)[1], 16), int(parts[2].rsplit(":", 1)[1], 16)}
            count += port in ports
    return count


# ------------------------------------------------------------------------------------------------
# Load
# ------------------------------------------------------------------------------------------------


def rerank_body(request: int, size: int) -> bytes:
    # Fresh text per request: nothing may be served from a cache anywhere.
    query = f"why do leaves change colour in autumn (request {request})"
    documents = [f"Passage {i} of request {request}. {_FILLER}" for i in range(size)]
    return json.dumps({"query": query, "documents": documents}).encode()


class Load:
    """Rerank requests to one server from this process; every answer is checked, never trusted."""

    def __init__(self, url: str, connections: int) -> None:
        self.url = f"{url}/v1/rerank"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=3),
            timeout=aiohttp.ClientTimeout(total=600),
            headers={"Content-Type": "application/json"},
        )
        self.request = 0

    def next_body(self, size: int) -> bytes:
        self.request += 1
        return rerank_body(self.request, size)

    async def send(self, body: bytes, size: int) -> float:
        started = time.perf_counter()
        async with self.session.post(self.url, data=body) as response:
            payload = await response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                raise RuntimeError(f"{self.url} answered {response.status}: {payload[:300]!r}")
        answer = json.loads(payload)
        if answer.get("degraded") or len(answer["results"]) != size:
            raise RuntimeError(f"{self.url} answered an incomplete ranking: {payload[:300]!r}")
        return elapsed

    async def close(self) -> None:
        await self.session.close()


async def latency_block(server: Server, backend: Server, size: int, requests: int) -> dict[str, Any]:
    load = Load(server.url, 2)
    try:
        await load.send(load.next_body(size), size)  # a connection to this server, warm
        bodies = [load.next_body(size) for _ in range(requests)]
        cpu_before, backend_before = server.cpu(), backend.cpu()
        latencies = [await load.send(body, size) for body in bodies]
        cpu = cpu_seconds_between(cpu_before, server.cpu())
        backend_cpu = cpu_seconds_between(backend_before, backend.cpu())
    finally:
        await load.close()
    return {
        "latencies": latencies,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "cpu_per_request": cpu / requests,
        "backend_cpu_per_request": backend_cpu / requests,
    }


async def throughput_block(server: Server, size: int, clients: int, duration: float) -> dict[str, Any]:
    load = Load(server.url, clients + 2)
    try:
        await asyncio.gather(*(load.send(load.next_body(size), size) for _ in range(clients)))  # warm
        bodies = [load.next_body(size) for _ in range(clients * 4)]  # reused in turn: no encoding in the loop
        done = 0
        stop_at = time.perf_counter() + duration

        async def client(number: int) -> None:
            nonlocal done
            turn = 0
            while time.perf_counter() < stop_at:
                await load.send(bodies[(number + turn * clients) % len(bodies)], size)
                done += 1
                turn += 1

        cpu_before = server.cpu()
        started = time.perf_counter()
        await asyncio.gather(*(client(number) for number in range(clients)))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds_between(cpu_before, server.cpu())
    finally:
        await load.close()
    return {"requests": done, "seconds": elapsed, "rate": done / elapsed, "cpu_per_request": cpu / done}


async def burst_block(server: Server, backend: Server, size: int, latency: float) -> dict[str, Any]:
    load = Load(server.url, 2)
    try:
        await load.send(load.next_body(size), size)  # the warm-up: the server's pool now holds connections
        body = load.next_body(size)
        time_wait_before = time_wait_sockets(backend.port)
        cpu_before = server.cpu()
        wall = await load.send(body, size)
        cpu = cpu_seconds_between(cpu_before, server.cpu())
        # Closing takes a round of FINs after the answer; a busy backend processes its side late.
        await asyncio.sleep(SETTLE_SECONDS)
        time_wait_after = time_wait_sockets(backend.port)
    finally:
        await load.close()
    return {
        "wall": wall,
        "over_latency": wall / latency,
        "cpu_per_pair": cpu / size,
        "time_wait_left": time_wait_after - time_wait_before,
        "time_wait_total": time_wait_after,
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with few samples p99 is the worst one, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def requests_for(size: int, latency: float, scale: float) -> int:
    """Sequential requests per block: 30 of 10 documents, 15 of 100, 4 of 1000, at most 6 near 1 s."""
    count = max(4, int(3000 / (size + 90)))
    if latency >= 0.5:
        count = min(count, 6)
    return max(3, round(count * scale))


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


@dataclass
class Record:
    config: dict[str, Any]
    environment: dict[str, Any]
    latency: list[dict[str, Any]] = field(default_factory=list)  # one per (repeat, latency, size, side)
    throughput: list[dict[str, Any]] = field(default_factory=list)  # one per (repeat, clients, side)
    burst: list[dict[str, Any]] = field(default_factory=list)  # one per (repeat, side)
    load_average: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def note_load(record: Record, label: str) -> None:
    one, five, fifteen = os.getloadavg()
    record.load_average.append({"at": label, "load": [one, five, fifteen], "time": time.time()})
    print(f"  [load average {one:.2f} {five:.2f} {fifteen:.2f} {label}]", flush=True)


def turns(first: int) -> tuple[str, ...]:
    return SIDES if first % 2 == 0 else SIDES[::-1]


async def run_latency(args: argparse.Namespace, record: Record, log_dir: Path) -> None:
    for repeat in range(args.repeats):
        for latency in args.latencies:
            with servers(args, latency, SIDES, log_dir, own_backend=False) as started:
                note_load(record, f"latency repeat {repeat + 1}, backend {latency * 1000:g} ms")
                for number, size in enumerate(args.sizes):
                    requests = requests_for(size, latency, args.scale)
                    for side in turns(repeat + number):
                        block = await latency_block(started[side], started[f"backend:{side}"], size, requests)
                        record.latency.append(
                            {"repeat": repeat, "latency": latency, "size": size, "side": side, **block}
                        )
                        print(
                            f"  repeat {repeat + 1} {latency * 1000:>5g} ms {size:>5} docs {side:>9}: "
                            f"p50 {ms(block['p50']):>7} ms, CPU {ms(block['cpu_per_request']):>7} ms/request "
                            f"(backend {ms(block['backend_cpu_per_request'])})",
                            flush=True,
                        )


async def run_throughput(args: argparse.Namespace, record: Record, log_dir: Path) -> None:
    for repeat in range(args.repeats):
        with servers(args, args.throughput_latency, SIDES, log_dir, own_backend=False) as started:
            note_load(record, f"throughput repeat {repeat + 1}")
            for number, clients in enumerate(args.clients):
                for side in turns(repeat + number):
                    block = await throughput_block(
                        started[side], args.throughput_size, clients, args.duration
                    )
                    record.throughput.append({"repeat": repeat, "clients": clients, "side": side, **block})
                    print(
                        f"  repeat {repeat + 1} {clients:>3} clients {side:>9}: {block['rate']:7.2f} requests/s, "
                        f"CPU {ms(block['cpu_per_request'])} ms/request",
                        flush=True,
                    )


async def run_burst(args: argparse.Namespace, record: Record, log_dir: Path) -> None:
    for repeat in range(args.burst_repeats):
        for side in turns(repeat):
            with servers(args, args.burst_latency, (side,), log_dir, own_backend=True) as started:
                block = await burst_block(started[side], started[f"backend:{side}"], 100, args.burst_latency)
            record.burst.append({"repeat": repeat, "side": side, **block})
            print(
                f"  repeat {repeat + 1} burst {side:>9}: {block['over_latency']:.2f} backend latencies, "
                f"CPU {ms(block['cpu_per_pair'])} ms/pair, {block['time_wait_left']} TIME_WAIT",
                flush=True,
            )


# ------------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------------


def spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """`median (min-max)` of per-repeat values."""
    values = [value * scale for value in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def paired(rows: list[dict[str, Any]], key: str) -> dict[str, list[float]]:
    """Per side, the values of `key` in repeat order, and the connector/floor ratio of each repeat."""
    by_side: dict[str, dict[int, float]] = {side: {} for side in SIDES}
    for row in rows:
        by_side[row["side"]][row["repeat"]] = row[key]
    repeats = sorted(set(by_side[CONNECTOR]) & set(by_side[FLOOR]))
    result = {side: [by_side[side][r] for r in repeats] for side in SIDES}
    result["ratio"] = [by_side[CONNECTOR][r] / by_side[FLOOR][r] for r in repeats]
    return result


def summarise(args: argparse.Namespace, record: Record) -> list[tuple[str, bool, str]]:
    """Print the tables; return the target checks measured (name, passed, detail)."""
    checks: dict[str, tuple[bool, str]] = {}
    summary: dict[str, Any] = {"latency": [], "throughput": [], "burst": {}}
    if record.latency:
        print("\nLatency and CPU per request (ms), median over repeats (range)")
        print("| backend | docs | side | p50 | p99 | CPU/request | backend CPU/request |")
        print("|---|---|---|---|---|---|---|")
        for latency in args.latencies:
            for size in args.sizes:
                rows = [r for r in record.latency if r["latency"] == latency and r["size"] == size]
                p50, p99, cpu = paired(rows, "p50"), paired(rows, "p99"), paired(rows, "cpu_per_request")
                for side in SIDES:
                    backend = [r["backend_cpu_per_request"] for r in rows if r["side"] == side]
                    print(
                        f"| {latency * 1000:g} ms | {size} | {side} | {spread(p50[side], 1000)} | "
                        f"{spread(p99[side], 1000)} | {spread(cpu[side], 1000)} | {spread(backend, 1000)} |"
                    )
                summary["latency"].append(
                    {"latency": latency, "size": size, "p50": p50, "p99": p99, "cpu_per_request": cpu,
                     "backend_cpu_per_request": [r["backend_cpu_per_request"] for r in rows if r["side"] == FLOOR],
                     "latency_ratio": statistics.median(p50["ratio"]),
                     "cpu_ratio": statistics.median(cpu["ratio"])}
                )  # fmt: skip
        print("\nRatios connector / floor, per repeat: median (range)")
        print("| backend | docs | latency p50 | latency p99 | CPU/request |")
        print("|---|---|---|---|---|")
        for cell in summary["latency"]:
            print(
                f"| {cell['latency'] * 1000:g} ms | {cell['size']} | {spread(cell['p50']['ratio'], digits=2)} | "
                f"{spread(cell['p99']['ratio'], digits=2)} | {spread(cell['cpu_per_request']['ratio'], digits=2)} |"
            )
        cells = {(c["latency"], c["size"]): c for c in summary["latency"]}
        heavier = [
            f"{size} docs at {latency * 1000:g} ms"
            for (latency, size), cell in cells.items()
            if statistics.median(cell["backend_cpu_per_request"])
            > statistics.median(cell["cpu_per_request"][FLOOR])
        ]
        if heavier:
            print(
                f"  (note) the backend spent more CPU per request than the floor in {len(heavier)} of {len(cells)} "
                f"cells ({', '.join(heavier)}): where the cores are few, the backend's CPU then sets part of the "
                "floor's latency and throughput, and the ratios understate the connector's overhead"
            )
        if (cell := cells.get((TARGET_LATENCY, 100))) is not None:
            checks["100 docs, 50 ms: latency"] = verdict(cell["latency_ratio"], "<=", TARGETS["latency_100"])
            checks["100 docs, 50 ms: CPU"] = verdict(cell["cpu_ratio"], "<=", TARGETS["cpu_100"])
        if (cell := cells.get((TARGET_LATENCY, 1000))) is not None:
            checks["1000 docs, 50 ms: latency"] = verdict(
                cell["latency_ratio"], "<=", TARGETS["latency_1000"]
            )
        for latency in args.latencies:
            if latency != TARGET_LATENCY and (cell := cells.get((latency, 1000))) is not None:
                ratio = cell["latency_ratio"]
                print(
                    f"  (info) 1000 docs at {latency * 1000:g} ms: latency ratio {ratio:.2f} "
                    f"({'within' if ratio <= TARGETS['latency_1000'] else 'over'} {TARGETS['latency_1000']}x)"
                )

    if record.throughput:
        print(
            f"\nThroughput, {args.throughput_size} documents/request, backend {args.throughput_latency * 1000:g} ms, "
            f"{args.duration:g} s per run: median (range)"
        )
        print(
            "| clients | connector req/s | floor req/s | ratio | connector CPU/request | floor CPU/request |"
        )
        print("|---|---|---|---|---|---|")
        for clients in args.clients:
            rows = [r for r in record.throughput if r["clients"] == clients]
            rate, cpu = paired(rows, "rate"), paired(rows, "cpu_per_request")
            print(
                f"| {clients} | {spread(rate[CONNECTOR], digits=2)} | {spread(rate[FLOOR], digits=2)} | "
                f"{spread(rate['ratio'], digits=2)} | {spread(cpu[CONNECTOR], 1000)} | {spread(cpu[FLOOR], 1000)} |"
            )
            summary["throughput"].append(
                {
                    "clients": clients,
                    "rate": rate,
                    "cpu_per_request": cpu,
                    "ratio": statistics.median(rate["ratio"]),
                }
            )
            if clients == 32:
                checks["throughput, 32 clients"] = verdict(
                    statistics.median(rate["ratio"]), ">=", TARGETS["throughput_32"]
                )

    if record.burst:
        print(
            f"\nWarm burst: 100 pairs after a 100-pair warm-up, backend {args.burst_latency * 1000:g} ms; "
            "median (range)"
        )
        print("| side | wall / backend latency | CPU ms/pair | TIME_WAIT left |")
        print("|---|---|---|---|")
        for side in SIDES:
            rows = [r for r in record.burst if r["side"] == side]
            if not rows:
                continue
            over = [r["over_latency"] for r in rows]
            cpu = [r["cpu_per_pair"] for r in rows]
            waits = [float(r["time_wait_left"]) for r in rows]
            print(
                f"| {side} | {spread(over, digits=2)} | {spread(cpu, 1000, 2)} | {spread(waits, digits=0)} |"
            )
            summary["burst"][side] = {"over_latency": over, "cpu_per_pair": cpu, "time_wait_left": waits}

    record.summary = {
        **summary,
        "checks": {name: {"passed": p, "detail": d} for name, (p, d) in checks.items()},
    }
    return [(name, passed, detail) for name, (passed, detail) in checks.items()]


def verdict(ratio: float, relation: str, target: float) -> tuple[bool, str]:
    passed = ratio <= target if relation == "<=" else ratio >= target
    return passed, f"ratio {ratio:.2f}, target {relation} {target}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def environment() -> dict[str, Any]:
    def git(*command: str) -> str:
        try:
            return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    floats = lambda text: [float(part) for part in text.split(",") if part]  # noqa: E731
    ints = lambda text: [int(part) for part in text.split(",") if part]  # noqa: E731
    parser.add_argument(
        "--quick", action="store_true", help="2 repeats, fewer requests, 0 and 50 ms only, 2 s runs"
    )
    parser.add_argument("--repeats", type=int, help="each with fresh processes (default 3; quick 2)")
    parser.add_argument("--sizes", type=ints, default=[10, 100, 1000], help="documents per request")
    parser.add_argument("--latencies", type=floats, help="backend latencies in seconds (default 0,0.05,1)")
    parser.add_argument("--scale", type=float, help="multiply the requests per latency block (quick 0.5)")
    parser.add_argument("--clients", type=ints, default=[1, 8, 32], help="concurrent clients for throughput")
    parser.add_argument("--duration", type=float, help="seconds per throughput run (default 5; quick 2)")
    parser.add_argument("--throughput-size", type=int, default=100)
    parser.add_argument("--throughput-latency", type=float, default=0.05)
    parser.add_argument("--burst-latency", type=float, default=1.0)
    parser.add_argument("--burst-repeats", type=int, help="default: --repeats")
    parser.add_argument(
        "--skip", default="", help="comma-separated phases to skip: latency, throughput, burst"
    )
    parser.add_argument(
        "--backend-arg", action="append", default=[], help="extra option for the scripted server"
    )
    parser.add_argument(
        "--connector-arg", action="append", default=[], help="extra option for retrosearch serve"
    )
    parser.add_argument("--json", type=Path, help="write every measurement and the summary to this file")
    parser.add_argument(
        "--report", type=Path, help="print the tables of a run recorded with --json; run nothing"
    )
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.latencies = args.latencies or ([0.0, 0.05] if args.quick else [0.0, 0.05, 1.0])
    args.scale = args.scale or (0.5 if args.quick else 1.0)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    args.burst_repeats = args.burst_repeats or args.repeats
    args.skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    return args


async def run(args: argparse.Namespace, record: Record, log_dir: Path) -> None:
    phases = (("latency", run_latency), ("throughput", run_throughput), ("burst", run_burst))
    for name, phase in phases:
        if name in args.skip:
            continue
        print(f"\n{name}:", flush=True)
        await phase(args, record, log_dir)
    note_load(record, "at the end")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        # The tables again from a recorded run, e.g. to set a BEFORE run beside an AFTER one.
        saved = json.loads(args.report.read_text())
        record = Record(**saved)
        args = argparse.Namespace(**{**vars(args), **saved["config"], "json": None})
        print(f"recorded run of commit {record.environment['commit'][:10]}, {record.environment['started']}")
        elapsed = record.summary.get("seconds", 0.0)
        checks = summarise(args, record)
    else:
        config = {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()}
        config["json"] = str(args.json) if args.json else None
        record = Record(config=config, environment=environment())
        started = time.monotonic()
        print(f"connector vs floor, {args.repeats} repeats, commit {record.environment['commit'][:10]}")
        with tempfile.TemporaryDirectory(prefix="retrostar-bench-") as log_dir:
            asyncio.run(run(args, record, Path(log_dir)))
        checks = summarise(args, record)
        elapsed = time.monotonic() - started
        record.summary["seconds"] = elapsed
    print()
    for name, passed, detail in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")
    if checks:
        overall = all(passed for _, passed, _ in checks)
        print(f"{'PASS' if overall else 'FAIL'}: {sum(p for _, p, _ in checks)}/{len(checks)} targets met")
    print(f"({elapsed:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(asdict(record), indent=1))
        print(f"measurements written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
