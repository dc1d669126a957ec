"""What the connector tells about how each document was scored, against the scripted server: finish
reasons per sample, truncation to fit the served context, the cascade's scores as engines sort them, the
deadline setting, and the counters on /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.scripted_sglang import ABORT, ScriptedSGLangServer
from tests.test_connector_api import metric_value

ClientFactory = Callable[..., TestClient]
QUERY = "why are leaves green"


def rerank(client: TestClient, documents: list[str], **body: Any) -> Any:
    response = client.post("/v1/rerank", json={"query": QUERY, "documents": documents, **body})
    assert response.status_code == 200, response.text
    return response.json()


def by_index(body: Any) -> dict[int, Any]:
    return {result["index"]: result for result in body["results"]}


def test_explanations_give_each_samples_finish_reason_and_the_documents_state(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    scripted_sglang.script(answers={"flaky": ABORT})
    client = connector_client(samples=2)
    body = rerank(client, ["[[retrostar:80,length]] cut", "flaky"], return_explanations=True)

    results = by_index(body)
    cut = results[0]["explanation"]
    assert [(s["finish_reason"], s["score"], s["parsed"]) for s in cut["samples"]] == [
        ("stop", 80, True),
        ("length", None, False),
    ]
    assert (cut["score"], cut["stage"], cut["truncated"], cut["unscored_reason"]) == (40.0, 1, False, None)
    assert results[0]["retrostar_score"] == 40.0
    aborted = results[1]["explanation"]
    assert aborted["score"] is None and aborted["unscored_reason"] == "aborted" and aborted["stage"] is None
    assert {sample["finish_reason"] for sample in aborted["samples"]} == {"abort"}
    assert (results[1]["scored"], results[1]["retrostar_score"]) == (False, None)
    stats = body["meta"]["retrostar"]
    assert (stats["retried_pairs"], stats["backend_errors"], stats["unparsed_samples"]) == (1, 1, 1)
    assert body["degraded"] is True

    assert metric_value(client, "retrosearch_samples_total", finish_reason="stop") == 1
    assert metric_value(client, "retrosearch_samples_total", finish_reason="length") == 1
    assert metric_value(client, "retrosearch_samples_total", finish_reason="abort") == 4
    assert metric_value(client, "retrosearch_unparsed_samples_total") == 1
    assert metric_value(client, "retrosearch_retried_pairs_total") == 1
    assert metric_value(client, "retrosearch_aborted_pairs_total") == 1


def test_a_document_over_the_served_context_is_scored_on_its_beginning_and_flagged(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    scripted_sglang.script(context_length=4000)  # the server's, and the one the connector is told
    client = connector_client(context_length=4000, max_new_tokens=256)
    long_document = "[[retrostar:65]] " + "Chlorophyll absorbs red and blue light. " * 2000
    body = rerank(client, [long_document, "[[retrostar:20]] short"], return_explanations=True)

    assert [(r["index"], r["retrostar_score"], r["explanation"]["truncated"]) for r in body["results"]] == [
        (0, 65.0, True),
        (1, 20.0, False),
    ]
    assert body["degraded"] is False and body["meta"]["retrostar"]["truncated_documents"] == 1
    assert metric_value(client, "retrosearch_truncated_documents_total") == 1


def test_cascade_scores_sort_promoted_documents_first_in_any_engine(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    client = connector_client(cascade="3@1,1@2")
    documents = ["a [[retrostar:90,10]]", "b [[retrostar:80]]", "c [[retrostar:20]]"]
    body = rerank(client, documents, return_explanations=True)

    results = body["results"]
    # a: promoted with 90, refined to 50; b keeps its first-pass 80 but was not promoted.
    assert [(r["index"], r["retrostar_score"], r["explanation"]["stage"]) for r in results] == [
        (0, 50.0, 2),
        (1, 80.0, 1),
        (2, 20.0, 1),
    ]
    assert [r["relevance_score"] for r in results] == [0.75, 0.4, 0.1]
    tei = client.post("/rerank", json={"query": QUERY, "texts": documents}).json()
    assert [rank["index"] for rank in sorted(tei, key=lambda rank: -rank["score"])] == [0, 1, 2]


def test_on_deadline_finish_completes_the_ranking_for_the_next_search(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    client = connector_client(on_deadline="finish")
    documents = ["[[retrostar:30]] quick", "[[slow:1.5]] [[retrostar:90]] slow"]
    first = rerank(client, documents, deadline=0.7)
    assert first["degraded"] is True
    assert metric_value(client, "retrosearch_deadline_pairs_total", action="finish") == 1

    finished_by = time.monotonic() + 5
    while metric_value(client, "retrosearch_background_pairs_total", outcome="cached") < 1:
        assert time.monotonic() < finished_by
        time.sleep(0.05)
    second = rerank(client, documents, deadline=0.7)
    assert second["degraded"] is False and second["meta"]["retrostar"]["cache_hits"] == 2
    assert [result["index"] for result in second["results"]] == [1, 0]


def test_a_non_cascade_answers_retrostar_over_100_exactly(connector_client: ClientFactory) -> None:
    body = rerank(connector_client(samples=3), ["[[retrostar:10,20,40]] x", "[[retrostar:99]] y"])
    assert [(r["relevance_score"], r["retrostar_score"]) for r in body["results"]] == [
        (0.99, 99.0),
        ((70 / 3) / 100, 70 / 3),
    ]
