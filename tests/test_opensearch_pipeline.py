"""`retrosearch setup opensearch` against the real local node: the connector (on a real uvicorn, in front
of the scripted SGLang server) reranks ordinary searches through the search pipeline."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch, TransportError

from connector.background import free_port
from retrostar_search.cli.connection import OPENSEARCH
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.engines.opensearch_ml import MLCommons
from retrostar_search.engines.opensearch_setup import (
    PRIVATE_IP_ENABLED,
    TRUSTED_ENDPOINTS,
    connector_name,
    is_private_endpoint,
    model_name,
    trusted_endpoint_regex,
)
from retrostar_search.engines.search import (
    ConnectorClient,
    document_text,
    pipeline_search_body,
    rerank_client_side,
    search_first_stage,
    search_through_pipeline,
)
from tests.conftest import RestartableConnector
from tests.scripted_sglang import ScriptedSGLangServer
from tests.search_corpus import DOCUMENTS, QUERY, expected_order, index_documents, run_cli, scripted_score

RUN = uuid.uuid4().hex[:8]
NAME = f"rstest-{RUN}"
INDEX = f"rstest-docs-{RUN}"
SLOW_INDEX = f"rstest-slow-{RUN}"
DEFAULT_INDEX = f"rstest-default-{RUN}"
SIZE = len(DOCUMENTS)
_PROMPT_DOCUMENT = re.compile(r"\[Begin of Document\]\n(.*)\n\[End of Document\]\n", re.DOTALL)
cli = run_cli


def setup_cli(opensearch_url: str, connector_url: str, *args: str) -> str:
    code, output = cli(
        "setup", "opensearch", "--url", opensearch_url, "--connector-url", connector_url, *args
    )
    assert code == 0, output
    return output


@pytest.fixture(scope="module")
def wired(
    opensearch_url: str, opensearch_client: OpenSearch, live_connector: RestartableConnector
) -> Iterator[str]:
    """The corpus indexed and the main wiring (connector, model, pipeline NAME) in place."""
    index_documents(opensearch_client, INDEX)
    output = setup_cli(opensearch_url, live_connector.url, "--name", NAME, "--pipeline", NAME)
    assert "smoke test: _predict scored 2 documents" in output
    assert "OpenSearch 2.19.1" in output  # setup reads the version and uses what it has
    # 2.19 cannot scope private access: the note says so, and that teardown takes it back.
    flat = " ".join(output.split())
    assert "private_ip_enabled is true" in flat and "cannot scope this (3.7 can)" in flat
    yield NAME
    # Whatever a failed test may have left: teardown of what is not there is a no-op.
    for name, pipeline in [
        (NAME, NAME),
        (NAME, f"{NAME}-lenient"),
        (f"{NAME}-slow", f"{NAME}-slow"),
        (f"{NAME}-td", f"{NAME}-td"),
        (f"{NAME}-down", f"{NAME}-down"),
    ]:
        cli("teardown", "opensearch", "--url", opensearch_url, "--name", name, "--pipeline", pipeline)
    for index in (INDEX, SLOW_INDEX, DEFAULT_INDEX):
        opensearch_client.indices.delete(index=index, ignore_unavailable=True)


def ids(hits: list) -> list[str]:
    return [hit.id for hit in hits]


def test_pipeline_orders_by_retrostar_scores_not_bm25(opensearch_client: OpenSearch, wired: str) -> None:
    first_stage = search_first_stage(opensearch_client, INDEX, QUERY, SIZE)
    reranked = search_through_pipeline(opensearch_client, INDEX, QUERY, SIZE, pipeline=wired)

    bm25_order = ids(first_stage)
    assert len(bm25_order) >= 5  # the query matches most of the corpus
    assert ids(reranked) == expected_order(bm25_order, bm25_order)
    assert ids(reranked) != bm25_order
    for hit in reranked:
        # `_score` is the connector's relevance_score: the Retro* score / 100 (a float32 in OpenSearch).
        assert hit.retrostar_score == pytest.approx(scripted_score(hit.id), abs=1e-3)


def test_raw_search_scores_are_retrostar_over_100(opensearch_client: OpenSearch, wired: str) -> None:
    response = opensearch_client.search(
        index=INDEX, body=pipeline_search_body(QUERY, size=SIZE), search_pipeline=wired
    )
    scores = {hit["_id"]: hit["_score"] for hit in response["hits"]["hits"]}
    assert scores == {doc_id: pytest.approx(scripted_score(doc_id) / 100, abs=1e-6) for doc_id in scores}


def test_client_side_rerank_scores_the_same_text_as_the_pipeline(
    opensearch_client: OpenSearch, wired: str, live_connector: RestartableConnector
) -> None:
    first_stage = search_first_stage(opensearch_client, INDEX, QUERY, SIZE)
    with ConnectorClient(live_connector.url) as connector:
        client_side = rerank_client_side(first_stage, QUERY, connector)
    through_pipeline = search_through_pipeline(opensearch_client, INDEX, QUERY, SIZE, pipeline=wired)
    assert ids(client_side) == ids(through_pipeline)
    assert [hit.retrostar_score for hit in client_side] == pytest.approx(
        [hit.retrostar_score for hit in through_pipeline], abs=1e-3
    )


def test_pipeline_sends_the_fields_concatenated_like_document_text(
    opensearch_client: OpenSearch, wired: str, scripted_sglang_session: ScriptedSGLangServer
) -> None:
    query = f"autumn leaves {uuid.uuid4().hex}"  # a query of its own: no score comes from the cache
    scripted_sglang_session.stats.reset()
    hits = search_through_pipeline(opensearch_client, INDEX, query, SIZE, pipeline=wired)
    seen = {_PROMPT_DOCUMENT.search(prompt).group(1) for prompt in scripted_sglang_session.stats.prompts}
    assert hits and seen == {document_text(hit.source) for hit in hits}
    assert "Why autumn leaves change colourLeaves change colour in autumn" in "".join(seen)


def test_predict_returns_one_float_per_document(opensearch_client: OpenSearch, wired: str) -> None:
    ml = MLCommons(opensearch_client)
    (model,) = ml.find_models(model_name(wired))
    documents = [DOCUMENTS[doc_id][1] for doc_id in ("leaves-1", "pigments-3", "volcano-7")]
    answer = ml.predict(model.id, {"query": QUERY, "documents": documents, "top_n": len(documents)})
    outputs = answer["inference_results"][0]["output"]
    assert [output["data"] for output in outputs] == [
        [pytest.approx(0.12)],
        [pytest.approx(0.91)],
        [pytest.approx(0.99)],
    ]
    assert all(isinstance(output["data"][0], float) for output in outputs)


def test_setup_changed_the_cluster_settings(
    opensearch_client: OpenSearch, wired: str, live_connector
) -> None:
    settings = opensearch_client.cluster.get_settings(flat_settings=True)["persistent"]
    assert trusted_endpoint_regex(live_connector.url) in settings[TRUSTED_ENDPOINTS]
    assert settings[PRIVATE_IP_ENABLED] == "true"


def test_search_command_through_the_pipeline_with_explanations(
    opensearch_url: str, wired: str, live_connector: RestartableConnector
) -> None:
    code, output = cli(
        "search", QUERY, "--index", INDEX, "--url", opensearch_url, "--pipeline", wired,
        "--connector-url", live_connector.url, "--candidates", str(SIZE), "--top", "3", "--explain", "--json",
    )  # fmt: skip
    assert code == 0, output
    result = json.loads(output)
    assert result["path"] == "pipeline"
    assert [hit["id"] for hit in result["reranked"]] == ["volcano-7", "pigments-3", "pigments-4"]
    assert [hit["retrostar_score"] for hit in result["reranked"]] == pytest.approx([99, 91, 77], abs=1e-3)
    for hit in result["reranked"]:
        (sample,) = hit["explanation"]["samples"]
        assert "Query Analysis" in sample["reasoning"] and "<score>" not in sample["reasoning"]
        assert sample["score"] == round(hit["retrostar_score"])
    assert result["degraded"] is False and result["rerank"]["status"] == "complete"
    assert len(result["first_stage"]) == SIZE


def test_setup_rerun_updates_without_duplicates(
    opensearch_url: str, opensearch_client: OpenSearch, wired: str, live_connector: RestartableConnector
) -> None:
    ml = MLCommons(opensearch_client)
    (model_before,) = ml.find_models(model_name(wired))
    output = setup_cli(opensearch_url, live_connector.url, "--name", wired, "--pipeline", wired)
    assert "updated connector" in output

    connectors = ml.find_connectors(connector_name(wired))
    models = ml.find_models(model_name(wired))
    assert len(connectors) == 1
    assert [model.id for model in models] == [model_before.id]
    assert models[0].source["connector_id"] == connectors[0].id
    assert len(ml.find_model_groups(model_name(wired))) == 1
    pipelines = opensearch_client.transport.perform_request("GET", "/_search/pipeline")
    assert [name for name in pipelines if name == wired] == [wired]
    processor = pipelines[wired]["response_processors"][0]["rerank"]
    assert processor["ml_opensearch"]["model_id"] == model_before.id
    trusted = opensearch_client.cluster.get_settings(flat_settings=True)["persistent"][TRUSTED_ENDPOINTS]
    assert trusted.count(trusted_endpoint_regex(live_connector.url)) == 1


def test_connector_down_fails_the_search_unless_ignore_failure(
    opensearch_url: str, opensearch_client: OpenSearch, wired: str, live_connector: RestartableConnector
) -> None:
    lenient = f"{wired}-lenient"
    setup_cli(opensearch_url, live_connector.url, "--name", wired, "--pipeline", lenient, "--ignore-failure")
    bm25 = search_first_stage(opensearch_client, INDEX, QUERY, SIZE)
    live_connector.stop()
    try:
        with pytest.raises(TransportError) as failure:
            search_through_pipeline(opensearch_client, INDEX, QUERY, SIZE, pipeline=wired)
        assert "remote" in str(failure.value).lower()

        fallback = search_through_pipeline(opensearch_client, INDEX, QUERY, SIZE, pipeline=lenient)
        assert ids(fallback) == ids(bm25)
        # Un-reranked: the BM25 scores come back, not Retro*'s.
        assert [hit.retrostar_score / 100 for hit in fallback] == pytest.approx(
            [hit.first_stage_score for hit in bm25], rel=1e-5
        )
    finally:
        live_connector.start()
    assert ids(search_through_pipeline(opensearch_client, INDEX, QUERY, SIZE, pipeline=wired)) != ids(bm25)


def test_connector_slower_than_read_timeout_fails_at_the_timeout(
    opensearch_url: str, opensearch_client: OpenSearch, wired: str, live_connector: RestartableConnector
) -> None:
    slow = f"{wired}-slow"
    slow_documents = {
        "slow-1": ("Slow leaves", "Autumn leaves, scored slowly. [[slow:8]] [[retrostar:40]]", 40),
        "fast-2": ("Fast leaves", "Autumn leaves, scored at once. [[retrostar:60]]", 60),
    }
    index_documents(opensearch_client, SLOW_INDEX, slow_documents)
    setup_cli(
        opensearch_url, live_connector.url, "--name", slow, "--pipeline", slow,
        "--read-timeout", "1", "--connection-timeout", "1",
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(TransportError) as failure:
        search_through_pipeline(opensearch_client, SLOW_INDEX, "autumn leaves", 2, pipeline=slow)
    elapsed = time.monotonic() - started
    assert "Read timed out" in str(failure.value)
    assert elapsed < 6  # read_timeout is in seconds: 1 s, well before the connector's 8 s answer


def test_default_pipeline_and_teardown(
    opensearch_url: str, opensearch_client: OpenSearch, wired: str, live_connector: RestartableConnector
) -> None:
    name = f"{wired}-td"
    index_documents(opensearch_client, DEFAULT_INDEX)
    output = setup_cli(
        opensearch_url, live_connector.url, "--name", name, "--pipeline", name, "--index", DEFAULT_INDEX,
        "--default-pipeline", "--no-smoke-test",
    )  # fmt: skip
    assert "searches through" in output
    # No ?search_pipeline: the index's default pipeline reranks.
    response = opensearch_client.search(index=DEFAULT_INDEX, body=pipeline_search_body(QUERY, size=SIZE))
    assert response["hits"]["hits"][0]["_id"] == "volcano-7"

    code, output = cli("teardown", "opensearch", "--url", opensearch_url, "--name", name, "--pipeline", name)
    assert code == 0, output
    ml = MLCommons(opensearch_client)
    assert ml.find_connectors(connector_name(name)) == []
    assert ml.find_models(model_name(name)) == []
    assert ml.find_model_groups(model_name(name)) == []
    assert ml.get_pipeline(name) is None
    settings = opensearch_client.indices.get_settings(index=DEFAULT_INDEX)
    assert "search" not in settings[DEFAULT_INDEX]["settings"]["index"]
    # The main wiring uses the same connector URL: its trusted entry stays.
    trusted = opensearch_client.cluster.get_settings(flat_settings=True)["persistent"][TRUSTED_ENDPOINTS]
    assert trusted_endpoint_regex(live_connector.url) in trusted
    assert search_first_stage(opensearch_client, DEFAULT_INDEX, QUERY, 3)  # plain search works again

    code, output = cli("teardown", "opensearch", "--url", opensearch_url, "--name", name, "--pipeline", name)
    assert code == 0 and "nothing to remove" in output


def test_setup_reports_opensearch_message_when_the_smoke_test_fails(opensearch_url: str, wired: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, output = cli(
        "setup", "opensearch", "--url", opensearch_url, "--connector-url", down,
        "--name", f"{wired}-down", "--pipeline", f"{wired}-down",
    )  # fmt: skip
    flat = " ".join(output.split())
    assert code == 1
    assert "setup failed: smoke test: predict failed: Error communicating with remote model" in flat


def test_dry_run_sends_nothing_and_masks_secrets(opensearch_url: str, opensearch_client: OpenSearch) -> None:
    name = f"{NAME}-dry"
    code, output = cli(
        "setup", "opensearch", "--url", opensearch_url, "--connector-url", "http://127.0.0.1:8000",
        "--connector-api-key", "connector-secret-1", "--username", "admin", "--password", "cluster-secret-2",
        "--name", name, "--pipeline", name, "--dry-run",
    )  # fmt: skip
    assert code == 0, output
    assert "POST /_plugins/_ml/connectors/_create" in output
    assert "PUT /_search/pipeline/" in output
    assert '"read_timeout": 30' in output  # the connector's 25 s deadline + 5
    assert '"max_retry_times": 0' in output
    assert "********" in output
    assert "connector-secret-1" not in output and "cluster-secret-2" not in output
    assert MLCommons(opensearch_client).find_connectors(connector_name(name)) == []


def test_setup_failure_reports_opensearch_message_without_secrets(opensearch_url: str) -> None:
    # An https URL to the plain-http node: the TLS handshake fails; the password must not be printed.
    https_url = opensearch_url.replace("http://", "https://")
    code, output = cli(
        "setup", "opensearch", "--url", https_url, "--connector-url", "http://127.0.0.1:8000",
        "--username", "admin", "--password", "cluster-secret-3", "--name", f"{NAME}-tls",
    )  # fmt: skip
    assert code == 1
    # Found before setup changes anything, and said as every command says it (tests/test_cli_errors.py).
    assert f"error: cannot reach {https_url}: TLS handshake failed" in " ".join(output.split())
    assert "cluster-secret-3" not in output


def test_secured_cluster_options_reach_the_transport(tmp_path: Path) -> None:
    ca_bundle = tmp_path / "ca.pem"
    ca_bundle.write_text("not read until a connection is made")
    connection = OPENSEARCH.connection(
        url="https://search.example:9200", username="admin", password="pw-4", ca_certs=ca_bundle
    )
    assert isinstance(connection, EngineConnection) and connection.engine is Engine.OPENSEARCH
    (node,) = connection.opensearch_client().transport.connection_pool.connections
    assert node.use_ssl and node.host == "https://search.example:9200"
    assert node.pool.ca_certs == str(ca_bundle)
    assert node.pool.cert_reqs == "CERT_REQUIRED"
    assert node.headers["authorization"].startswith("Basic ")
    assert "pw-4" not in repr(connection)

    with_key = OPENSEARCH.connection(url="https://search.example:9200", api_key="key-5")
    (node,) = with_key.opensearch_client().transport.connection_pool.connections
    assert node.headers["authorization"] == "ApiKey key-5"

    insecure = OPENSEARCH.connection(url="https://search.example:9200", insecure=True)
    (node,) = insecure.opensearch_client().transport.connection_pool.connections
    assert node.pool.cert_reqs == "CERT_NONE"


@pytest.mark.parametrize(
    ("base_url", "rerank_url", "trusted"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1/rerank", True),
        ("http://127.0.0.1:8000", "http://127.0.0.1:80001/v1/rerank", False),
        ("http://127.0.0.1:8000", "http://127x0x0x1:8000/v1/rerank", False),
        ("https://rerank.example/retrostar", "https://rerank.example/retrostar/v1/rerank", True),
        ("https://rerank.example/retrostar", "https://rerank.example/other/v1/rerank", False),
    ],
)
def test_trusted_endpoint_regex_matches_only_the_connector(
    base_url: str, rerank_url: str, trusted: bool
) -> None:
    assert bool(re.fullmatch(trusted_endpoint_regex(base_url), rerank_url)) is trusted


@pytest.mark.parametrize(
    ("url", "private"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://10.1.2.3:8000", True),
        ("http://192.168.0.7", True),
        ("http://[::1]:8000", True),
        ("https://8.8.8.8", False),
    ],
)
def test_private_endpoint_detection(url: str, private: bool) -> None:
    assert is_private_endpoint(url) is private


def test_pipeline_body_never_carries_the_2_19_traps() -> None:
    body = pipeline_search_body(QUERY, size=5)
    assert "track_total_hits" not in body and "_source" not in body
    assert body["ext"] == {"rerank": {"query_context": {"query_text": QUERY}}}
    with pytest.raises(ValueError, match="size"):
        pipeline_search_body(QUERY, size=0)
