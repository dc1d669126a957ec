"""Shared fixtures. Each block below belongs to one area; add new areas as blocks of their own."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi.testclient import TestClient

from connector.app import create_app
from connector.background import BackgroundServer
from connector.rerank_log.schema import retention_policy_name
from connector.settings import ENV_PREFIX as CONNECTOR_ENV_PREFIX
from connector.settings import ConnectorSettings
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.nodes import NodeError, ensure_node, stop_node
from tests.scripted_sglang import ScriptedSGLangServer, free_port

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch
    from opensearchpy import OpenSearch


# ------------------------------------------------------------------------------------------------
# Local engine nodes (retrostar_search.nodes)
#
# One node per engine for the whole session. A node already running on the test URL (CI starts both
# with `retrosearch node start` and exports the URLs) is used as is; otherwise the fixture starts one on
# the test ports, which differ from the user defaults 9200/9201 so tests never touch a user's node, and
# stops at the end only a node it started itself.
# ------------------------------------------------------------------------------------------------

TEST_NODE_URL_ENV = {
    Engine.OPENSEARCH: "RETROSEARCH_TEST_OPENSEARCH_URL",
    Engine.ELASTICSEARCH: "RETROSEARCH_TEST_ELASTICSEARCH_URL",
}
TEST_NODE_PORTS = {Engine.OPENSEARCH: 9250, Engine.ELASTICSEARCH: 9251}
_NODE_FIXTURES = {"opensearch_url": "opensearch", "elasticsearch_url": "elasticsearch"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that need a node, so `-m "not opensearch"` deselects them on a host without Java."""
    for item in items:
        for fixture, marker in _NODE_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


def _node_url(engine: Engine) -> Iterator[str]:
    env_var = TEST_NODE_URL_ENV[engine]
    if os.environ.get(env_var):
        yield os.environ[env_var].rstrip("/")
        return
    port = TEST_NODE_PORTS[engine]
    try:
        info = ensure_node(engine, port)
    except NodeError as exc:
        pytest.fail(
            f"could not start the local {engine.value} test node on port {port}: {exc} "
            f"(set {env_var} to use a running node, or deselect with -m 'not {engine.value}')"
        )
    yield info.url
    if info.started_by_us:
        stop_node(engine, port)


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    yield from _node_url(Engine.OPENSEARCH)


@pytest.fixture(scope="session")
def elasticsearch_url() -> Iterator[str]:
    yield from _node_url(Engine.ELASTICSEARCH)


@pytest.fixture(scope="session")
def opensearch_client(opensearch_url: str) -> Iterator[OpenSearch]:
    # The typed twin of `.client()`, so tests get OpenSearch's own client type.
    client = EngineConnection(engine=Engine.OPENSEARCH, url=opensearch_url).opensearch_client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def elasticsearch_client(elasticsearch_url: str) -> Iterator[Elasticsearch]:
    client = EngineConnection(engine=Engine.ELASTICSEARCH, url=elasticsearch_url).elasticsearch_client()
    yield client
    client.close()


# ------------------------------------------------------------------------------------------------
# End of: local engine nodes
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Rerank connector (connector/): the scripted SGLang server and connectors in front of it
#
# One scripted server for the session; each test gets it with fresh stats and no added latency.
# Connector settings start from the scripted server and ignore any RETROSEARCH_* variables of the
# shell running the tests, so a developer's environment cannot change what a test sees.
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def scripted_sglang_session() -> Iterator[ScriptedSGLangServer]:
    with ScriptedSGLangServer() as server:
        yield server


@pytest.fixture
def scripted_sglang(scripted_sglang_session: ScriptedSGLangServer) -> ScriptedSGLangServer:
    scripted_sglang_session.reset()
    return scripted_sglang_session


@pytest.fixture
def connector_settings(
    monkeypatch: pytest.MonkeyPatch, scripted_sglang: ScriptedSGLangServer
) -> Callable[..., ConnectorSettings]:
    for name in list(os.environ):
        if name.startswith(CONNECTOR_ENV_PREFIX):
            monkeypatch.delenv(name)

    def make(**overrides: Any) -> ConnectorSettings:
        return ConnectorSettings(**{"backend": "sglang", "backend_url": scripted_sglang.url, **overrides})

    return make


@pytest.fixture
def connector_client(
    connector_settings: Callable[..., ConnectorSettings],
) -> Iterator[Callable[..., TestClient]]:
    """`connector_client(**settings)`: a TestClient on a connector app (lifespan run) with those settings."""
    with ExitStack() as stack:

        def open_client(**overrides: Any) -> TestClient:
            return stack.enter_context(TestClient(create_app(connector_settings(**overrides))))

        yield open_client


@pytest.fixture
def connector_server(
    connector_settings: Callable[..., ConnectorSettings],
) -> Iterator[Callable[..., BackgroundServer]]:
    """`connector_server(**settings)`: a connector on a real uvicorn server, on a free port."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> BackgroundServer:
            return stack.enter_context(BackgroundServer(create_app(connector_settings(**overrides))))

        yield start


# ------------------------------------------------------------------------------------------------
# End of: rerank connector
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Engine wiring and search (retrostar_search/engines/{search,opensearch_setup,elasticsearch_setup}.py,
# `retrosearch setup|teardown|search`)
#
# `live_connector`: one connector per test module on a real uvicorn server that the local engine
# nodes can reach, in front of the session's scripted SGLang server; `.stop()` and `.start()` take it
# down and bring it back on the same port (the engines keep its URL).
# ------------------------------------------------------------------------------------------------


class RestartableConnector:
    def __init__(self, settings: ConnectorSettings) -> None:
        self.settings = settings
        self._server: BackgroundServer | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "start() the connector first"
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._server is None:
            self._server = BackgroundServer(create_app(self.settings), port=self.port)
            self._server.__enter__()
            self.port = self._server.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None


@pytest.fixture(scope="module")
def live_connector(scripted_sglang_session: ScriptedSGLangServer) -> Iterator[RestartableConnector]:
    scripted_sglang_session.reset()
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith(CONNECTOR_ENV_PREFIX):
                env.delenv(name)
        settings = ConnectorSettings(backend="sglang", backend_url=scripted_sglang_session.url)
    connector = RestartableConnector(settings)
    connector.start()
    yield connector
    connector.stop()


# ------------------------------------------------------------------------------------------------
# End of: engine wiring and search
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# The rerank log inside the connector, and the explorer page (tests/test_connector_log.py,
# tests/test_explorer_api.py, tests/test_explorer_browser.py)
#
# `opensearch_log_index`: a log index prefix of the test's own on the OpenSearch test node; afterwards
# its daily indices, its template and its retention policy (where the node has ISM) are removed.
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def opensearch_log_index(opensearch_client: OpenSearch) -> Iterator[str]:
    prefix = f"test-connector-log-{uuid.uuid4().hex[:8]}"
    yield prefix
    opensearch_client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
    if opensearch_client.indices.exists_index_template(name=prefix):
        opensearch_client.indices.delete_index_template(name=prefix)
    # Absent, or the node has no ISM at all (the integ-test distribution): nothing to remove.
    with contextlib.suppress(Exception):
        opensearch_client.index_management.delete_policy(policy=retention_policy_name(prefix))


# ------------------------------------------------------------------------------------------------
# End of: the rerank log inside the connector, and the explorer page
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# The SGLang router (PyPI sglang-router, a Rust binary that runs on CPU) in front of scripted workers
# (tests/test_sglang_router.py; facts in docs/router-notes.md)
#
# `sglang_router(workers=2, *flags)` starts that many fresh scripted workers and the real router in front
# of them on free ports (its Prometheus port included, so parallel runs do not collide on 29000), waits
# until the router holds every worker healthy, and stops all of it after the test. Health checks run
# every second and one failure marks a worker unhealthy, so a killed worker leaves the router at once.
# Without the router installed the tests skip, except on CI (CI=true), where they fail.
# ------------------------------------------------------------------------------------------------

ROUTER_HEALTH_FLAGS = (
    "--health-check-interval-secs", "1",
    "--health-failure-threshold", "1",
    "--health-success-threshold", "1",
)  # fmt: skip


@dataclass
class SGLangRouter:
    url: str
    workers: list[ScriptedSGLangServer]
    process: subprocess.Popen[bytes]
    log: Path

    def readiness(self) -> httpx.Response:
        return httpx.get(f"{self.url}/readiness", timeout=5)

    def wait_healthy(self, workers: int, timeout: float = 30.0) -> None:
        """Wait until the router's /readiness counts `workers` healthy workers."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"sglang-router exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if self.readiness().json().get("healthy_workers", 0) == workers:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"sglang-router did not see {workers} healthy workers:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def _router_missing() -> None:
    if importlib.util.find_spec("sglang_router") is not None:
        return
    message = "sglang-router is not installed (pip install -e '.[test]')"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI installs the test extra")
    pytest.skip(message)


@pytest.fixture
def sglang_router(tmp_path: Path) -> Iterator[Callable[..., SGLangRouter]]:
    _router_missing()
    with ExitStack() as stack:

        def start(workers: int = 2, *flags: str) -> SGLangRouter:
            scripted = [stack.enter_context(ScriptedSGLangServer()) for _ in range(workers)]
            port = free_port()
            log = tmp_path / f"sglang-router-{port}.log"
            command = [
                sys.executable, "-m", "sglang_router.launch_router",
                "--host", "127.0.0.1", "--port", str(port),
                "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
                "--worker-urls", *(worker.url for worker in scripted),
                *ROUTER_HEALTH_FLAGS, "--log-level", "warn", *flags,
            ]  # fmt: skip
            with log.open("wb") as output:
                process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
            stack.callback(_stop_process, process)
            router = SGLangRouter(f"http://127.0.0.1:{port}", scripted, process, log)
            router.wait_healthy(workers)
            return router

        yield start


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ------------------------------------------------------------------------------------------------
# End of: the SGLang router
# ------------------------------------------------------------------------------------------------
