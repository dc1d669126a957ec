"""The explorer's page and JSON API without a browser: what the page is served with, what the API answers
and logs, and what it refuses (tests/test_explorer_browser.py drives the page itself)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from connector.app import create_app
from connector.background import free_port
from connector.settings import ConnectorSettings
from retrostar_search.engines.search import search_first_stage
from retrostar_search.tasks import PRESETS
from tests.scripted_sglang import ABORT, Failure, ScriptedSGLangServer
from tests.search_corpus import QUERY, expected_order, index_documents, scripted_score

API_KEY = "explorer-api-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ClientFactory = Callable[..., TestClient]


@pytest.fixture
def explorer_client(connector_client: ClientFactory) -> ClientFactory:
    """`connector_client` with the explorer turned on (it is off by default)."""
    return lambda **settings: connector_client(explore=True, **settings)


@pytest.fixture
def corpus_index(opensearch_client: OpenSearch) -> Iterator[str]:
    index = f"explorer-api-{uuid.uuid4().hex[:8]}"
    index_documents(opensearch_client, index)
    yield index
    opensearch_client.indices.delete(index=index, ignore_unavailable=True)


def test_the_page_is_served_locked_down_and_without_secrets(explorer_client: ClientFactory) -> None:
    secrets = (API_KEY, "explore-engine-secret")
    client = explorer_client(
        api_key=API_KEY, explore_username="reader", explore_password="explore-engine-secret"
    )

    page = client.get("/explore")
    script = client.get("/explore/static/explore.js")
    style = client.get("/explore/static/explore.css")

    assert page.status_code == script.status_code == style.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="explore/static/explore.js"' in page.text
    assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
    assert client.get("/explore/api/config").status_code == 401
    config = client.get("/explore/api/config", headers=AUTH)
    assert config.status_code == 200 and config.json()["engines"] == ["opensearch"]
    for answer in (page, script, style, config):
        assert not any(secret in answer.text for secret in secrets)


def test_search_answers_both_lists_and_the_rerank_is_logged_with_the_hits_ids(
    connector_settings: Callable[..., ConnectorSettings],
    opensearch_url: str,
    opensearch_client: OpenSearch,
    opensearch_log_index: str,
    corpus_index: str,
) -> None:
    settings = connector_settings(
        explore=True, log_url=opensearch_url, log_index=opensearch_log_index, log_flush_interval=0.1
    )
    first_stage = [hit.id for hit in search_first_stage(opensearch_client, corpus_index, QUERY, size=5)]
    reranked = expected_order(first_stage, first_stage)
    app = create_app(settings)
    with TestClient(app) as client:
        answer = client.get(
            "/explore/api/search", params={"q": QUERY, "index": corpus_index, "candidates": 5}
        ).json()
        client.portal.call(app.state.service.rerank_log.flush)
        opensearch_client.indices.refresh(index=f"{opensearch_log_index}-*")
        events = client.get("/explore/api/events", params={"limit": 5}).json()
        indices = [index["name"] for index in client.get("/explore/api/indices").json()["indices"]]

    assert [hit["id"] for hit in answer["first_stage"]] == first_stage
    assert [hit["id"] for hit in answer["reranked"]] == reranked
    for new_rank, hit in enumerate(answer["reranked"], start=1):
        assert hit["rank"] == new_rank and hit["first_stage_rank"] == first_stage.index(hit["id"]) + 1
        assert hit["rank_change"] == hit["first_stage_rank"] - new_rank
        assert hit["retrostar_score"] == scripted_score(hit["id"])
        explanation = hit["explanation"]
        assert explanation["score"] == scripted_score(hit["id"])
        [sample] = explanation["samples"]
        assert sample["score"] == scripted_score(hit["id"]) and sample["finish_reason"] == "stop"
        assert "Relevance Annotation" in sample["reasoning"] and "<score>" not in sample["reasoning"]
    assert answer["degraded"] is False and answer["rerank"]["status"] == "complete"
    assert all(hit["explanation"] is None for hit in answer["first_stage"])

    [event] = [event for event in events["events"] if event["request_id"] == answer["request_id"]]
    assert event["document_count"] == 5 and "query" not in event
    records = opensearch_client.search(
        index=f"{opensearch_log_index}-*",
        body={"query": {"term": {"kind": "document"}}, "size": 10},
    )["hits"]["hits"]
    assert sorted(record["_source"]["doc_id"] for record in records) == sorted(first_stage)
    assert not any(record["_source"]["doc_id_hashed"] for record in records)
    assert corpus_index in indices
    assert not any(name.startswith((opensearch_log_index, ".")) for name in indices)


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"q": "  ", "index": "docs"}, "q must not be empty"),
        ({"q": QUERY, "index": "_all"}, "index must name one index"),
        ({"q": QUERY, "index": "docs,.security"}, "index must name one index"),
        ({"q": QUERY, "index": "logs-*"}, "index must name one index"),
        ({"q": QUERY, "index": "docs", "engine": "elasticsearch"}, "engine elasticsearch is not configured"),
        ({"q": QUERY, "index": "docs", "candidates": 0}, "candidates"),
    ],
    ids=["blank-query", "all", "list", "wildcard", "other-engine", "no-candidates"],
)
def test_search_refuses_what_would_widen_it_before_asking_the_engine(
    explorer_client: ClientFactory, params: dict[str, object], problem: str
) -> None:
    response = explorer_client().get("/explore/api/search", params=params)

    assert response.status_code == 422
    assert problem in response.json()["message"]


def test_without_a_log_the_events_list_says_how_to_turn_it_on(explorer_client: ClientFactory) -> None:
    answer = explorer_client().get("/explore/api/events").json()

    assert answer["enabled"] is False and answer["events"] == []
    assert "--log-url" in answer["note"]


def test_an_unreachable_engine_is_a_502_that_names_neither_url_nor_credentials(
    explorer_client: ClientFactory,
) -> None:
    port = free_port()
    client = explorer_client(explore_url=f"http://127.0.0.1:{port}", explore_password="engine-secret")

    response = client.get("/explore/api/indices")

    assert response.status_code == 502
    message = response.json()["message"]
    assert message.startswith("listing indices failed: ConnectionError")
    assert str(port) not in message and "engine-secret" not in message


def test_the_explorer_is_off_unless_turned_on(connector_client: ClientFactory) -> None:
    # Issue 10: it was on by default, searching every index with the connector's engine credentials.
    client = connector_client()

    assert client.get("/explore").status_code == 404
    assert client.get("/explore/api/config").status_code == 404
    assert client.get("/explore/static/explore.js").status_code == 404


def test_a_rerank_that_scored_nothing_says_so_with_the_reason_and_each_hit_why(
    connector_client: ClientFactory,
    opensearch_url: str,
    corpus_index: str,
    scripted_sglang: ScriptedSGLangServer,
) -> None:
    scripted_sglang.script(answers=lambda pair: Failure(503))
    client = connector_client(explore=True, explore_url=opensearch_url, task="biology")

    config = client.get("/explore/api/config").json()
    assert config["task"] == PRESETS["biology"].model_dump() and config["backend"] == "sglang"
    answer = client.get(
        "/explore/api/search", params={"q": QUERY, "index": corpus_index, "candidates": 5}
    ).json()

    assert answer["degraded"] is True
    rerank = answer["rerank"]
    assert (rerank["status"], rerank["documents"], rerank["unscored"]) == ("none", 5, 5)
    assert rerank["message"].startswith("nothing was reranked: none of the 5 documents got a Retro* score")
    assert "HTTP 503" in rerank["reason"] and rerank["request_id"] == answer["request_id"]
    for hit in answer["reranked"]:
        explanation = hit["explanation"]
        assert explanation["score"] is None and explanation["samples"] == []
        assert explanation["unscored_reason"].startswith("the model backend failed")


def test_hits_the_server_aborted_say_the_backend_failed_them(
    connector_client: ClientFactory,
    opensearch_url: str,
    corpus_index: str,
    scripted_sglang: ScriptedSGLangServer,
) -> None:
    # Before, an aborted pair (it keeps the aborted samples) was said to have no <score> under --unparsed skip.
    scripted_sglang.script(answers=lambda pair: ABORT)
    client = connector_client(explore=True, explore_url=opensearch_url)
    answer = client.get(
        "/explore/api/search", params={"q": QUERY, "index": corpus_index, "candidates": 2}
    ).json()

    assert answer["degraded"] is True and answer["rerank"]["status"] == "none"
    for hit in answer["reranked"]:
        assert hit["explanation"]["unscored_reason"] == (
            "the model backend failed (2 requests): the sglang backend aborted the generation"
        )


def test_documents_the_cascade_leaves_out_say_so_and_the_rerank_is_not_degraded(
    connector_client: ClientFactory, opensearch_url: str, corpus_index: str
) -> None:
    client = connector_client(explore=True, explore_url=opensearch_url, cascade="2@1")
    answer = client.get(
        "/explore/api/search", params={"q": QUERY, "index": corpus_index, "candidates": 5}
    ).json()

    assert answer["degraded"] is False and answer["rerank"]["status"] == "complete"
    unscored = [hit["explanation"] for hit in answer["reranked"] if hit["retrostar_score"] is None]
    assert len(unscored) == 3
    assert {explanation["unscored_reason"] for explanation in unscored} == {
        "not among the documents the cascade (2@1) scores"
    }


def test_a_query_over_the_limit_is_refused_before_the_engine_is_asked(explorer_client: ClientFactory) -> None:
    client = explorer_client(explore_url=f"http://127.0.0.1:{free_port()}", max_query_chars=10)

    response = client.get("/explore/api/search", params={"q": "q" * 11, "index": "docs"})

    assert response.status_code == 413  # not 502: the unreachable engine was never asked
    assert "max_query_chars (10)" in response.json()["message"]


def test_an_index_the_engine_does_not_have_is_a_404(
    explorer_client: ClientFactory, opensearch_url: str
) -> None:
    client = explorer_client(explore_url=opensearch_url)

    response = client.get("/explore/api/search", params={"q": QUERY, "index": f"absent-{uuid.uuid4().hex}"})

    assert response.status_code == 404  # the client's mistake, not the engine failing (502)
    assert response.json()["message"].startswith("searching failed: no index or alias absent-")
