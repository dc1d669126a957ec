"""The connector under hostile input and load (issue 10), against `retrosearch serve` in a process of its
own, over real sockets: every operation of its OpenAPI schema fuzzed by schemathesis, clients that trickle
their body or hang up (mid-upload, mid-rerank), the memory the largest admitted request takes, the log it
writes, the secrets it keeps, idle keep-alive connections. The file with a lone surrogate is in
tests/test_indexing.py (`test_a_lone_surrogate_*`, also marked `hostile`).

`pytest -m hostile` runs this suite alone (about two minutes on two cores); the figures (requests tried,
server errors, memory, records kept) are printed at the end of the module.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from opensearchpy import OpenSearch
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from connector.app import create_app
from connector.background import free_port
from connector.settings import ENV_PREFIX, ConnectorSettings
from tests.scripted_sglang import ScriptedSGLangServer
from tests.search_corpus import index_documents
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.hostile

API_KEY = "hostile-suite-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# The fuzzed connector: the explorer on (every operation of the API), a key, four rerank slots and a
# one-second body timeout (the slow-client cases).
SERVER_SETTINGS: dict[str, Any] = {
    "api_key": API_KEY,
    "explore": True,
    "max_concurrent_requests": 4,
    "body_timeout": 1.0,
}
FUZZ_EXAMPLES = 100  # per operation and phase

FIGURES: Counter[str] = Counter()


def _clean_settings(**values: Any) -> ConnectorSettings:
    """Settings from `values` and the defaults only, whatever RETROSEARCH_* variables the shell has."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
            patch.delenv(name)
        return ConnectorSettings(**values)


def _options(values: dict[str, Any]) -> list[str]:
    """`values` as `retrosearch serve` options."""
    options = []
    for name, value in values.items():
        flag = f"--{name.replace('_', '-')}"
        options += [flag] if value is True else [flag, str(value)]
    return options


@pytest.fixture(scope="module", autouse=True)
def print_figures(pytestconfig: pytest.Config) -> Iterator[None]:
    FIGURES.clear()
    yield
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not FIGURES:
        return
    if "fuzzed requests" in FIGURES:
        FIGURES["server errors"] += 0  # said even when there were none
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line("hostile-input figures: " + "; ".join(f"{k}: {v}" for k, v in FIGURES.items()))


@pytest.fixture(scope="module")
def corpus_index(opensearch_client: OpenSearch) -> Iterator[str]:
    index = f"hostile-{uuid.uuid4().hex[:8]}"
    index_documents(opensearch_client, index)
    yield index
    opensearch_client.indices.delete(index=index, ignore_unavailable=True)


@pytest.fixture(scope="module")
def connector(
    scripted_sglang_session: ScriptedSGLangServer, opensearch_url: str, corpus_index: str
) -> Iterator[ServeProcess]:
    options = _options(SERVER_SETTINGS)
    with ServeProcess(
        *options, "--backend-url", scripted_sglang_session.url, "--explore-url", opensearch_url
    ) as server:
        yield server
        FIGURES["requests the connector answered"] = int(metric(server, "retrosearch_requests_total"))


def metric(server: ServeProcess, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match[1] != name:
            continue
        sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if all(sample_labels.get(key) == value for key, value in labels.items()):
            total += float(match[3])
    return total


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    give_up_at = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up_at:
            raise AssertionError(f"{what}: not met within {timeout} s")
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------------
# Every operation of the OpenAPI schema, fuzzed: no server error, and the schema holds both ways
# ------------------------------------------------------------------------------------------------

# The schema of a connector with the same settings as the one served (the limits it states are the
# settings'); its engine and backend URLs change nothing in it.
fuzzed = schemathesis.openapi.from_dict(create_app(_clean_settings(**SERVER_SETTINGS)).openapi())


@schemathesis.check
def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, except the documented strict answer to a deadline the request itself set: the scripted
    backend is healthy, so a 502 (strict: the backend failed) would be a bug too."""
    if response.status_code < 500:
        return None
    body = case.body if isinstance(case.body, dict) else {}
    if response.status_code == 504 and body.get("strict") is True and body.get("deadline") is not None:
        FIGURES["strict 504s for a request's own deadline"] += 1
        return None
    FIGURES["server errors"] += 1
    raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")


def _one_id_per_document(body: Any) -> None:
    """`document_ids` must hold one entry per document: the one rule of the request JSON Schema cannot
    state (the server answers 422 and says so). Generated ids are cut or padded to fit."""
    if not isinstance(body, dict) or not isinstance(body.get("document_ids"), list):
        return
    documents = body.get("documents") if body.get("documents") is not None else body.get("texts")
    if isinstance(documents, list):
        body["document_ids"] = (body["document_ids"] + [None] * len(documents))[: len(documents)]


@fuzzed.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_holds_its_schema_and_never_fails_with_a_server_error(
    case: Any, connector: ServeProcess
) -> None:
    _one_id_per_document(case.body)
    FIGURES["fuzzed requests"] += 1
    case.call_and_validate(
        base_url=connector.url,
        headers=AUTH,
        timeout=30,
        checks=[
            no_server_error,
            status_code_conformance,  # every status answered is documented
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
            positive_data_acceptance,  # what the schema allows is accepted: the schema states the rules
            ignored_auth,  # without the key, refused
        ],
    )


# ------------------------------------------------------------------------------------------------
# Slow and vanishing clients (real sockets, four rerank slots, a one-second body timeout)
# ------------------------------------------------------------------------------------------------


def _send_head(server: ServeProcess, path: str, content_length: int) -> socket.socket:
    """A connection that has sent a request's head, and no body yet."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 10 s pass)."""
    received = b""
    with sock:
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:  # the server closed while bytes were still being trickled
            pass
    return received


def _rerank(server: ServeProcess, documents: list[str], **fields: Any) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/rerank",
        json={"query": "how do vaccines work", "documents": documents, **fields},
        headers=AUTH,
        timeout=30,
    )


def test_clients_trickling_their_bodies_lock_no_one_out_and_get_408(connector: ServeProcess) -> None:
    tricklers = [_send_head(connector, "/v1/rerank", content_length=1000) for _ in range(8)]
    started = time.monotonic()

    # Twice the slots trickle a byte each 0.1 s (never an idle second) while four real requests, as many
    # as there are slots, arrive at once.
    def trickle() -> None:
        while time.monotonic() - started < 3:
            for sock in tricklers:
                with contextlib.suppress(OSError):  # answered and closed
                    sock.send(b" ")
            time.sleep(0.1)

    trickling = threading.Thread(target=trickle)
    trickling.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            real = list(
                pool.map(lambda n: _rerank(connector, [f"real request {n}", "another one"]), range(4))
            )
        answers = [_answer(sock) for sock in tricklers]
        answered_in = time.monotonic() - started
    finally:
        trickling.join()

    assert [response.status_code for response in real] == [200] * 4
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert b"body_timeout (1 s)" in answer
    assert answered_in < 2.5  # a budget for the whole body, not an idle timeout that a trickle defeats
    assert metric(connector, "retrosearch_requests_total", route="/v1/rerank", status="408") >= 8
    FIGURES["trickling clients answered 408"] += len(answers)


def test_a_hang_up_mid_upload_is_counted_as_499_and_logged_in_one_line(connector: ServeProcess) -> None:
    before = metric(connector, "retrosearch_requests_total", route="/v1/rerank", status="499")
    sock = _send_head(connector, "/v1/rerank", content_length=1000)
    sock.sendall(b'{"query": "half a body", "documen')
    sock.close()

    wait_until(
        lambda: metric(connector, "retrosearch_requests_total", route="/v1/rerank", status="499") > before,
        what="the hang-up counted as 499",
    )
    assert metric(connector, "retrosearch_requests_total", status="500") == 0
    log = connector.log()
    assert "POST /v1/rerank -> 499: the client closed the connection while sending the body" in log
    assert "Traceback" not in log and "ERROR" not in log


def test_a_hang_up_during_the_rerank_frees_its_slot_and_stops_the_backend_work(
    connector: ServeProcess, scripted_sglang: ScriptedSGLangServer
) -> None:
    # The scripted backend notices a vanished client at once (vLLM's behaviour; SGLang checks every 4 s).
    scripted_sglang.script(disconnect_check_s=0.05)
    body = b'{"query": "q", "documents": ["[[slow:5]] one", "[[slow:5]] two", "[[slow:5]] three"]}'
    before = metric(connector, "retrosearch_requests_total", route="/v1/rerank", status="499")
    sock = _send_head(connector, "/v1/rerank", content_length=len(body))
    sock.sendall(body)
    wait_until(lambda: scripted_sglang.stats.in_flight == 3, what="the backend working on the request")
    assert metric(connector, "retrosearch_rerank_in_flight") == 1
    hung_up = time.monotonic()
    sock.close()

    # Well before the five seconds the backend would take: the slot is free and the backend's work stopped.
    wait_until(lambda: metric(connector, "retrosearch_rerank_in_flight") == 0, timeout=2, what="slot freed")
    # Each pair is one sample on an SGLang worker: aborted by its rid (or found with its connection closed).
    stopped = lambda: len(scripted_sglang.stats.aborted) + len(scripted_sglang.stats.disconnected)  # noqa: E731
    wait_until(lambda: stopped() == 3, timeout=2, what="backend work stopped")
    assert scripted_sglang.stats.in_flight == 0
    assert time.monotonic() - hung_up < 2
    assert metric(connector, "retrosearch_requests_total", route="/v1/rerank", status="499") == before + 1
    lines = [
        line
        for line in connector.log().splitlines()
        if "-> 499: the client closed the connection after" in line
    ]
    assert len(lines) == 1 and re.search(r"rerank [0-9a-f]{32} cancelled", lines[0])
    assert "Traceback" not in connector.log()
    FIGURES["hang-ups whose backend work stopped"] += 1


# ------------------------------------------------------------------------------------------------
# The log: one line per rerank at the default level
# ------------------------------------------------------------------------------------------------


def test_a_rerank_writes_one_log_line_at_the_default_level(connector: ServeProcess) -> None:
    lines_before = len(connector.log().splitlines())

    response = _rerank(connector, [f"document number {n}" for n in range(20)])

    assert response.status_code == 200
    new_lines = connector.log().splitlines()[lines_before:]
    assert len(new_lines) == 1, new_lines  # no line per pair from the HTTP client
    assert f"rerank {response.json()['id']}: 20 documents, 20 pairs scored" in new_lines[0]


def test_an_unreachable_log_engine_is_one_line_not_a_traceback_per_attempt(
    scripted_sglang_session: ScriptedSGLangServer,
) -> None:
    # The engine client logs every failed attempt (and its retries) as a warning with a traceback: about
    # 45 lines each, several per batch, again on every retry. The writer says it once per change of health.
    unreachable = f"http://127.0.0.1:{free_port()}"
    with ServeProcess(
        "--backend-url", scripted_sglang_session.url, "--log-url", unreachable, "--log-flush-interval", "0.05"
    ) as server:
        for n in range(3):
            assert _rerank(server, [f"logged document {n}"]).status_code == 200
        give_up_at = time.monotonic() + 30
        while metric(server, "retrosearch_rerank_log_dropped_total", reason="engine_error") < 3:
            assert time.monotonic() < give_up_at, server.log()
            time.sleep(0.1)
        log = server.log()

    assert "Traceback" not in log
    assert " opensearch: " not in log  # the engine client's warning per attempt
    assert len([line for line in log.splitlines() if "rerank log: dropping events" in line]) == 1, log


# ------------------------------------------------------------------------------------------------
# Keep-alive: an idle connection outlives uvicorn's 5 s default
# ------------------------------------------------------------------------------------------------


def test_an_idle_keep_alive_connection_is_still_served_after_six_seconds(connector: ServeProcess) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", connector.port), timeout=10) as sock:
        sock.sendall(request)
        assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6)  # idle longer than uvicorn's default keep-alive, as an engine's pooled connection is

        sock.sendall(request)
        assert _response(sock).startswith(b"HTTP/1.1 200")  # not b"": the server had not closed it


def _response(sock: socket.socket) -> bytes:
    """One whole response off a keep-alive connection (b"" when the server closed it)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    assert length is not None, head
    while len(body) < int(length[1]):
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


# ------------------------------------------------------------------------------------------------
# Memory: the largest request the default limits admit
# ------------------------------------------------------------------------------------------------

# What the connector's peak resident memory may grow by while it serves that request: eight times the
# body limit (32 MiB: the body, its parsed text, the prompts in flight, the answer echoing the documents).
MEMORY_BOUND_BODIES = 8


def largest_admitted_request(limits: ConnectorSettings) -> dict[str, Any]:
    """A request at every default limit at once: the longest query and task, as many documents as there
    may be, each as long as the body limit leaves room for (all distinct, so none is scored only once)."""
    words = "retrieval relevance reasoning annotation documents evaluation "
    task = {
        part: (words * (limits.max_definition_chars // len(words) + 1))[: limits.max_definition_chars]
        for part in ("query_type", "doc_type", "relevance_definition")
    }
    query = (words * (limits.max_query_chars // len(words) + 1))[: limits.max_query_chars]
    room = limits.max_body_bytes - len(query) - 3 * limits.max_definition_chars - 4096
    document_chars = min(limits.max_document_chars, room // limits.max_documents - 8)
    filler = words * (document_chars // len(words) + 1)
    documents = [f"{n:05d} {filler}"[:document_chars] for n in range(limits.max_documents)]
    return {
        "query": query,
        "documents": documents,
        "task": task,
        "return_documents": True,
        "return_explanations": True,
    }


def test_the_largest_request_the_defaults_admit_stays_within_the_memory_bound() -> None:
    limits = _clean_settings()
    request = largest_admitted_request(limits)
    body = httpx.Request("POST", "http://x", json=request).content
    assert len(body) <= limits.max_body_bytes
    with (
        ScriptedSGLangServer(lean=True) as backend,
        ServeProcess("--backend-url", backend.url, "--cache-size", "0") as server,
    ):
        # A small rerank first: the baseline is a connector that has served a request.
        assert _plain_rerank(server, ["warm-up document"]).status_code == 200
        baseline = server.peak_rss_bytes()

        response = httpx.post(
            f"{server.url}/v1/rerank",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=120,
        )

        grown = server.peak_rss_bytes() - baseline
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["results"]) == limits.max_documents
    assert backend.stats.pairs == limits.max_documents + 1
    bound = MEMORY_BOUND_BODIES * limits.max_body_bytes
    FIGURES["largest request (bytes)"] = len(body)
    FIGURES["its peak memory growth (MiB)"] = grown // 2**20
    FIGURES["memory bound (MiB)"] = bound // 2**20
    assert grown <= bound, f"peak RSS grew by {grown / 2**20:.0f} MiB, over {bound / 2**20:.0f} MiB"


def _plain_rerank(server: ServeProcess, documents: list[str]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/rerank", json={"query": "q", "documents": documents}, timeout=30)


# ------------------------------------------------------------------------------------------------
# Secrets: credentials written into URLs reach no answer and no log line, even at debug
# ------------------------------------------------------------------------------------------------


def test_credentials_in_urls_reach_neither_answers_nor_logs(scripted_sglang: ScriptedSGLangServer) -> None:
    backend_url = scripted_sglang.url.replace("http://", "http://retro-user:backend-secret@")
    closed_port = free_port()
    log_url = f"http://log-user:log-secret@127.0.0.1:{closed_port}"
    options = ["--backend-url", backend_url, "--log-url", log_url, "--log-flush-interval", "0.1"]
    with ServeProcess(*options, "--log-level", "debug") as server:
        documents = ["fine document", "[[error:503]] failing document"]
        degraded = _plain_rerank(server, documents)
        strict = httpx.post(
            f"{server.url}/v1/rerank", json={"query": "q", "documents": documents, "strict": True}, timeout=30
        )
        wait_until(lambda: "rerank log: dropping events" in server.log(), what="the log engine's failure")
        log = server.log()

    assert degraded.status_code == 200 and degraded.json()["degraded"] is True
    assert strict.status_code == 502 and "answered HTTP 503" in strict.json()["message"]
    # A line that names the backend's URL was written, masked (the backends' aiohttp client logs no
    # requests; the start-up banner names it).
    assert "sglang at http://***@127.0.0.1" in log
    for answer_or_log in (degraded.text, strict.text, log):
        for secret in ("backend-secret", "retro-user", "log-secret", "log-user"):
            assert secret not in answer_or_log
