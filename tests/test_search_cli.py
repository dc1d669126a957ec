"""`retrosearch search`: the table, the JSON and the failures, against the real local nodes (OpenSearch
2.19 and 3.5, Elasticsearch 8.19 and 9.2) and a real connector (the pipeline path's output is covered in test_opensearch_pipeline.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import EngineNode, RestartableConnector
from tests.search_corpus import DOCUMENTS, QUERY, indexed, run_cli

INDEX = f"rstest-cli-{uuid.uuid4().hex[:8]}"


def cli(*args: str) -> tuple[int, str]:
    return run_cli(*args, columns=220)


@pytest.fixture(scope="module")
def es_index(es_node: EngineNode) -> Iterator[str]:
    yield from indexed(es_node.client, INDEX)


@pytest.fixture(scope="module")
def os_index(os_node: EngineNode) -> Iterator[str]:
    yield from indexed(os_node.client, INDEX)


def search_es(url: str, connector: RestartableConnector, *args: str) -> tuple[int, str]:
    return cli(
        "search", QUERY, "--engine", "elasticsearch", "--url", url, "--index", INDEX,
        "--connector-url", connector.url, *args,
    )  # fmt: skip


def bm25_ranks(output: str) -> dict[str, int]:
    """The BM25 rank the JSON output gives each candidate."""
    return {hit["id"]: hit["first_stage_rank"] for hit in json.loads(output)["first_stage"]}


def test_table_shows_rank_before_and_after(
    es_node: EngineNode, es_index: str, live_connector: RestartableConnector
) -> None:
    code, as_json = search_es(es_node.url, live_connector, "--candidates", "7", "--top", "3", "--json")
    assert code == 0, as_json
    before = bm25_ranks(as_json)

    code, table = search_es(es_node.url, live_connector, "--candidates", "7", "--top", "3")
    assert code == 0, table
    assert (
        "BM25 → Retro*" in table and "(elasticsearch)" in table and "reranked by Retro* client-side" in table
    )
    rows = [line for line in table.splitlines() if "→" in line and "BM25 →" not in line]
    assert len(rows) == 3
    for new_rank, (row, doc_id, score) in enumerate(
        zip(rows, ["volcano-7", "pigments-3", "pigments-4"], ["99.0", "91.0", "77.0"], strict=True), start=1
    ):
        assert f"{before[doc_id]} → {new_rank}" in row
        assert doc_id in row and score in row and DOCUMENTS[doc_id][0] in row
    assert "left BM25's top 3" in table


def test_json_lists_candidates_and_kept_hits(
    es_node: EngineNode, es_index: str, live_connector: RestartableConnector
) -> None:
    code, output = search_es(es_node.url, live_connector, "--candidates", "4", "--top", "2", "--json")
    assert code == 0, output
    result = json.loads(output)
    assert result["query"] == QUERY and result["index"] == INDEX
    assert len(result["first_stage"]) == 4 and len(result["reranked"]) == 2
    kept = result["reranked"][0]
    assert set(kept) >= {"id", "rank", "first_stage_rank", "first_stage_score", "retrostar_score", "title"}
    assert kept["rank"] == 1 and kept["retrostar_score"] >= result["reranked"][1]["retrostar_score"]
    assert {hit["id"] for hit in result["reranked"]} <= {hit["id"] for hit in result["first_stage"]}


def test_explain_prints_the_reasoning(
    es_node: EngineNode, es_index: str, live_connector: RestartableConnector
) -> None:
    code, output = search_es(es_node.url, live_connector, "--candidates", "3", "--top", "2", "--explain")
    assert code == 0, output
    assert output.count("Query Analysis") == 2
    assert "#1 " in output and "#2 " in output


def test_opensearch_client_side(
    os_node: EngineNode, os_index: str, live_connector: RestartableConnector
) -> None:
    code, output = cli(
        "search", QUERY, "--url", os_node.url, "--index", os_index, "--client-side",
        "--connector-url", live_connector.url, "--candidates", "7", "--top", "1", "--json",
    )  # fmt: skip
    assert code == 0, output
    result = json.loads(output)
    assert result["engine"] == "opensearch" and result["path"] == "client-side"
    assert [hit["id"] for hit in result["reranked"]] == ["volcano-7"]


def test_top_above_candidates_is_a_usage_error(
    es_node: EngineNode, live_connector: RestartableConnector
) -> None:
    code, output = search_es(es_node.url, live_connector, "--candidates", "3", "--top", "5")
    assert code == 2
    assert "--top" in output


def test_missing_index_fails_cleanly(es_node: EngineNode, live_connector: RestartableConnector) -> None:
    code, output = cli(
        "search", QUERY, "--engine", "elasticsearch", "--url", es_node.url,
        "--index", f"{INDEX}-missing", "--connector-url", live_connector.url,
    )  # fmt: skip
    assert code == 1
    assert "search failed" in output and "no such index" in output


def test_connector_down_fails_cleanly(es_node: EngineNode, es_index: str) -> None:
    code, output = cli(
        "search", QUERY, "--engine", "elasticsearch", "--url", es_node.url, "--index", es_index,
        "--connector-url", "http://127.0.0.1:9",
    )  # fmt: skip
    assert code == 1
    # One line with the URL and what happened, then what to try; never the client's repr.
    flat = " ".join(output.split())
    assert "rerank failed: the connector: cannot reach http://127.0.0.1:9: connection refused" in flat
    assert "hint: is the connector running there (`retrosearch serve`)?" in flat
    assert "ConnectError" not in output and "Errno" not in output


def test_missing_pipeline_points_at_setup(
    os_node: EngineNode, os_index: str, live_connector: RestartableConnector
) -> None:
    code, output = cli(
        "search", QUERY, "--url", os_node.url, "--index", os_index, "--pipeline", "rstest-no-such-pipeline",
        "--connector-url", live_connector.url,
    )  # fmt: skip
    assert code == 1
    # OpenSearch 3.5 here has no neural-search plugin: the rerank extension itself is unknown there.
    hint = "--client-side" if os_node.key == "opensearch3" else "retrosearch setup opensearch"
    assert hint in " ".join(output.split())


def test_scores_from_the_cpu_fallback_are_labelled_as_not_retrostar(
    es_node: EngineNode, es_index: str, connector_server
) -> None:
    fallback = connector_server(backend="cpu")
    code, table = cli(
        "search", QUERY, "--engine", "elasticsearch", "--url", es_node.url, "--index", INDEX,
        "--connector-url", fallback.url, "--candidates", "5", "--top", "3",
    )  # fmt: skip
    assert code == 0, table
    assert "reranked by the CPU fallback (not Retro*) client-side" in table
