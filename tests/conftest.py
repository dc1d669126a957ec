"""Shared fixtures. Each block below belongs to one area; add new areas as blocks of their own."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from fastapi.testclient import TestClient

from connector.app import create_app
from connector.background import BackgroundServer
from connector.settings import ENV_PREFIX as CONNECTOR_ENV_PREFIX
from connector.settings import ConnectorSettings
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.nodes import DEFAULT_HEAP, NodeError, ensure_node, stop_node
from retrostar_search.rerank_log.schema import retention_policy_name
from tests.scripted_sglang import ScriptedSGLangServer, free_port
from tests.sglang_router import FAST_HEALTH_FLAGS, RouterProcess
from tests.sglang_router import stop_process as _stop_process

if TYPE_CHECKING:
    from opensearchpy import OpenSearch
    from playwright.sync_api import Browser


# ------------------------------------------------------------------------------------------------
# Local engine nodes (retrostar_search.nodes)
#
# One node per engine version for the whole session: OpenSearch 2.19.1 (the full pipeline) and
# Elasticsearch 8.19.7, plus OpenSearch 3.5.0 and Elasticsearch 9.2.0 for the paths those run here
# (indexing, search, client-side rerank, eval). A node already running on the test URL (CI starts all
# four with `retrosearch node start` and exports the URLs) is used as is; otherwise the fixture starts
# one on its test port, which differs from the user defaults 9200/9201 so tests never touch a user's
# node, and stops at the end only a node it started itself.
#
# `engine_node` (all four), `os_node` (OpenSearch 2 and 3) and `es_node` (Elasticsearch 8 and 9) are
# parametrized: a test that asks for one runs once per node, marked with that node's marker.
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestNodeSpec:
    __test__ = False  # a fixture description, not a test class

    #: Also the pytest marker and the prefix of the node's `<key>_url` / `<key>_client` fixtures.
    key: str
    engine: Engine
    #: None: the engine's default version.
    version: str | None
    port: int
    heap: str = DEFAULT_HEAP

    @property
    def url_env(self) -> str:
        """The variable naming a running node to use instead (RETROSEARCH_TEST_OPENSEARCH3_URL, ...)."""
        return f"RETROSEARCH_TEST_{self.key.upper()}_URL"


TEST_NODES = {
    node.key: node
    for node in (
        TestNodeSpec("opensearch", Engine.OPENSEARCH, None, 9250),
        TestNodeSpec("elasticsearch", Engine.ELASTICSEARCH, None, 9251),
        TestNodeSpec("opensearch3", Engine.OPENSEARCH, "3.5.0", 9252, "512m"),
        TestNodeSpec("elasticsearch9", Engine.ELASTICSEARCH, "9.2.0", 9253, "512m"),
    )
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that need a node, so `-m "not opensearch3"` deselects them on a host without Java 21."""
    for item in items:
        used = getattr(item, "fixturenames", ())
        for key in TEST_NODES:
            if f"{key}_url" in used or f"{key}_client" in used:
                item.add_marker(key)


def _node_url(node: TestNodeSpec) -> Iterator[str]:
    if os.environ.get(node.url_env):
        yield os.environ[node.url_env].rstrip("/")
        return
    try:
        info = ensure_node(node.engine, node.port, node.heap, version=node.version)
    except NodeError as exc:
        pytest.fail(
            f"could not start the local {node.engine.value} {node.version or ''} test node on port "
            f"{node.port}: {exc} (set {node.url_env} to use a running node, or deselect with "
            f"-m 'not {node.key}')"
        )
    yield info.url
    if info.started_by_us:
        stop_node(node.engine, node.port, node.version)


def _url_fixture(node: TestNodeSpec) -> Any:
    @pytest.fixture(scope="session", name=f"{node.key}_url")
    def url() -> Iterator[str]:
        yield from _node_url(node)

    return url


def _client_fixture(node: TestNodeSpec) -> Any:
    @pytest.fixture(scope="session", name=f"{node.key}_client")
    def client(request: pytest.FixtureRequest) -> Iterator[Any]:
        url = request.getfixturevalue(f"{node.key}_url")
        engine_client = EngineConnection(engine=node.engine, url=url).client()
        yield engine_client
        engine_client.close()

    return client


# `<key>_url` and `<key>_client` for every test node (`opensearch_url`, `elasticsearch9_client`, ...).
for _node in TEST_NODES.values():
    globals()[f"{_node.key}_url"] = _url_fixture(_node)
    globals()[f"{_node.key}_client"] = _client_fixture(_node)


@dataclass(frozen=True)
class EngineNode:
    """One of the test nodes, as a parametrized test sees it."""

    key: str
    engine: Engine
    url: str
    client: Any


def _node_params(*keys: str) -> list[Any]:
    return [pytest.param(key, id=key, marks=getattr(pytest.mark, key)) for key in keys]


def _engine_node(request: pytest.FixtureRequest) -> EngineNode:
    node = TEST_NODES[request.param]
    url = request.getfixturevalue(f"{node.key}_url")
    return EngineNode(node.key, node.engine, url, request.getfixturevalue(f"{node.key}_client"))


@pytest.fixture(
    scope="session", params=_node_params("opensearch", "opensearch3", "elasticsearch", "elasticsearch9")
)
def engine_node(request: pytest.FixtureRequest) -> EngineNode:
    return _engine_node(request)


@pytest.fixture(scope="session", params=_node_params("opensearch", "opensearch3"))
def os_node(request: pytest.FixtureRequest) -> EngineNode:
    return _engine_node(request)


@pytest.fixture(scope="session", params=_node_params("elasticsearch", "elasticsearch9"))
def es_node(request: pytest.FixtureRequest) -> EngineNode:
    return _engine_node(request)


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


ServingT = TypeVar("ServingT", TestClient, BackgroundServer)


def _serving(
    connector_settings: Callable[..., ConnectorSettings], serve: Callable[[Any], ServingT]
) -> Iterator[Callable[..., ServingT]]:
    """A factory of connector apps with the given settings, each `serve`d (entered) until the test ends."""
    with ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(serve(create_app(connector_settings(**overrides))))


@pytest.fixture
def connector_client(
    connector_settings: Callable[..., ConnectorSettings],
) -> Iterator[Callable[..., TestClient]]:
    """`connector_client(**settings)`: a TestClient on a connector app (lifespan run) with those settings."""
    yield from _serving(connector_settings, TestClient)


@pytest.fixture
def connector_server(
    connector_settings: Callable[..., ConnectorSettings],
) -> Iterator[Callable[..., BackgroundServer]]:
    """`connector_server(**settings)`: a connector on a real uvicorn server, on a free port."""
    yield from _serving(connector_settings, BackgroundServer)


# ------------------------------------------------------------------------------------------------
# End of: rerank connector
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Model-server backends (retrostar_search/backends/: tests/test_backends.py, tests/test_backend_pool.py)
#
# `await http_backends(cls=SGLangGenerateBackend, url=None, start=True, **options)`: an HTTP backend on
# the session's scripted server (or `url`), started (it asked the server what it serves) unless
# `start=False`, and closed after the test.
# ------------------------------------------------------------------------------------------------


@pytest.fixture
async def http_backends(scripted_sglang: ScriptedSGLangServer) -> AsyncIterator[Callable[..., Any]]:
    from retrostar_search.backends.sglang_http import SGLangGenerateBackend

    made: list[Any] = []

    async def make(
        cls: Any = SGLangGenerateBackend, url: str | None = None, start: bool = True, **options: Any
    ):
        backend = cls(url or scripted_sglang.url, **options)
        made.append(backend)
        if start:
            await backend.start()
        return backend

    yield make
    for backend in made:
        await backend.aclose()


# ------------------------------------------------------------------------------------------------
# End of: model-server backends
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
# of them on free ports (tests/sglang_router.py; its Prometheus port included, so parallel runs do not
# collide on 29000), waits until the router holds every worker healthy, and stops all of it after the
# test. Health checks run every second and one failure marks a worker unhealthy, so a killed worker
# leaves the router at once, unless `flags` say otherwise (RECOMMENDED_FLAGS do: every 5 s, 2 failures).
# Without the router installed the tests skip, except on CI (CI=true), where they fail.
# ------------------------------------------------------------------------------------------------


class SGLangRouter(RouterProcess):
    """The router with the scripted workers behind it (`workers`, in --worker-urls order)."""

    def __init__(self, workers: list[ScriptedSGLangServer], *flags: str, log_dir: Path) -> None:
        super().__init__([worker.url for worker in workers], *flags, log_dir=log_dir)
        self.workers = workers

    def wait_healthy(self, workers: int, timeout: float = 30.0) -> None:
        try:
            super().wait_healthy(workers, timeout)
        except RuntimeError as error:
            pytest.fail(str(error))


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
            router = SGLangRouter(scripted, *FAST_HEALTH_FLAGS, *flags, log_dir=tmp_path)
            stack.callback(_stop_process, router.process)
            router.wait_healthy(workers)
            return router

        yield start


# ------------------------------------------------------------------------------------------------
# End of: the SGLang router
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# The shared score cache: a real Redis server (Debian's redis-server) (tests/test_shared_cache.py)
#
# `redis_url`: one server for the session, the one RETROSEARCH_TEST_REDIS_URL names (CI starts it in
# .ci/run) or else one started here on a free port. Tests keep apart by their queries (cache keys hash
# them), so they never flush it. `redis_server()`: a private server of the test's own, which it may stop
# and start again on the same port (an outage); `redis_server(password="...")` requires that password.
# Without the redis-server binary these skip, except on CI (CI=true), where they fail.
# ------------------------------------------------------------------------------------------------


class RedisServer:
    def __init__(self, folder: Path, password: str | None = None) -> None:
        self.port = free_port()
        self.password = password
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # In memory only: no RDB snapshots, no append-only file.
        command = [
            _redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self._folder),
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        give_up_at = time.monotonic() + 10
        while not _port_open(self.port):
            if self._process.poll() is not None or time.monotonic() > give_up_at:
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None:
            _stop_process(self._process)
            self._process = None


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; .ci/run installs it")
        pytest.skip(message)
    return binary


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("RETROSEARCH_TEST_REDIS_URL"):
        yield os.environ["RETROSEARCH_TEST_REDIS_URL"]
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    with ExitStack() as stack:

        def start(password: str | None = None) -> RedisServer:
            server = RedisServer(tmp_path, password)
            server.start()
            stack.callback(server.stop)
            return server

        yield start


# ------------------------------------------------------------------------------------------------
# End of: the shared score cache
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Headless Chromium for the browser tests (tests/test_explorer_browser.py)
#
# Debian's `chromium` package driven by Playwright; Playwright's own browser downloads are neither used nor
# reachable. Missing on CI is a failure (.ci/run installs it), elsewhere a skip.
# ------------------------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
# Playwright's own browser downloads are not used (nor reachable here): Debian's package is.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing on CI: .ci/run installs the Debian package 'chromium'")
    pytest.skip(f"no headless Chromium at {CHROMIUM} (apt-get install chromium); CI installs it")


@pytest.fixture
def browser(chromium: Path) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


# ------------------------------------------------------------------------------------------------
# End of: headless Chromium
# ------------------------------------------------------------------------------------------------
