"""`retrosearch serve` in a process of its own, as a user runs it: its options, its environment, its log
(read back from a file), its memory (from /proc)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from connector.background import free_port
from connector.settings import ENV_PREFIX

RETROSEARCH = str(Path(sys.executable).parent / "retrosearch")


class ServeProcess:
    """`with ServeProcess("--backend-url", url, env={...}) as server: ... server.url ... server.log()`.

    The process sees no RETROSEARCH_* variable of the shell running the tests, only those in `env`."""

    def __init__(self, *options: str, env: dict[str, str] | None = None, start_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [RETROSEARCH, "serve", "--port", str(self.port), *options]
        inherited = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
        self.env = {**inherited, **(env or {})}
        self.start_timeout = start_timeout
        self._log_file = tempfile.NamedTemporaryFile(prefix="retrosearch-serve-", suffix=".log")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServeProcess:
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        try:
            wait_for_health(f"{self.url}/health", self.process, self.start_timeout)
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}: {self.log()}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log_file.close()

    def stop(self) -> None:
        """SIGTERM (uvicorn's graceful shutdown), then SIGKILL if it is still there after 20 s."""
        if self.process is None:
            return
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        self.process.kill()  # a no-op once the process has exited
        self.process.wait()

    def log(self) -> str:
        """Everything the process has written to stdout and stderr so far."""
        return Path(self._log_file.name).read_text(encoding="utf-8", errors="replace")

    def peak_rss_bytes(self) -> int:
        """The process's peak resident memory (VmHWM), in bytes."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/<pid>/status")


def wait_for_health(url: str, process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Wait until `url` answers 200; AssertionError when `process` exits first (with what it printed, when
    its output is a pipe) or the time runs out."""
    give_up_at = time.monotonic() + timeout
    while time.monotonic() < give_up_at:
        if process.poll() is not None:
            raise AssertionError(
                f"retrosearch serve exited: {process.stdout.read() if process.stdout else ''}"
            )
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")
