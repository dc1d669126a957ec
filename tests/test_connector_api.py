"""The connector's HTTP API through FastAPI's TestClient, with the scripted SGLang server as the backend."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from connector.background import free_port
from retrostar_search.tasks import PRESETS
from tests.scripted_sglang import ScriptedSGLangServer, expected_score

ClientFactory = Callable[..., TestClient]

QUERY = "why do leaves change colour in autumn"
DOCUMENTS = [
    "Chlorophyll breaks down in autumn, revealing carotenoids.",
    "The stock market closed higher on Friday.",
    "Anthocyanins are produced in leaves as days shorten.",
    "A recipe for pumpkin soup.",
    "Deciduous trees shed leaves to save water in winter.",
]
BACKENDS = ["sglang", "openai"]


def expected_ranking(query: str, documents: list[str]) -> list[int]:
    return sorted(range(len(documents)), key=lambda i: (-expected_score(query, documents[i]), i))


def rerank(client: TestClient, path: str = "/v1/rerank", **body: Any) -> Any:
    payload = {"query": QUERY, "documents": DOCUMENTS, **body}
    return client.post(path, json=payload)


def metric_value(client: TestClient, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# --- Cohere shape -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("path", "version"), [("/v1/rerank", "1"), ("/v2/rerank", "2")])
def test_cohere_rerank_ranks_every_document_by_retrostar_score(
    connector_client: ClientFactory,
    scripted_sglang: ScriptedSGLangServer,
    backend: str,
    path: str,
    version: str,
) -> None:
    client = connector_client(backend=backend)

    response = rerank(client, path, model="rerank-whatever")

    assert response.status_code == 200
    body = response.json()
    assert [result["index"] for result in body["results"]] == expected_ranking(QUERY, DOCUMENTS)
    for result in body["results"]:
        assert result["relevance_score"] == pytest.approx(
            expected_score(QUERY, DOCUMENTS[result["index"]]) / 100
        )
        assert result["scored"] is True
        assert "document" not in result and "explanation" not in result
    assert body["degraded"] is False
    assert body["meta"]["api_version"]["version"] == version
    assert body["meta"]["retrostar"]["pairs_scored"] == len(DOCUMENTS)
    assert body["model"] == "ljw13/retro-star-qwen3-14b-0928"
    assert response.headers["X-Request-ID"] == body["id"]
    assert len(scripted_sglang.stats.prompts) == len(DOCUMENTS)
    # The chat API is asked not to think; /generate gets the template applied by the connector.
    chat_calls = ["chat_template_kwargs" in sampling for sampling in scripted_sglang.stats.sampling]
    assert all(chat_calls) if backend == "openai" else not any(chat_calls)


def test_top_n_returns_the_best_n(connector_client: ClientFactory) -> None:
    client = connector_client()
    best = expected_ranking(QUERY, DOCUMENTS)

    assert [r["index"] for r in rerank(client, top_n=2).json()["results"]] == best[:2]
    assert [r["index"] for r in rerank(client, top_n=0).json()["results"]] == best
    assert [r["index"] for r in rerank(client, top_n=50).json()["results"]] == best


def test_documents_as_text_objects_and_return_documents(connector_client: ClientFactory) -> None:
    client = connector_client()
    documents = [{"text": "first document"}, "second document", {"text": "third", "title": "ignored"}]

    body = rerank(client, documents=documents, return_documents=True).json()

    texts = ["first document", "second document", "third"]
    assert {r["index"]: r["document"]["text"] for r in body["results"]} == dict(enumerate(texts))


def test_opensearch_rerank_processor_request_gets_exactly_n_float_scores(
    connector_client: ClientFactory,
) -> None:
    # What ML Commons' Cohere blueprint sends: documents, query, model, top_n = number of hits.
    documents = ["[[retrostar:100]] perfect", "plain hit", "[[retrostar:0]] off-topic", "another hit", ""]
    payload = {"documents": documents, "query": "q", "model": "rerank-english-v2.0", "top_n": len(documents)}

    response = connector_client().post("/v1/rerank", content=json.dumps(payload))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    results = response.json()["results"]
    assert sorted(result["index"] for result in results) == list(range(len(documents)))
    raw_scores = re.findall(r'"relevance_score":([^,}]+)', response.text)
    assert len(raw_scores) == len(documents)
    # The plugin casts to Double: every score must be a float literal, including 1.0 and 0.0.
    assert all(re.fullmatch(r"\d+\.\d+(e-?\d+)?", raw) for raw in raw_scores), raw_scores
    assert '"relevance_score":1.0' in response.text
    assert '"relevance_score":0.0' in response.text
    assert results[0]["index"] == 0


def test_body_is_parsed_as_json_whatever_the_content_type(connector_client: ClientFactory) -> None:
    # curl -d without -H sends application/x-www-form-urlencoded.
    payload = json.dumps({"query": QUERY, "documents": DOCUMENTS})
    response = connector_client().post(
        "/v1/rerank", content=payload, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200
    assert len(response.json()["results"]) == len(DOCUMENTS)


# --- TEI shape on /rerank ---------------------------------------------------------------------------


def test_rerank_with_texts_answers_tei_bare_array(connector_client: ClientFactory) -> None:
    client = connector_client()

    response = client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS, "raw_scores": False})

    assert response.status_code == 200
    ranks = response.json()
    assert isinstance(ranks, list)
    assert [rank["index"] for rank in ranks] == expected_ranking(QUERY, DOCUMENTS)
    assert all(set(rank) == {"index", "score", "scored"} for rank in ranks)
    assert ranks[0]["score"] == pytest.approx(expected_score(QUERY, DOCUMENTS[ranks[0]["index"]]) / 100)

    with_text = client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS, "return_text": True}).json()
    assert all(rank["text"] == DOCUMENTS[rank["index"]] for rank in with_text)


def test_rerank_with_documents_answers_cohere_shape(connector_client: ClientFactory) -> None:
    body = rerank(connector_client(), "/rerank", top_n=3).json()
    assert [r["index"] for r in body["results"]] == expected_ranking(QUERY, DOCUMENTS)[:3]
    assert body["meta"]["api_version"]["version"] == "1"


# --- Explanations, sampling, tasks ------------------------------------------------------------------


def test_explanations_give_score_samples_and_reasoning(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    client = connector_client(samples=3, temperature=0.3)
    documents = ["[[retrostar:70,80,90]] good", "[[noscore]] rambling", "[[retrostar:10]] poor"]

    body = rerank(client, documents=documents, return_explanations=True).json()

    by_index = {result["index"]: result for result in body["results"]}
    good = by_index[0]["explanation"]
    assert good["score"] == 80.0
    assert [sample["score"] for sample in good["samples"]] == [70, 80, 90]
    assert all(sample["parsed"] for sample in good["samples"])
    assert "Query Analysis" in good["samples"][0]["text"] and "<score>" in good["samples"][0]["text"]
    assert by_index[0]["relevance_score"] == pytest.approx(0.8)
    # No <score>: counted as 0 (the reference's policy), flagged unparsed, still "scored".
    rambling = by_index[1]["explanation"]
    assert rambling["score"] == 0.0
    assert [sample["parsed"] for sample in rambling["samples"]] == [False, False, False]
    assert by_index[1]["scored"] is True
    # The sampling settings reach the backend.
    assert {sampling["n"] for sampling in scripted_sglang.stats.sampling} == {3}
    assert {sampling["temperature"] for sampling in scripted_sglang.stats.sampling} == {0.3}


def test_skip_policy_leaves_unparsed_pairs_unscored_but_not_degraded(connector_client: ClientFactory) -> None:
    body = rerank(connector_client(unparsed="skip"), documents=["[[noscore]] x", "[[retrostar:50]] y"]).json()

    assert [(r["index"], r["scored"]) for r in body["results"]] == [(1, True), (0, False)]
    assert body["degraded"] is False


def test_task_override_by_preset_name_changes_the_prompt(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    client = connector_client()

    assert rerank(client, task="biology").status_code == 200

    biology = PRESETS["biology"]
    assert all(biology.relevance_definition in prompt for prompt in scripted_sglang.stats.prompts)
    assert all("Query (biology post):" in prompt for prompt in scripted_sglang.stats.prompts)


def test_task_override_with_custom_fields_changes_the_prompt(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    task = {"query_type": "recipe question", "doc_type": "recipe", "relevance_definition": "Cookable."}

    assert rerank(connector_client(), task=task).status_code == 200

    prompt = scripted_sglang.stats.prompts[0]
    assert "retrieval task: Cookable.\n" in prompt
    assert "Query (recipe question):" in prompt and "Document (recipe):" in prompt


def test_server_task_applies_when_the_request_names_none(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    assert rerank(connector_client(task="leetcode")).status_code == 200
    assert PRESETS["leetcode"].relevance_definition in scripted_sglang.stats.prompts[0]


def test_unknown_task_is_422_naming_the_known_ones(connector_client: ClientFactory) -> None:
    response = rerank(connector_client(), task="astrology")
    assert response.status_code == 422
    assert "astrology" in response.json()["message"] and "biology" in response.json()["message"]


# --- Deduplication and cache ------------------------------------------------------------------------


def test_identical_documents_are_scored_once(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    documents = ["same text", "same text", "other text", "same text"]

    body = rerank(connector_client(), documents=documents).json()

    assert len(scripted_sglang.stats.prompts) == 2
    scores = {result["index"]: result["relevance_score"] for result in body["results"]}
    assert len(scores) == 4
    assert scores[0] == scores[1] == scores[3]


def test_a_cache_hit_costs_no_model_call(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    client = connector_client()
    first = rerank(client).json()
    calls_after_first = len(scripted_sglang.stats.prompts)

    second = rerank(client).json()

    assert len(scripted_sglang.stats.prompts) == calls_after_first == len(DOCUMENTS)
    assert second["meta"]["retrostar"]["cache_hits"] == len(DOCUMENTS)
    assert second["meta"]["retrostar"]["pairs_scored"] == 0
    assert second["results"] == first["results"]
    assert metric_value(client, "retrosearch_cache_hits_total") == len(DOCUMENTS)


def test_without_a_cache_every_request_calls_the_model(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    client = connector_client(cache_size=0)
    rerank(client)
    rerank(client)
    assert len(scripted_sglang.stats.prompts) == 2 * len(DOCUMENTS)


def _explanations(body: Any) -> dict[int, Any]:
    return {result["index"]: result["explanation"] for result in body["results"]}


def test_a_cached_pair_explains_itself_while_memory_keeps_its_reasoning(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    client = connector_client()
    first = _explanations(rerank(client, return_explanations=True).json())
    second = _explanations(rerank(client, return_explanations=True).json())

    assert len(scripted_sglang.stats.prompts) == len(DOCUMENTS)
    for index, explanation in second.items():
        assert explanation["cached"] and explanation["reasoning_kept"]
        assert explanation["samples"] == first[index]["samples"]
        assert "<score>" in explanation["samples"][0]["text"]


def test_reasoning_evicted_from_memory_is_read_back_from_the_sqlite_file(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer, tmp_path
) -> None:
    client = connector_client(cache_reasoning_bytes=0, cache_path=tmp_path / "scores.sqlite")
    scored = _explanations(rerank(client, return_explanations=True).json())
    engine_style = rerank(client).json()  # no explanations asked: memory's scores, the file not read

    explained = _explanations(rerank(client, return_explanations=True).json())

    assert engine_style["meta"]["retrostar"]["cache_hits"] == len(DOCUMENTS)
    assert len(scripted_sglang.stats.prompts) == len(DOCUMENTS)
    for index, explanation in explained.items():
        assert explanation["cached"] and explanation["reasoning_kept"]
        assert explanation["samples"] == scored[index]["samples"]


def test_reasoning_kept_nowhere_leaves_the_scores_and_says_so(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    client = connector_client(cache_reasoning_bytes=0)
    scored = _explanations(rerank(client, return_explanations=True).json())

    explained = _explanations(rerank(client, return_explanations=True).json())

    assert len(scripted_sglang.stats.prompts) == len(DOCUMENTS)
    for index, explanation in explained.items():
        assert explanation["cached"] and not explanation["reasoning_kept"]
        assert explanation["score"] == scored[index]["score"]
        assert [sample["score"] for sample in explanation["samples"]] == [
            sample["score"] for sample in scored[index]["samples"]
        ]
        assert all(sample["text"] == "" for sample in explanation["samples"])
    assert all(explanation["reasoning_kept"] for explanation in scored.values())


# --- Deadline, backend failures, strict -------------------------------------------------------------

# Slow well past the deadlines below, so the bounds on wall time hold on a loaded machine.
SLOW_DOCUMENTS = ["fast one", "[[slow:5]] slow one", "fast two", "[[slow:5]] slow two"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_request_deadline_answers_what_is_known_and_flags_it(
    connector_client: ClientFactory, backend: str
) -> None:
    client = connector_client(backend=backend)
    started = time.monotonic()

    response = rerank(client, documents=SLOW_DOCUMENTS, deadline=0.4)

    assert time.monotonic() - started < 3.0
    assert response.status_code == 200
    body = response.json()
    assert body["degraded"] is True
    assert response.headers["X-Retrostar-Degraded"] == "true"
    assert body["meta"]["retrostar"]["deadline_exceeded"] is True
    assert body["meta"]["retrostar"]["unscored"] == 2
    assert body["meta"]["warnings"]
    # Scored documents first, then the unscored ones in request order with 0.0.
    assert [r["scored"] for r in body["results"]] == [True, True, False, False]
    assert [r["index"] for r in body["results"][2:]] == [1, 3]
    assert [r["relevance_score"] for r in body["results"][2:]] == [0.0, 0.0]
    assert metric_value(client, "retrosearch_degraded_responses_total", reason="deadline") == 1
    assert metric_value(client, "retrosearch_unscored_documents_total") == 2


def test_server_deadline_applies_and_caps_a_longer_request_deadline(connector_client: ClientFactory) -> None:
    client = connector_client(deadline=0.4)
    started = time.monotonic()

    body = rerank(client, documents=SLOW_DOCUMENTS, deadline=30).json()

    assert time.monotonic() - started < 3.0
    assert body["degraded"] is True


def test_strict_request_turns_a_passed_deadline_into_504(connector_client: ClientFactory) -> None:
    response = rerank(connector_client(), documents=SLOW_DOCUMENTS, deadline=0.3, strict=True)
    assert response.status_code == 504
    assert "deadline" in response.json()["message"] and "2 of 4" in response.json()["message"]


def test_strict_setting_applies_unless_the_request_opts_out(connector_client: ClientFactory) -> None:
    client = connector_client(strict=True, deadline=0.3)
    assert rerank(client, documents=SLOW_DOCUMENTS).status_code == 504
    assert rerank(client, documents=SLOW_DOCUMENTS, strict=False).status_code == 200


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("failure", ["[[error:503]]", "[[malformed]]"])
def test_backend_failure_degrades_to_200_with_the_failed_document_last(
    connector_client: ClientFactory, backend: str, failure: str
) -> None:
    client = connector_client(backend=backend)
    documents = ["good one", f"{failure} broken", "good two"]

    response = rerank(client, documents=documents)

    assert response.status_code == 200
    body = response.json()
    assert body["degraded"] is True
    assert body["meta"]["retrostar"]["backend_errors"] == 1
    assert body["meta"]["retrostar"]["deadline_exceeded"] is False
    assert (body["results"][-1]["index"], body["results"][-1]["scored"]) == (1, False)
    assert metric_value(client, "retrosearch_backend_errors_total") == 1
    assert metric_value(client, "retrosearch_degraded_responses_total", reason="backend_error") == 1


def test_strict_backend_failure_is_502_naming_the_backend_status(connector_client: ClientFactory) -> None:
    response = rerank(connector_client(), documents=["ok", "[[error:503]] down"], strict=True)
    assert response.status_code == 502
    assert "503" in response.json()["message"]


def test_strict_502_names_the_backend_without_the_credentials_in_its_url(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    # Issue 10: `http://user:pass@host` reached API clients in the strict 502 body.
    backend_url = scripted_sglang.url.replace("http://", "http://retro:url-secret@")
    client = connector_client(backend_url=backend_url)

    response = rerank(client, documents=["ok", "[[error:503]] down"], strict=True)

    assert response.status_code == 502
    message = response.json()["message"]
    assert f"sglang backend at {scripted_sglang.url}/generate answered HTTP 503" in message
    assert "url-secret" not in response.text and "retro:" not in response.text


def test_unreachable_backend_still_answers_every_document_unscored(connector_client: ClientFactory) -> None:
    client = connector_client(backend_url=f"http://127.0.0.1:{free_port()}")

    body = rerank(client).json()

    assert body["degraded"] is True
    assert [r["index"] for r in body["results"]] == list(range(len(DOCUMENTS)))
    assert all(r["relevance_score"] == 0.0 and r["scored"] is False for r in body["results"])


# --- Limits and malformed input ---------------------------------------------------------------------


def test_too_many_documents_is_413_naming_the_limit(connector_client: ClientFactory) -> None:
    response = rerank(connector_client(max_documents=3))
    assert response.status_code == 413
    assert "max_documents (3)" in response.json()["message"]


def test_too_long_document_is_413_naming_the_limit(connector_client: ClientFactory) -> None:
    response = rerank(connector_client(max_document_chars=10), documents=["short", "x" * 11])
    assert response.status_code == 413
    assert "document 1" in response.json()["message"]
    assert "max_document_chars (10)" in response.json()["message"]


def test_too_long_query_is_413_naming_the_limit(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    # Issue 10: the query had no limit and is copied into every document's prompt.
    response = rerank(connector_client(max_query_chars=20), query="q" * 21)
    assert response.status_code == 413
    assert response.json()["message"] == "the query has 21 characters, over max_query_chars (20)"
    assert scripted_sglang.stats.prompts == []


@pytest.mark.parametrize("part", ["query_type", "doc_type", "relevance_definition"])
def test_too_long_task_part_is_413_naming_the_limit(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer, part: str
) -> None:
    response = rerank(connector_client(max_definition_chars=30), task={part: "d" * 31})
    assert response.status_code == 413
    assert f"task.{part} has 31 characters, over max_definition_chars (30)" in response.json()["message"]
    assert scripted_sglang.stats.prompts == []


def test_the_default_limits_bound_query_and_task(connector_client: ClientFactory) -> None:
    client = connector_client()
    assert rerank(client, query="q" * 32_768).status_code == 200
    assert rerank(client, query="q" * 32_769).status_code == 413
    assert rerank(client, task={"relevance_definition": "r" * 4097}).status_code == 413


def test_too_large_body_is_413_naming_the_limit(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    response = rerank(connector_client(max_body_bytes=200), documents=["y" * 300])
    assert response.status_code == 413
    assert "max_body_bytes (200)" in response.json()["message"]
    assert scripted_sglang.stats.prompts == []


BAD_BODIES = [
    ("/v1/rerank", b"{not json"),
    ("/v1/rerank", b""),
    ("/v1/rerank", b"\xff\xfe\x00garbage"),
    ("/v1/rerank", b"null"),
    ("/v1/rerank", b'["query", "documents"]'),
    ("/v1/rerank", b'{"documents": ["a"]}'),
    ("/v1/rerank", b'{"query": "q"}'),
    ("/v1/rerank", b'{"query": 42, "documents": ["a"]}'),
    ("/v1/rerank", b'{"query": "", "documents": ["a"]}'),
    ("/v1/rerank", b'{"query": "   ", "documents": ["a"]}'),
    ("/v1/rerank", b'{"query": "q", "documents": []}'),
    ("/v1/rerank", b'{"query": "q", "documents": "a"}'),
    ("/v1/rerank", b'{"query": "q", "documents": [1, 2]}'),
    ("/v1/rerank", b'{"query": "q", "documents": [{"title": "no text"}]}'),
    ("/v1/rerank", b'{"query": "q", "documents": [null]}'),
    ("/v1/rerank", b'{"query": "q", "documents": [{"text": "a", "id": {"nested": 1}}]}'),
    ("/v1/rerank", b'{"query": "q", "documents": [{"text": "a", "id": true}]}'),
    ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": -1}'),
    ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": "three"}'),
    ("/v1/rerank", b'{"query": "q", "documents": ["a"], "deadline": 0}'),
    ("/v1/rerank", b'{"query": "q", "documents": ["a"], "return_documents": "maybe"}'),
    ("/v1/rerank", b'{"query": "q", "documents": ["a"], "task": {"definition": "typo"}}'),
    ("/v1/rerank", b'{"query": "q", "documents": ["a"], "task": 7}'),
    ("/v2/rerank", b'{"query": "q", "documents": [["nested"]]}'),
    ("/rerank", b'{"query": "q"}'),
    ("/rerank", b'{"query": "q", "texts": ["a"], "documents": ["b"]}'),
    ("/rerank", b'{"query": "q", "texts": []}'),
    ("/rerank", b'{"query": "q", "texts": [{"text": "a"}]}'),
    ("/rerank", b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"),
]


@pytest.mark.parametrize(("path", "body"), BAD_BODIES)
def test_malformed_bodies_get_4xx_with_a_message_never_500(
    connector_client: ClientFactory, path: str, body: bytes
) -> None:
    response = connector_client().post(path, content=body, headers={"Content-Type": "application/json"})

    assert 400 <= response.status_code < 500, response.text
    assert response.json()["message"].startswith("invalid request")


def test_validation_messages_name_the_field_not_its_value(connector_client: ClientFactory) -> None:
    response = rerank(connector_client(), documents=["private text one", 7])

    assert response.status_code == 422
    assert "documents.1" in response.json()["message"]
    assert "private text one" not in response.text


# --- Authentication ---------------------------------------------------------------------------------


def test_api_key_is_required_on_rerank_routes(connector_client: ClientFactory) -> None:
    client = connector_client(api_key="s3cret-key")

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0LWtleQ=="}):
        for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
            response = client.post(path, json={"query": QUERY, "documents": DOCUMENTS}, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert "API key" in response.json()["message"]
    ok = client.post(
        "/v1/rerank",
        json={"query": QUERY, "documents": DOCUMENTS},
        headers={"Authorization": "Bearer s3cret-key"},
    )
    assert ok.status_code == 200
    # Probes stay open for load balancers and Prometheus.
    assert [client.get(path).status_code for path in ("/health", "/ready", "/metrics")] == [200, 200, 200]


def test_no_api_key_configured_means_no_authentication(connector_client: ClientFactory) -> None:
    assert rerank(connector_client()).status_code == 200


# --- Probes, metrics, docs --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_ready_follows_the_backend(connector_client: ClientFactory, backend: str) -> None:
    assert connector_client(backend=backend).get("/ready").status_code == 200

    down = connector_client(backend=backend, backend_url=f"http://127.0.0.1:{free_port()}")
    response = down.get("/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert down.get("/health").json() == {"status": "ok"}


def test_metrics_count_requests_pairs_and_statuses(connector_client: ClientFactory) -> None:
    client = connector_client(api_key="k")
    auth = {"Authorization": "Bearer k"}
    client.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS}, headers=auth)
    client.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS}, headers=auth)
    client.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS})
    client.post("/v2/rerank", content=b"{", headers=auth)
    client.get("/no/such/path")

    assert metric_value(client, "retrosearch_requests_total", route="/v1/rerank", status="200") == 2
    assert metric_value(client, "retrosearch_requests_total", route="/v1/rerank", status="401") == 1
    assert metric_value(client, "retrosearch_requests_total", route="/v2/rerank", status="422") == 1
    assert metric_value(client, "retrosearch_requests_total", route="unmatched", status="404") == 1
    assert metric_value(client, "retrosearch_request_duration_seconds_count", route="/v1/rerank") == 3
    assert metric_value(client, "retrosearch_documents_total") == 2 * len(DOCUMENTS)
    assert metric_value(client, "retrosearch_pairs_scored_total") == len(DOCUMENTS)
    assert metric_value(client, "retrosearch_cache_hits_total") == len(DOCUMENTS)
    assert metric_value(client, "retrosearch_backend_errors_total") == 0
    assert metric_value(client, "retrosearch_rerank_in_flight") == 0
    assert metric_value(client, "retrosearch_model_duration_seconds_count") == 2


def test_each_app_has_its_own_metrics(connector_client: ClientFactory) -> None:
    first, second = connector_client(), connector_client()
    rerank(first)
    assert metric_value(first, "retrosearch_pairs_scored_total") == len(DOCUMENTS)
    assert metric_value(second, "retrosearch_pairs_scored_total") == 0


def test_openapi_documents_routes_and_request_bodies(connector_client: ClientFactory) -> None:
    client = connector_client()
    schema = client.get("/openapi.json").json()

    assert {"/v1/rerank", "/v2/rerank", "/rerank", "/health", "/ready", "/metrics"} <= set(schema["paths"])
    body = schema["paths"]["/v1/rerank"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CohereRerankRequest"}
    request_schema = schema["components"]["schemas"]["CohereRerankRequest"]
    assert {"query", "documents", "top_n", "task", "return_explanations"} <= set(request_schema["properties"])
    assert "TaskOverride" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def _published(schema: dict[str, Any], model: str) -> Draft202012Validator:
    """A validator for `model` as the OpenAPI document publishes it (its $refs resolved in the document)."""
    return Draft202012Validator({**schema, "$ref": f"#/components/schemas/{model}"})


SCHEMA_CASES = [
    ("/v1/rerank", {"query": "q", "documents": ["a", {"text": "b", "id": 7}, {"text": "c", "id": "c"}]}),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "task": "biology"}),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "task": {"name": "leetcode", "doc_type": "code"}}),
    ("/rerank", {"query": "q", "texts": ["a"]}),
    ("/rerank", {"query": "q", "documents": ["a"], "texts": None}),
    ("/v1/rerank", {"query": " \t\u3000", "documents": ["a"]}),
    ("/v1/rerank", {"query": "q", "documents": []}),
    ("/v1/rerank", {"query": "q", "documents": [{"title": "no text"}]}),
    ("/v1/rerank", {"query": "q", "documents": [{"text": "a", "id": {"nested": 1}}]}),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "task": "no-such-preset"}),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "task": {"name": "no-such-preset"}}),
    ("/rerank", {"query": "q", "texts": ["a"], "documents": ["b"]}),
    ("/rerank", {"query": "q"}),
    ("/rerank", {"query": "q", "texts": []}),
    ("/v1/rerank", {"query": "q" * 21, "documents": ["a"]}),
    ("/v1/rerank", {"query": "q", "documents": ["a", "b", "c", "d"]}),
    ("/v1/rerank", {"query": "q", "documents": ["d" * 11]}),
    ("/v1/rerank", {"query": "q", "documents": [{"text": "d" * 11}]}),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "task": {"relevance_definition": "r" * 31}}),
]


@pytest.mark.parametrize(("path", "body"), SCHEMA_CASES)
def test_the_published_schema_accepts_exactly_what_the_server_accepts(
    connector_client: ClientFactory, path: str, body: dict[str, Any]
) -> None:
    # Issue 10: the schema was looser (blank query, empty lists, both or neither of documents and texts,
    # no limits), so clients generated from it sent requests the server refused.
    client = connector_client(
        max_query_chars=20, max_documents=3, max_document_chars=10, max_definition_chars=30
    )
    model = "AnyRerankRequest" if path == "/rerank" else "CohereRerankRequest"
    schema_accepts = _published(client.get("/openapi.json").json(), model).is_valid(body)

    response = client.post(path, json=body)

    assert schema_accepts == (response.status_code == 200), response.text


def test_the_schema_states_the_limits_and_what_metrics_answer(connector_client: ClientFactory) -> None:
    schema = connector_client(max_query_chars=20, max_documents=3).get("/openapi.json").json()
    request = schema["components"]["schemas"]["CohereRerankRequest"]["properties"]
    assert request["query"]["maxLength"] == 20
    assert request["documents"]["maxItems"] == 3 and request["documents"]["minItems"] == 1
    metrics = schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == [CONTENT_TYPE_LATEST]


# --- Logs -------------------------------------------------------------------------------------------


def test_logs_carry_ids_and_counts_but_no_text_and_no_secrets(
    connector_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = connector_client(api_key="key-that-must-not-leak", backend_api_key="backend-key-never-logged")
    query = "confidential-query-text"
    documents = ["confidential-document-one", "[[error:503]] confidential-document-two", "x" * 20]
    auth = {"Authorization": "Bearer key-that-must-not-leak"}

    ok = client.post("/v1/rerank", json={"query": query, "documents": documents}, headers=auth)
    client.post("/v1/rerank", json={"query": query, "documents": [*documents, 5]}, headers=auth)
    client.post("/v1/rerank", json={"query": query, "documents": documents})

    assert ok.json()["degraded"] is True
    assert ok.json()["id"] in caplog.text
    assert "3 documents" in caplog.text
    for secret in ("confidential", "key-that-must-not-leak", "backend-key-never-logged", "x" * 20):
        assert secret not in caplog.text
