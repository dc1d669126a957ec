"""What the connector tells the people and clients who look at it: who scores under which task (/ready),
why a rerank was degraded (the answer and GET /outcomes), Cohere's rank_fields, and the pages a browser
opens (/, /docs and its assets, served from this install)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from connector.background import free_port
from retrostar_search.engines.connector_endpoint import document_digest, rerank_fingerprint
from retrostar_search.tasks import PRESETS
from tests.scripted_sglang import ScriptedSGLangServer

ClientFactory = Callable[..., TestClient]
QUERY = "why do leaves change colour in autumn"


def test_ready_says_who_scores_under_which_task_up_or_down(connector_client: ClientFactory) -> None:
    ready = connector_client(task="biology", cascade="5@1,2@4").get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["backend"] == "sglang" and body["cascade"] == "5@1,2@4"
    assert body["task"] == PRESETS["biology"].model_dump()

    down = connector_client(task="leetcode", backend_url=f"http://127.0.0.1:{free_port()}").get("/ready")
    assert down.status_code == 503
    assert down.json()["task"]["name"] == "leetcode" and down.json()["backend"] == "sglang"


def test_a_degraded_answer_says_why_without_the_backend_address(connector_client: ClientFactory) -> None:
    client = connector_client()
    body = client.post(
        "/v1/rerank", json={"query": QUERY, "documents": ["fine", "[[error:503]] down", "also fine"]}
    ).json()

    reason = body["meta"]["retrostar"]["reason"]
    assert reason.startswith("the model backend failed (1 request): sglang backend answered HTTP 503")
    assert "127.0.0.1" not in reason and "http://" not in reason
    assert body["meta"]["warnings"] == [
        f"1 of 3 documents are unscored ({reason}); they follow the scored ones in request order with "
        "relevance_score 0.0"
    ]
    whole = client.post("/v1/rerank", json={"query": QUERY, "documents": ["fine"]}).json()
    assert whole["meta"]["retrostar"]["reason"] is None


def test_outcomes_remember_each_rerank_by_what_it_ranked(connector_client: ClientFactory) -> None:
    client = connector_client(api_key="outcome-key")
    auth = {"Authorization": "Bearer outcome-key"}
    documents = ["fine [[retrostar:80]]", "[[error:503]] broken", "fine too [[retrostar:60]]"]
    answer = client.post("/v1/rerank", json={"query": QUERY, "documents": documents}, headers=auth).json()

    # Any order of the same documents names the same rerank: the engine's order is not the client's.
    fingerprint = rerank_fingerprint(QUERY, list(reversed(documents)))
    assert client.get(f"/outcomes/{fingerprint}").status_code == 401
    outcome = client.get(f"/outcomes/{fingerprint}", headers=auth).json()
    assert outcome["request_id"] == answer["id"]
    assert (outcome["documents"], outcome["unscored"], outcome["degraded"]) == (3, 1, True)
    assert outcome["unscored_documents"] == [document_digest(documents[1])]
    assert "HTTP 503" in outcome["reason"]

    # Only digests are kept: nothing of the query or the documents.
    assert QUERY not in str(outcome) and "fine" not in str(outcome)
    unknown = rerank_fingerprint("another query", documents)
    assert client.get(f"/outcomes/{unknown}", headers=auth).status_code == 404
    assert client.get("/outcomes/not-a-fingerprint", headers=auth).status_code == 422


def test_an_outcome_of_nothing_scored_lists_no_digests(connector_client: ClientFactory) -> None:
    client = connector_client(backend_url=f"http://127.0.0.1:{free_port()}")
    client.post("/v1/rerank", json={"query": QUERY, "documents": ["a", "b"]})
    outcome = client.get(f"/outcomes/{rerank_fingerprint(QUERY, ['a', 'b'])}").json()
    assert (outcome["unscored"], outcome["unscored_documents"]) == (2, [])
    assert "unreachable" in outcome["reason"]


def test_rank_fields_rank_the_listed_fields_as_key_value_lines_in_order(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    client = connector_client()
    documents = [
        {"id": "a", "title": "Leaves", "author": "Ann", "year": 2020, "body": "ignored"},
        {"id": "b", "author": "Bo", "title": "Trees"},
        "a plain string document",
    ]
    response = client.post(
        "/v1/rerank",
        json={"query": QUERY, "documents": documents, "rank_fields": ["title", "year", "author"],
              "return_documents": True},
    )  # fmt: skip

    assert response.status_code == 200, response.text
    texts = {result["index"]: result["document"]["text"] for result in response.json()["results"]}
    assert texts == {
        0: "title: Leaves\nyear: 2020\nauthor: Ann",
        1: "title: Trees\nauthor: Bo",
        2: "a plain string document",
    }
    assert any("title: Leaves\nyear: 2020\nauthor: Ann" in prompt for prompt in scripted_sglang.stats.prompts)


def test_a_document_with_none_of_the_rank_fields_is_ranked_by_its_text_or_as_empty(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    # The published schema cannot say which fields each document holds, so a schema-valid request is not
    # refused: the document is ranked as it would be without rank_fields, or as an engine's empty field.
    response = connector_client().post(
        "/v1/rerank",
        json={
            "query": QUERY,
            "documents": [{"title": "x"}, {"body": "y", "text": "the body's text"}, {"body": "z"}],
            "rank_fields": ["title"],
        },
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 3
    documents = [prompt.split("[Begin of Document]\n")[1].split("\n[End of Document]")[0] for prompt in
                 scripted_sglang.stats.prompts]  # fmt: skip
    assert sorted(documents) == sorted(["title: x", "the body's text", ""])
    # Without rank_fields an object still needs its `text`, as before.
    plain = connector_client().post("/v1/rerank", json={"query": QUERY, "documents": [{"title": "x"}]})
    assert plain.status_code == 422 and "'text' field" in plain.json()["message"]


@pytest.mark.parametrize("explore", [True, False])
def test_the_home_page_links_the_docs_and_the_explorer_when_on(
    connector_client: ClientFactory, explore: bool
) -> None:
    home = connector_client(explore=explore).get("/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    links = re.findall(r'href="([^"]+)"', home.text)
    assert "docs" in links and "ready" in links
    assert ("explore" in links) is explore
    assert "default-src 'none'" in home.headers["content-security-policy"]


def test_the_docs_pages_load_their_assets_from_this_server(connector_client: ClientFactory) -> None:
    client = connector_client()
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets, page
        for asset in assets:
            assert asset.startswith("/docs/assets/"), (page, asset)
            served = client.get(asset)
            assert served.status_code == 200 and len(served.content) > 500, asset
        assert "cdn" not in html.lower() and "fonts.googleapis" not in html
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
