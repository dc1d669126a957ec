"""The rerank log wired into the connector: each rerank leaves an event and its document records in the
log index, the query only when asked, and a dead log engine costs the rerank nothing but a counted drop."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from connector.app import create_app
from connector.background import BackgroundServer, free_port
from connector.rerank_log.records import short_hash
from connector.settings import ENV_PREFIX, ConnectorSettings
from retrostar_search.cli import app as cli_app
from retrostar_search.engines.connection import Engine
from retrostar_search.engines.search import Candidate, ConnectorClient

QUERY = "why do leaves change colour in autumn"
# Scripted scores 20, 90, 55: the reranker reverses the first two and keeps the third in the middle.
TEXTS = [
    "Chlorophyll breaks down in autumn. [[retrostar:20]]",
    "Carotenoids show once the green fades. [[retrostar:90]]",
    "Trees shed leaves over winter. [[retrostar:55]]",
]
SettingsFactory = Callable[..., ConnectorSettings]


def _log_records(client: OpenSearch, prefix: str, request_id: str) -> list[dict[str, Any]]:
    client.indices.refresh(index=f"{prefix}-*")
    response = client.search(
        index=f"{prefix}-*", body={"query": {"term": {"request_id": request_id}}, "size": 100}
    )
    return [hit["_source"] for hit in response["hits"]["hits"]]


def _document_records(client: OpenSearch, prefix: str) -> list[dict[str, Any]]:
    client.indices.refresh(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
    response = client.search(
        index=f"{prefix}-*",
        body={"query": {"term": {"kind": "document"}}, "size": 100},
        ignore_unavailable=True,
    )
    return [hit["_source"] for hit in response["hits"]["hits"]]


@pytest.mark.parametrize(
    ("log_queries", "documents", "extra"),
    [
        # Ids from Cohere-style document objects; the second document has none.
        (False, [{"id": "chlorophyll", "text": TEXTS[0]}, TEXTS[1], {"id": "trees", "text": TEXTS[2]}], {}),
        # Ids beside plain strings.
        (True, TEXTS, {"document_ids": ["chlorophyll", None, "trees"]}),
    ],
    ids=["document-objects", "document-ids-and-query"],
)
def test_a_rerank_leaves_its_event_and_document_records_in_the_log(
    connector_settings: SettingsFactory,
    opensearch_url: str,
    opensearch_client: OpenSearch,
    opensearch_log_index: str,
    log_queries: bool,
    documents: list[Any],
    extra: dict[str, Any],
) -> None:
    settings = connector_settings(
        log_url=opensearch_url,
        log_index=opensearch_log_index,
        log_queries=log_queries,
        log_flush_interval=0.1,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        response = client.post(
            "/v1/rerank", json={"query": QUERY, "documents": documents, "task": "biology", **extra}
        )
        assert response.status_code == 200, response.text
        client.portal.call(app.state.service.rerank_log.flush)
        request_id = response.json()["id"]
        records = _log_records(opensearch_client, opensearch_log_index, request_id)

    [event] = [record for record in records if record["kind"] == "event"]
    assert event["task"] == "biology" and event["backend"] == "sglang"
    assert event["model"] == settings.model
    assert event["document_count"] == 3 and event["cache_hits"] == 0 and event["degraded"] is False
    assert 0 <= event["queue_ms"] <= event["total_ms"] and 0 < event["model_ms"] <= event["total_ms"]
    assert event["query_hash"] == short_hash(QUERY)
    assert ("query" in event) is log_queries
    if log_queries:
        assert event["query"] == QUERY

    by_rank = sorted(
        (record for record in records if record["kind"] == "document"), key=lambda r: r["new_rank"]
    )
    assert [(r["doc_id"], r["first_stage_rank"], r["new_rank"], r["score"]) for r in by_rank] == [
        (short_hash(TEXTS[1]), 2, 1, 90.0),
        ("trees", 3, 2, 55.0),
        ("chlorophyll", 1, 3, 20.0),
    ]
    assert [r["doc_id_hashed"] for r in by_rank] == [True, False, False]
    assert all(r["samples"] == [r["score"]] and r["unparsed_samples"] == 0 for r in by_rank)
    assert all("Relevance Annotation" in r["reasoning"] for r in by_rank)
    assert all(("query" in r) is log_queries for r in by_rank)


def test_the_search_clients_connector_client_labels_the_log_with_the_hits_ids(
    # Before connector_server: the server stops (writing its queued events) before the log is removed.
    opensearch_log_index: str,
    connector_server: Callable[..., BackgroundServer],
    opensearch_url: str,
    opensearch_client: OpenSearch,
) -> None:
    server = connector_server(log_url=opensearch_url, log_index=opensearch_log_index, log_flush_interval=0.05)
    with ConnectorClient(server.url) as connector:
        ids = ["chlorophyll", "carotenoids", "trees"]
        answer = connector.rerank(
            QUERY, [Candidate(text, doc_id) for text, doc_id in zip(TEXTS, ids, strict=True)]
        )

    assert [score.index for score in answer.scores] == [1, 2, 0]
    give_up_at = time.monotonic() + 20
    while len(documents := _document_records(opensearch_client, opensearch_log_index)) < len(TEXTS):
        assert time.monotonic() < give_up_at, documents
        time.sleep(0.1)
    assert {record["doc_id"] for record in documents} == {"chlorophyll", "carotenoids", "trees"}


def test_an_unreachable_log_engine_costs_the_rerank_nothing_and_the_drop_is_counted(
    connector_client: Callable[..., TestClient],
) -> None:
    client = connector_client(log_url=f"http://127.0.0.1:{free_port()}", log_flush_interval=0.05)

    response = client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS})

    assert response.status_code == 200
    assert [result["index"] for result in response.json()["results"]] == [1, 2, 0]
    dropped = re.compile(r'^retrosearch_rerank_log_dropped_total\{reason="engine_error"\} 1\.0$', re.M)
    give_up_at = time.monotonic() + 20
    while not dropped.search(metrics := client.get("/metrics").text):
        assert time.monotonic() < give_up_at, metrics
        time.sleep(0.1)
    assert "retrosearch_rerank_log_written_total 0.0" in metrics


def test_without_a_log_url_there_is_no_writer_and_no_log_metrics(
    connector_client: Callable[..., TestClient],
) -> None:
    client = connector_client()

    assert client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS}).status_code == 200
    assert client.app.state.service.rerank_log is None  # type: ignore[attr-defined]
    assert "retrosearch_rerank_log" not in client.get("/metrics").text


@pytest.mark.parametrize(
    "body",
    [
        {"query": QUERY, "documents": TEXTS, "document_ids": ["a", "b"]},
        {"query": QUERY, "texts": TEXTS, "document_ids": ["a", "b", "c", "d"]},
    ],
    ids=["cohere", "tei"],
)
def test_document_ids_must_name_every_document(
    connector_client: Callable[..., TestClient], body: dict[str, Any]
) -> None:
    response = connector_client().post("/rerank", json=body)

    assert response.status_code == 422
    assert "document_ids has" in response.json()["message"]


def test_serve_passes_the_log_and_explorer_options_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app))

    result = CliRunner().invoke(
        cli_app,
        [
            "serve",
            *("--log-url", "https://logs:9200", "--log-engine", "elasticsearch", "--log-index", "rerank"),
            *("--log-queries", "--no-log-reasoning", "--log-password", "s3cret"),
            *("--explore-url", "http://search:9200", "--explore-engine", "opensearch"),
        ],
    )

    assert result.exit_code == 0, result.output
    settings: ConnectorSettings = served["app"].state.settings
    assert settings.log_enabled and settings.log_engine is Engine.ELASTICSEARCH
    assert settings.log_index == "rerank" and settings.log_queries and not settings.log_reasoning
    assert settings.log_password is not None and settings.log_password.get_secret_value() == "s3cret"
    explore = settings.explorer_connection()
    assert (explore.engine, explore.url) == (Engine.OPENSEARCH, "http://search:9200")
