"""The real SGLang router (PyPI sglang-router 0.3.2, a Rust binary that runs on CPU) as a process of its own,
in front of scripted workers: what the `sglang_router` fixture (tests/conftest.py) and bench/scale_out.py
start. Facts about the router: docs/router-notes.md; the invocation and why: docs/scale-out.md.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.scripted_sglang import free_port

# The router invocation docs/scale-out.md recommends, and docker/compose.yml runs (less the worker URLs,
# the host and the ports; tests/test_docker.py holds the compose file and the docs to these):
# - query affinity: every request of one query carries the same X-SMG-Routing-Key, and `manual` keeps a
#   key on one worker; a new key goes to the worker with the fewest requests in flight;
# - a circuit breaker that opens after 3 consecutive failures, below the 5 attempts of a retry: under
#   `manual` a retry goes back to the key's worker until its breaker opens, so with the default 10 a
#   request alone on a worker that dies is retried on the dead worker until it fails; it half-opens
#   after 15 s (default 60), so a restarted worker takes new queries again after about 20 s, not 60;
# - health checks every 5 s, 2 failures to drop a worker: a dead worker leaves `/readiness` (and takes
#   no new key) within about 10 s instead of 3 minutes; one slow answer of a busy worker is not enough.
RECOMMENDED_FLAGS: tuple[str, ...] = (
    "--policy", "manual",
    "--assignment-mode", "min_load",
    "--cb-failure-threshold", "3",
    "--cb-timeout-duration-secs", "15",
    "--health-check-interval-secs", "5",
    "--health-failure-threshold", "2",
)  # fmt: skip

# Tests only: health checks every second and one failure marks a worker unhealthy, so a killed worker
# leaves the router at once. Flags given later (RECOMMENDED_FLAGS) override these.
FAST_HEALTH_FLAGS: tuple[str, ...] = (
    "--health-check-interval-secs", "1",
    "--health-failure-threshold", "1",
    "--health-success-threshold", "1",
)  # fmt: skip


def router_command(port: int, worker_urls: list[str], *flags: str, log_level: str = "warn") -> list[str]:
    """`python -m sglang_router.launch_router` on 127.0.0.1:`port` with its Prometheus endpoint on a free
    port (by default it takes 0.0.0.0:29000, so parallel routers would collide)."""
    return [
        sys.executable, "-m", "sglang_router.launch_router",
        "--host", "127.0.0.1", "--port", str(port),
        "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
        "--worker-urls", *worker_urls,
        "--log-level", log_level, *flags,
    ]  # fmt: skip


class RouterProcess:
    """One router process on a free port; its output goes to `log_dir`/sglang-router-PORT.log."""

    def __init__(self, worker_urls: list[str], *flags: str, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"sglang-router-{self.port}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                router_command(self.port, worker_urls, *flags), stdout=output, stderr=subprocess.STDOUT
            )

    def readiness(self) -> httpx.Response:
        return httpx.get(f"{self.url}/readiness", timeout=5)

    def wait_healthy(self, workers: int, timeout: float = 30.0) -> None:
        """Wait until the router's /readiness counts `workers` healthy workers (RuntimeError if not)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"sglang-router exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if self.readiness().json().get("healthy_workers", 0) == workers:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sglang-router did not see {workers} healthy workers:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the router gives requests in flight its grace period), SIGKILL after 10 s."""
    for signal_process in (process.terminate, process.kill):
        signal_process()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
            return
