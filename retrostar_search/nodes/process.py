"""Launching a node in its own session and finding or ending every process it made.

The pid file holds the launcher's pid, which is also the process group of everything the node starts
(Elasticsearch's launcher is itself a JVM that spawns the server JVM). Liveness is read from /proc:
a group member whose command line names the node folder, so a stale pid reused by an unrelated
program is never mistaken for the node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from retrostar_search.nodes.errors import NodeError
from retrostar_search.nodes.runas import Account
from retrostar_search.nodes.specs import EngineSpec

PID_FILE = "node.pid"
LOG_FILE = "node.log"


def spawn(spec: EngineSpec, home: Path, java_home: Path, heap: str, account: Account) -> int:
    """Start the node detached from the caller's session; its console output goes to node.log."""
    env = {
        **os.environ,
        "JAVA_HOME": str(java_home),
        spec.env_var("JAVA_HOME"): str(java_home),
        spec.env_var("JAVA_OPTS"): f"-Xms{heap} -Xmx{heap}",
        spec.env_var("PATH_CONF"): str(home / "config"),
        "HOME": str(home),
    }
    # Under root, drop to the node account (and its groups only); otherwise stay the caller.
    switch = not account.is_caller
    with (home / LOG_FILE).open("wb") as log:
        proc = subprocess.Popen(
            [str(home / spec.launcher)],
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=account.uid if switch else None,
            group=account.gid if switch else None,
            extra_groups=[] if switch else None,
        )
    # Reap the launcher when it exits, so a long-lived caller (a test session) keeps no zombie.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    (home / PID_FILE).write_text(f"{proc.pid}\n")
    return proc.pid


def running_group(home: Path) -> int | None:
    """The node's process group if any of its processes is alive, else None (a stale pid file)."""
    try:
        pgid = int((home / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    members = group_members(pgid)
    return pgid if any(_names_home(pid, home) for pid in members) else None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in the group, read from /proc."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _names_home(pid: int, home: Path) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    root = str(home)
    return any(arg == root or arg.endswith(f"={root}") or f"{root}/" in arg for arg in args)


def terminate(pgid: int, *, grace_s: float = 60.0) -> None:
    """SIGTERM the whole group, SIGKILL what outlives the grace period, return once none is left."""
    _signal_group(pgid, signal.SIGTERM)
    if _wait_gone(pgid, grace_s):
        return
    _signal_group(pgid, signal.SIGKILL)
    if not _wait_gone(pgid, 15.0):
        raise NodeError(f"processes {group_members(pgid)} of group {pgid} survived SIGKILL")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group may have emptied between the liveness check and the signal.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _wait_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:`port` (binding is the only reliable test)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Lets a port in TIME_WAIT count as free, as it does for the engine's own listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def log_tail(home: Path, lines: int) -> list[str]:
    """The last `lines` lines of the console log, streamed so a long-running node's log stays cheap."""
    path = home / LOG_FILE
    if not path.exists():
        return []
    with path.open(errors="replace") as log:
        return [line.rstrip("\n") for line in deque(log, maxlen=lines)]
