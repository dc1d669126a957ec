"""Start, stop and inspect local nodes: the API behind `retrosearch node` and the test fixtures."""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from retrostar_search.engines.connection import Engine
from retrostar_search.nodes import probe
from retrostar_search.nodes.assembly import Reporter, ensure_distribution
from retrostar_search.nodes.errors import NodeError
from retrostar_search.nodes.home import prepare_home
from retrostar_search.nodes.java import find_java_home, java_major
from retrostar_search.nodes.locking import exclusive
from retrostar_search.nodes.paths import node_home, node_lock_file
from retrostar_search.nodes.process import (
    LOG_FILE,
    PID_FILE,
    group_members,
    log_tail,
    port_in_use,
    running_group,
    spawn,
    terminate,
)
from retrostar_search.nodes.runas import node_account
from retrostar_search.nodes.specs import TRANSPORT_PORT_OFFSET, VERSIONS, EngineSpec, spec_for

DEFAULT_HEAP = "1g"
DEFAULT_START_TIMEOUT_S = 300.0
_HEAP = re.compile(r"[1-9][0-9]*[kKmMgG]")
_FAILURE = re.compile(r"ERROR|FATAL|Exception\b|Error\b")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    engine: Engine
    url: str
    version: str
    plugins: tuple[str, ...]
    health: str
    #: False when the node was already running: whoever started it should stop it.
    started_by_us: bool
    pid: int
    home: Path
    log_file: Path
    #: Seconds from launch to a yellow cluster; None when it was already running.
    start_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class NodeStatus:
    engine: Engine
    #: The version whose folder this is: the one running on the port, else the one asked for.
    version: str
    port: int
    url: str
    home: Path
    log_file: Path
    #: The node's process group while it runs; None when stopped.
    pid: int | None
    #: What the node reports; None when stopped or not answering yet (still starting).
    info: NodeInfo | None


def _checked_port(spec: EngineSpec, port: int | None) -> int:
    chosen = port or spec.default_port
    if not 1 <= chosen <= 65535 - TRANSPORT_PORT_OFFSET:
        raise NodeError(f"port {chosen} is out of range (1-{65535 - TRANSPORT_PORT_OFFSET})")
    return chosen


def _running_spec(engine: Engine, port: int) -> EngineSpec | None:
    """The version of the managed node running on this port, if any (folders are per version and port)."""
    for spec in VERSIONS[engine].values():
        if running_group(node_home(spec, port)) is not None:
            return spec
    return None


def _locate(engine: Engine | str, port: int | None, version: str | None) -> tuple[EngineSpec, int]:
    """The node `stop`, `status` and `logs` mean: the given version; without one, the version running on
    the port, else the one that ran there last, else the default."""
    engine = Engine(engine)
    default = spec_for(engine, version)
    port = _checked_port(default, port)
    if version is not None:
        return default, port
    running = _running_spec(engine, port)
    if running is not None:
        return running, port
    logged = [spec for spec in VERSIONS[engine].values() if (node_home(spec, port) / LOG_FILE).exists()]
    if logged:
        return max(logged, key=lambda spec: (node_home(spec, port) / LOG_FILE).stat().st_mtime), port
    return default, port


def _quiet(_: str) -> None:
    return None


def ensure_node(
    engine: Engine | str = Engine.OPENSEARCH,
    port: int | None = None,
    heap: str = DEFAULT_HEAP,
    *,
    version: str | None = None,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
    report: Reporter = _quiet,
) -> NodeInfo:
    """Make sure a local node answers on `port`, starting (and, the first time, provisioning) it.

    Without `version`, a node of any version already running on the port counts; otherwise the
    engine's default version starts. With `version`, a node of another version there is an error."""
    engine = Engine(engine)
    spec = spec_for(engine, version)
    port = _checked_port(spec, port)
    if not _HEAP.fullmatch(heap):
        raise NodeError(f"heap {heap!r} is not a JVM size such as 512m or 1g")
    running = _running_spec(engine, port)
    if running is not None and running != spec:
        if version is not None:
            raise NodeError(
                f"{engine.value} {running.version} already runs on port {port}; stop it first "
                f"(retrosearch node stop --engine {engine.value} --port {port}) or choose another --port"
            )
        spec = running
    home = node_home(spec, port)
    url = f"http://127.0.0.1:{port}"
    with exclusive(node_lock_file(spec, port)):
        pgid = running_group(home)
        if pgid is not None:
            # Possibly still starting (another terminal's start): wait like a fresh start would.
            probe.wait_ready(url, lambda: running_group(home) is not None, timeout_s)
            return _info(spec, url, home, pgid, started_by_us=False)
        for needed in (port, port + TRANSPORT_PORT_OFFSET):
            if port_in_use(needed):
                raise NodeError(
                    f"port {needed} on 127.0.0.1 is already in use by another process "
                    f"(the {spec.engine.value} node needs {port} for HTTP and "
                    f"{port + TRANSPORT_PORT_OFFSET} for transport); choose another --port"
                )
        java_home = find_java_home(spec.java_majors)
        account = node_account()
        distribution = ensure_distribution(spec, java_home, report)
        prepare_home(spec, distribution, home, port, account)
        report(
            f"starting {spec.engine.value} {spec.version} on {url} as user {account.name} "
            f"with Java {java_major(java_home)} ({java_home})"
        )
        started = time.monotonic()
        pgid = spawn(spec, home, java_home, heap, account)
        try:
            probe.wait_ready(url, lambda: bool(group_members(pgid)), timeout_s)
        except NodeError as exc:
            terminate(pgid)  # never leave a half-started node holding the port
            raise NodeError(f"{exc}: {_failure_hint(home)} (log: {home / LOG_FILE})") from exc
        return _info(spec, url, home, pgid, started_by_us=True, start_seconds=time.monotonic() - started)


def stop_node(
    engine: Engine | str = Engine.OPENSEARCH, port: int | None = None, version: str | None = None
) -> bool:
    """Stop the node and wait until none of its processes is left; False if it was not running."""
    spec, port = _locate(engine, port, version)
    home = node_home(spec, port)
    with exclusive(node_lock_file(spec, port)):
        pgid = running_group(home)
        if pgid is not None:
            terminate(pgid)
        (home / PID_FILE).unlink(missing_ok=True)
    return pgid is not None


def node_status(
    engine: Engine | str = Engine.OPENSEARCH, port: int | None = None, version: str | None = None
) -> NodeStatus:
    spec, port = _locate(engine, port, version)
    home = node_home(spec, port)
    url = f"http://127.0.0.1:{port}"
    pgid = running_group(home)
    info = None
    if pgid is not None:
        # Alive but not answering (starting, or wedged) leaves `info` None.
        with contextlib.suppress(NodeError):
            info = _info(spec, url, home, pgid, started_by_us=False)
    return NodeStatus(spec.engine, spec.version, port, url, home, home / LOG_FILE, pgid, info)


def node_log(
    engine: Engine | str = Engine.OPENSEARCH, port: int | None = None, version: str | None = None
) -> Path:
    spec, port = _locate(engine, port, version)
    return node_home(spec, port) / LOG_FILE


def _info(
    spec: EngineSpec,
    url: str,
    home: Path,
    pgid: int,
    *,
    started_by_us: bool,
    start_seconds: float | None = None,
) -> NodeInfo:
    facts = probe.facts(url)
    return NodeInfo(
        engine=spec.engine,
        url=url,
        version=facts.version,
        plugins=facts.plugins,
        health=facts.health,
        started_by_us=started_by_us,
        pid=pgid,
        home=home,
        log_file=home / LOG_FILE,
        start_seconds=start_seconds,
    )


def _failure_hint(home: Path) -> str:
    """The last error-looking line of the console log: usually the actual reason a start failed."""
    lines = log_tail(home, 300)
    for line in reversed(lines):
        # Stack frames name exception classes too; the cause is the line above them.
        if _FAILURE.search(line) and not line.lstrip().startswith("at "):
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else "no output"
