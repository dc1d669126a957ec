"""Elasticsearch: client-side rerank against the real local nodes (8.19 and 9.2, Basic licence), the
`custom` rerank inference endpoint's JSON checked against Elasticsearch's template rules, and the licence
error path."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from retrostar_search.engines.connection import Engine
from retrostar_search.engines.elasticsearch_setup import (
    RETRIEVER_REQUEST_VALUES,
    InferenceWiring,
    custom_service_problem,
    inference_endpoint_body,
    retriever_example,
    retriever_score,
    template_violations,
)
from retrostar_search.engines.search import ConnectorClient, search_and_rerank, search_first_stage
from retrostar_search.errors import ExitCode
from tests.conftest import EngineNode, RestartableConnector
from tests.search_corpus import (
    DOCUMENTS,
    QUERY,
    expected_order,
    indexed,
    run_cli,
    scripted_score,
)

INDEX = f"rstest-es-{uuid.uuid4().hex[:8]}"
SIZE = len(DOCUMENTS)
cli = run_cli


@pytest.fixture(scope="module")
def es_index(es_node: EngineNode) -> Iterator[str]:
    yield from indexed(es_node.client, INDEX)


def test_client_side_rerank_on_elasticsearch(
    es_node: EngineNode, es_index: str, live_connector: RestartableConnector
) -> None:
    with ConnectorClient(live_connector.url) as connector:
        outcome = search_and_rerank(
            es_node.client, Engine.ELASTICSEARCH, es_index, QUERY, connector, candidates=SIZE, top=4
        )
    bm25_order = [hit.id for hit in outcome.first_stage]
    assert outcome.path == "client-side"
    assert [hit.id for hit in outcome.reranked] == expected_order(bm25_order, bm25_order)[:4]
    assert [hit.id for hit in outcome.reranked] != bm25_order[:4]
    for rank, hit in enumerate(outcome.reranked, start=1):
        assert hit.rank == rank
        assert hit.retrostar_score == pytest.approx(scripted_score(hit.id))
        assert bm25_order[hit.first_stage_rank - 1] == hit.id
        assert hit.title == DOCUMENTS[hit.id][0]


def test_client_side_rerank_explains(
    es_node: EngineNode, es_index: str, live_connector: RestartableConnector
) -> None:
    with ConnectorClient(live_connector.url) as connector:
        outcome = search_and_rerank(
            es_node.client, Engine.ELASTICSEARCH, es_index, QUERY, connector, candidates=3, top=2,
            explain=True,
        )  # fmt: skip
    for hit in outcome.reranked:
        assert hit.explanation is not None and hit.explanation.score == pytest.approx(hit.retrostar_score)
        (sample,) = hit.explanation.samples
        assert "Relevance Annotation" in sample.reasoning and "<score>" not in sample.reasoning


def test_search_command_on_elasticsearch(
    es_node: EngineNode, es_index: str, live_connector: RestartableConnector
) -> None:
    code, output = cli(
        "search", QUERY, "--engine", "elasticsearch", "--url", es_node.url, "--index", es_index,
        "--connector-url", live_connector.url, "--candidates", "5", "--top", "2", "--json",
    )  # fmt: skip
    assert code == 0, output
    result = json.loads(output)
    assert result["engine"] == "elasticsearch" and result["path"] == "client-side"
    first_five = [hit["id"] for hit in result["first_stage"]]
    assert len(first_five) == 5
    assert [hit["id"] for hit in result["reranked"]] == expected_order(first_five, first_five)[:2]


def test_first_stage_is_bm25_over_title_and_text(es_node: EngineNode, es_index: str) -> None:
    hits = search_first_stage(es_node.client, es_index, "carotenoids", 3)
    assert [hit.id for hit in hits] == ["pigments-3"]  # the word is only in that title
    assert hits[0].first_stage_rank == 1 and hits[0].first_stage_score > 0


# --- the inference endpoint --------------------------------------------------------------------------


def endpoint(api_key: str | None = "connector-key-6") -> dict[str, Any]:
    wiring = InferenceWiring(
        "http://127.0.0.1:8000/", connector_api_key=SecretStr(api_key) if api_key else None
    )
    return inference_endpoint_body(wiring)


def test_endpoint_body_follows_the_custom_service_rules() -> None:
    body = endpoint()
    assert template_violations(body) == []
    settings = body["service_settings"]
    assert settings["url"] == "http://127.0.0.1:8000/v1/rerank"
    assert settings["headers"]["Authorization"] == "Bearer ${api_key}"
    assert settings["secret_parameters"] == {"api_key": "connector-key-6"}
    assert settings["response"]["json_parser"] == {
        "relevance_score": "$.results[*].relevance_score",
        "reranked_index": "$.results[*].index",
    }
    # Rendered as Elasticsearch renders it (JSON values, no quotes added), the request is the connector's
    # Cohere shape with every document and no top_n.
    rendered = re.sub(
        r"\$\{(\w+)\}",
        lambda m: {"query": json.dumps('say "hi"\n'), "input": json.dumps(["a", "b"])}[m.group(1)],
        settings["request"],
    )
    assert json.loads(rendered) == {"query": 'say "hi"\n', "documents": ["a", "b"]}


def test_endpoint_without_api_key_still_resolves_the_header() -> None:
    body = endpoint(api_key=None)
    assert template_violations(body) == []
    assert body["service_settings"]["secret_parameters"]["api_key"]


def _broken(change: Any) -> dict[str, Any]:
    body = copy.deepcopy(endpoint())
    change(body["service_settings"])
    return body


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.update(request='{"query": "${query}", "documents": ${input}}'), "surrounded by quotes"),
        (
            lambda s: s.update(request='{"query": ${query}, "documents": ${input}, "top_n": ${top_n}}'),
            "top_n",
        ),
        (lambda s: s["headers"].update(Query="${query}"), "headers.Query"),
        (lambda s: s.update(url="http://127.0.0.1:8000/${path}"), "url"),
        (lambda s: s["response"]["json_parser"].pop("relevance_score"), "relevance_score is required"),
        (lambda s: s["response"]["json_parser"].update(score="$.x"), "json_parser key 'score'"),
        (lambda s: s.update(timeout=30), "unknown service_settings key 'timeout'"),
        (lambda s: s.update(request={"query": "${query}"}), "request must be a string"),
        (lambda s: s.update(request='{"query": ${query} "documents": ${input}}'), "does not render to JSON"),
    ],
)
def test_template_rules_catch_what_elasticsearch_refuses(change: Any, expected: str) -> None:
    problems = template_violations(_broken(change))
    assert any(expected in problem for problem in problems), problems


def test_retriever_example_reranks_bm25_through_the_endpoint() -> None:
    retriever = retriever_example("retrostar", QUERY, field="text", rank_window_size=30)["retriever"]
    reranker = retriever["text_similarity_reranker"]
    assert reranker["inference_id"] == "retrostar" and reranker["inference_text"] == QUERY
    assert reranker["field"] == "text" and reranker["rank_window_size"] == 30
    assert reranker["retriever"]["standard"]["query"]["multi_match"]["query"] == QUERY
    assert set(RETRIEVER_REQUEST_VALUES) == {"query", "input"}


@pytest.mark.parametrize(
    ("version", "has_it"),
    [("8.18.3", False), ("8.19.0", True), ("8.19.7", True), ("9.0.0", False), ("9.0.8", False),
     ("9.1.0", True), ("9.2.0", True), ("9.5.6", True)],
)  # fmt: skip
def test_the_custom_service_exists_from_8_19_and_9_1(version: str, has_it: bool) -> None:
    problem = custom_service_problem(version)
    assert (problem is None) is has_it
    if problem:
        assert version in problem and "8.19 and 9.1" in problem and "client-side" in problem


def test_retriever_rescales_the_connector_scores_keeping_their_order() -> None:
    # max(s, 0) + min(exp(s), 1): Retro* / 100 in [0, 1] comes back as 1 + s.
    assert [retriever_score(s) for s in (0.0, 0.12, 0.91, 1.0)] == pytest.approx([1.0, 1.12, 1.91, 2.0])
    assert 0 < retriever_score(-2.0) < retriever_score(-0.5) < 1


# --- against the real Basic-licence nodes -------------------------------------------------------------


def test_setup_on_basic_licence_explains_and_fails(es_node: EngineNode) -> None:
    code, output = cli(
        "setup", "elasticsearch", "--url", es_node.url, "--connector-url", "http://127.0.0.1:8000",
        "--connector-api-key", "connector-key-7",
    )  # fmt: skip
    flat = " ".join(output.split())
    assert code == ExitCode.UNAVAILABLE, output
    assert "'basic' licence" in flat
    assert "Enterprise" in flat and "trial" in flat
    assert "retrosearch search" in flat and "--engine elasticsearch" in flat
    assert "connector-key-7" not in output


def test_teardown_on_a_node_without_the_inference_api(es_node: EngineNode) -> None:
    # The local nodes (integ-test distributions) have no inference plugin: Elasticsearch's own answer is
    # "no handler found", which the command turns into advice.
    code, output = cli("teardown", "elasticsearch", "--url", es_node.url)
    assert code == ExitCode.UNAVAILABLE
    assert "no inference API" in " ".join(output.split())


def test_setup_dry_run_masks_the_key(elasticsearch_url: str) -> None:
    code, output = cli(
        "setup", "elasticsearch", "--url", elasticsearch_url, "--connector-url", "http://127.0.0.1:8000",
        "--connector-api-key", "connector-key-8", "--dry-run",
    )  # fmt: skip
    assert code == 0, output
    assert "PUT /_inference/rerank/retrostar" in output
    assert "text_similarity_reranker" in output
    assert "connector-key-8" not in output and "********" in output
