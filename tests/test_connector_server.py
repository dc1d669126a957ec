"""The connector on a real uvicorn server: Cohere's own SDK, raw HTTP as the engines send it, concurrency."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator

import cohere
import httpx
import pytest

from connector.background import BackgroundServer
from tests.scripted_sglang import ScriptedSGLangServer, expected_score
from tests.waiting import until

ServerFactory = Callable[..., BackgroundServer]

QUERY = "how do vaccines train the immune system"
DOCUMENTS = [
    "Vaccines expose the immune system to antigens so memory cells form.",
    "The history of the printing press.",
    "Adjuvants strengthen the immune response to a vaccine.",
    "A guide to sourdough starters.",
]


def expected_ranking(query: str, documents: list[str]) -> list[int]:
    return sorted(range(len(documents)), key=lambda i: (-expected_score(query, documents[i]), i))


def test_cohere_client_v2_reranks_through_the_connector(connector_server: ServerFactory) -> None:
    server = connector_server(api_key="cohere-test-key")
    client = cohere.ClientV2(api_key="cohere-test-key", base_url=server.url, timeout=30)

    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCUMENTS, top_n=3)

    assert [result.index for result in response.results] == expected_ranking(QUERY, DOCUMENTS)[:3]
    for result in response.results:
        assert result.relevance_score == pytest.approx(expected_score(QUERY, DOCUMENTS[result.index]) / 100)


def test_cohere_client_v1_reranks_and_returns_documents(connector_server: ServerFactory) -> None:
    server = connector_server(api_key="cohere-test-key")
    client = cohere.Client(api_key="cohere-test-key", base_url=server.url, timeout=30)

    response = client.rerank(query=QUERY, documents=DOCUMENTS, return_documents=True)

    assert [result.index for result in response.results] == expected_ranking(QUERY, DOCUMENTS)
    assert all(result.document.text == DOCUMENTS[result.index] for result in response.results)


def test_cohere_client_sees_a_wrong_key_as_unauthorized(connector_server: ServerFactory) -> None:
    server = connector_server(api_key="right-key")
    client = cohere.ClientV2(api_key="wrong-key", base_url=server.url, timeout=30)

    with pytest.raises(cohere.errors.UnauthorizedError):
        client.rerank(model="m", query=QUERY, documents=DOCUMENTS)


def test_engine_style_request_over_http_gets_exactly_n_float_scores(connector_server: ServerFactory) -> None:
    server = connector_server(backend="openai")
    documents = ["[[retrostar:100]] best", *DOCUMENTS, "[[retrostar:0]] worst"]
    # Elasticsearch's custom service: ${query} JSON-escaped with its quotes, ${input} a JSON array.
    body = '{"query": "what is \\"RNA\\"?", "documents": ' + httpx.Response(200, json=documents).text + "}"

    response = httpx.post(f"{server.url}/v1/rerank", content=body, timeout=30)

    assert response.status_code == 200
    results = response.json()["results"]
    assert sorted(result["index"] for result in results) == list(range(len(documents)))
    raw_scores = re.findall(r'"relevance_score":([^,}]+)', response.text)
    assert all(re.fullmatch(r"\d+\.\d+(e-?\d+)?", raw) for raw in raw_scores)
    assert (results[0]["index"], results[0]["relevance_score"]) == (0, 1.0)
    assert (results[-1]["index"], results[-1]["relevance_score"]) == (len(documents) - 1, 0.0)


def test_all_pairs_of_a_request_are_in_flight_together(
    connector_server: ServerFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    # Asserted on what the server saw, not on wall time: all thirty at once is one round trip, not thirty.
    server = connector_server()
    scripted_sglang.script(latency=0.3)
    documents = [f"passage number {i}" for i in range(30)]

    response = httpx.post(
        f"{server.url}/v1/rerank", json={"query": QUERY, "documents": documents}, timeout=30
    )

    assert response.status_code == 200
    assert scripted_sglang.stats.max_in_flight >= len(documents)


def test_back_to_back_requests_each_take_one_backend_round_trip(
    connector_server: ServerFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    # The second burst meets the connections the first one left: they must not serialise part of it
    # (httpcore 1.0 hands one idle keep-alive connection to several requests; the losers wait a round).
    # Asserted on what the server saw, not on wall time: every pair of a round in flight at once.
    server = connector_server()
    scripted_sglang.script(latency=1.0)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for round_number in range(2):
            documents = [f"round {round_number} passage {i}" for i in range(100)]
            scripted_sglang.stats.reset()
            response = client.post("/v1/rerank", json={"query": QUERY, "documents": documents})
            assert response.status_code == 200
            assert scripted_sglang.stats.max_in_flight == len(documents), f"round {round_number}"


def test_max_concurrency_bounds_pairs_in_flight(
    connector_server: ServerFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    server = connector_server(max_concurrency=2)
    scripted_sglang.script(latency=0.05)
    documents = [f"passage number {i}" for i in range(8)]
    leftover = scripted_sglang.stats.in_flight  # a slow request an earlier test gave up on may still sleep

    response = httpx.post(
        f"{server.url}/v1/rerank", json={"query": QUERY, "documents": documents}, timeout=30
    )

    assert response.status_code == 200
    assert 2 <= scripted_sglang.stats.max_in_flight <= 2 + leftover


async def test_saturated_connector_answers_429_with_retry_after(
    connector_server: ServerFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    server = connector_server(max_concurrent_requests=1)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        slow = asyncio.create_task(
            client.post("/v1/rerank", json={"query": QUERY, "documents": ["[[slow:0.8]] slow"]})
        )
        await until(lambda: scripted_sglang.stats.in_flight >= 1)
        assert "retrosearch_rerank_in_flight 1.0" in (await client.get("/metrics")).text

        refused = await client.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS})

        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert refused.headers["x-amzn-ErrorType"] == "ThrottlingException"  # ML Commons retries on it
        assert "max_concurrent_requests (1)" in refused.json()["message"]
        assert (await slow).status_code == 200
        after = await client.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS})
        assert after.status_code == 200


def test_chunked_body_over_the_limit_is_413(
    connector_server: ServerFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    server = connector_server(max_body_bytes=1000)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming
        yield b'{"query": "q", "documents": ["'
        for _ in range(20):
            yield b"z" * 100
        yield b'"]}'

    response = httpx.post(f"{server.url}/v1/rerank", content=chunks(), timeout=30)

    assert response.status_code == 413
    assert "max_body_bytes (1000)" in response.json()["message"]
    assert scripted_sglang.stats.prompts == []


def test_deadline_over_http_degrades_instead_of_hanging(connector_server: ServerFactory) -> None:
    server = connector_server(deadline=0.4)
    documents = ["quick", "[[slow:5]] slow", "[[error:500]] broken"]

    started = time.monotonic()
    response = httpx.post(f"{server.url}/rerank", json={"query": QUERY, "texts": documents}, timeout=30)

    assert time.monotonic() - started < 3.0
    assert response.status_code == 200
    assert response.headers["X-Retrostar-Degraded"] == "true"
    assert [(rank["index"], rank["scored"]) for rank in response.json()] == [
        (0, True),
        (1, False),
        (2, False),
    ]


def test_probes_over_http(connector_server: ServerFactory) -> None:
    server = connector_server()
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/ready").status_code == 200
    assert "retrosearch_requests_total" in httpx.get(f"{server.url}/metrics").text
