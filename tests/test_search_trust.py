"""`retrosearch search` never looks reranked when it was not: a degraded or failed rerank is said with its
reason (table and JSON, exit 3), who scored comes from the connector that scored, the task is shown, and
explanations read as reasoning. Against the real OpenSearch 2.19 node (its search pipeline) and the
Elasticsearch nodes (client-side), with the scripted model server failing on cue."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import pytest
from opensearchpy import OpenSearch

from connector.background import BackgroundServer
from retrostar_search.engines.search import Explanation, Hit, RerankState, verify_pipeline_rerank
from retrostar_search.errors import ExitCode
from retrostar_search.tasks import DEFAULT_TASK, PRESETS
from tests.conftest import EngineNode, RestartableConnector
from tests.scripted_sglang import Failure, ScriptedSGLangServer
from tests.search_corpus import DOCUMENTS, index_documents, indexed, run_cli

RUN = uuid.uuid4().hex[:8]
NAME = f"rstrust-{RUN}"
LENIENT = f"{NAME}-lenient"
CPU = f"{NAME}-cpu"
INDEX = f"rstrust-docs-{RUN}"
PARTIAL_INDEX = f"rstrust-partial-{RUN}"
SIZE = len(DOCUMENTS)
# The score cache keys on the query: each test asks its own, so no score comes back from an earlier one.
QUERY = "why do leaves change colour in autumn"


def cli(*args: str) -> tuple[int, str]:
    return run_cli(*args, columns=240)


def flat(output: str) -> str:
    return " ".join(output.split())


def own_query() -> str:
    return f"{QUERY} {uuid.uuid4().hex[:6]}"


def setup_pipeline(opensearch_url: str, connector_url: str, name: str, *extra: str) -> None:
    code, output = cli(
        "setup", "opensearch", "--url", opensearch_url, "--connector-url", connector_url,
        "--name", name, "--pipeline", name, *extra,
    )  # fmt: skip
    assert code == 0, output


@pytest.fixture(scope="module")
def wired(
    opensearch_url: str, opensearch_client: OpenSearch, live_connector: RestartableConnector
) -> Iterator[str]:
    """The corpus indexed; pipeline NAME (and LENIENT, with ignore_failure) calling the live connector."""
    index_documents(opensearch_client, INDEX)
    setup_pipeline(opensearch_url, live_connector.url, NAME)
    setup_pipeline(opensearch_url, live_connector.url, LENIENT, "--ignore-failure")
    yield NAME
    for name in (NAME, LENIENT, CPU):
        cli("teardown", "opensearch", "--url", opensearch_url, "--name", name, "--pipeline", name)
    for index in (INDEX, PARTIAL_INDEX):
        opensearch_client.indices.delete(index=index, ignore_unavailable=True)


@pytest.fixture
def model_down(scripted_sglang_session: ScriptedSGLangServer) -> Iterator[None]:
    """Every generation request answered 503, /health too: the model server is down."""
    scripted_sglang_session.script(answers=lambda pair: Failure(503), status="unhealthy")
    yield
    scripted_sglang_session.reset()


def search_pipeline(opensearch_url: str, pipeline: str, query: str, *args: str) -> tuple[int, str]:
    return cli(
        "search", query, "--url", opensearch_url, "--index", INDEX, "--pipeline", pipeline,
        "--candidates", str(SIZE), "--top", "4", *args,
    )  # fmt: skip


def test_with_the_model_down_the_pipeline_search_says_nothing_was_reranked_and_why(
    opensearch_url: str, wired: str, model_down: None
) -> None:
    query = own_query()
    code, table = search_pipeline(opensearch_url, wired, query)
    assert code == ExitCode.INCOMPLETE, table
    text = flat(table)
    assert "NOT reranked (in the search pipeline): first-stage order" in text
    assert "reranked by Retro*" not in text
    assert "nothing was reranked: none of the 7 documents got a Retro* score" in text
    assert "the model backend failed (7 requests): sglang backend answered HTTP 503" in text
    # No column of 0.0 passed off as scores: an unscored hit shows "-".
    rows = [line for line in table.splitlines() if "→" in line and "BM25 →" not in line]
    assert len(rows) == 4 and all("0.0 " not in row and " - " in row for row in rows)

    code, output = search_pipeline(opensearch_url, wired, query, "--json")
    assert code == ExitCode.INCOMPLETE
    result = json.loads(output)
    assert result["degraded"] is True
    assert result["rerank"]["status"] == "none"
    assert (result["rerank"]["documents"], result["rerank"]["unscored"]) == (7, 7)
    assert "HTTP 503" in result["rerank"]["reason"] and result["rerank"]["request_id"]
    assert all(hit["retrostar_score"] is None for hit in result["reranked"])


def test_a_partly_scored_pipeline_rerank_names_the_unscored_hits(
    opensearch_url: str, opensearch_client: OpenSearch, wired: str
) -> None:
    documents = {
        **{doc_id: DOCUMENTS[doc_id] for doc_id in ("leaves-1", "pigments-3", "volcano-7")},
        "broken-9": ("Broken", "Autumn leaves change colour, says a failing page. [[error:503]]", 0),
    }
    index_documents(opensearch_client, PARTIAL_INDEX, documents)
    code, output = cli(
        "search", own_query(), "--url", opensearch_url, "--index", PARTIAL_INDEX, "--pipeline", wired,
        "--candidates", "4", "--top", "4", "--json",
    )  # fmt: skip
    assert code == ExitCode.INCOMPLETE, output
    result = json.loads(output)
    assert result["rerank"]["status"] == "partial"
    assert (result["rerank"]["documents"], result["rerank"]["unscored"]) == (4, 1)
    assert "HTTP 503" in result["rerank"]["reason"]
    scores = {hit["id"]: hit["retrostar_score"] for hit in result["reranked"]}
    assert scores["broken-9"] is None
    assert scores["volcano-7"] == pytest.approx(99, abs=1e-3)

    code, table = cli(
        "search", own_query(), "--url", opensearch_url, "--index", PARTIAL_INDEX, "--pipeline", wired,
        "--candidates", "4", "--top", "4",
    )  # fmt: skip
    assert "reranked only in part: 1 of 4 documents got no Retro* score" in flat(table)


def test_an_ignore_failure_pipeline_with_the_connector_down_is_not_taken_for_a_rerank(
    opensearch_url: str, wired: str, live_connector: RestartableConnector
) -> None:
    live_connector.stop()
    try:
        code, output = search_pipeline(opensearch_url, LENIENT, own_query(), "--json")
    finally:
        live_connector.start()
    assert code == ExitCode.INCOMPLETE, output
    result = json.loads(output)
    assert result["rerank"]["status"] == "none"
    assert "the pipeline answered the BM25 order and scores: its rerank failed" in result["rerank"]["reason"]
    assert "ignore_failure" in result["rerank"]["reason"]
    # BM25 scores are not shown as Retro* scores (they would have read 100 times the BM25 score).
    assert all(hit["retrostar_score"] is None for hit in result["reranked"])
    assert [hit["id"] for hit in result["reranked"]] == [hit["id"] for hit in result["first_stage"][:4]]


def test_who_scored_comes_from_the_connector_the_pipeline_calls(
    opensearch_url: str,
    wired: str,
    live_connector: RestartableConnector,
    connector_server: Callable[..., BackgroundServer],
) -> None:
    fallback = connector_server(backend="cpu")
    setup_pipeline(opensearch_url, fallback.url, CPU)

    # --connector-url names the Retro* connector, but the pipeline calls the CPU fallback.
    code, table = search_pipeline(opensearch_url, CPU, own_query(), "--connector-url", live_connector.url)
    assert code == 0, table
    assert "reranked by the CPU fallback (not Retro*) in the search pipeline" in flat(table)
    # And the other way round: the pipeline calls Retro*, --connector-url the fallback.
    code, table = search_pipeline(opensearch_url, wired, own_query(), "--connector-url", fallback.url)
    assert code == 0, table
    assert "reranked by Retro* in the search pipeline" in flat(table)

    code, output = search_pipeline(opensearch_url, CPU, own_query(), "--json")
    scorer = json.loads(output)["scorer"]
    assert (scorer["url"], scorer["backend"]) == (fallback.url, "cpu")


def test_the_pipeline_search_shows_the_connectors_task(
    opensearch_url: str, wired: str, live_connector: RestartableConnector
) -> None:
    code, table = search_pipeline(opensearch_url, wired, own_query())
    assert code == 0, table
    assert f"task default: {DEFAULT_TASK.relevance_definition}" in flat(table)
    code, output = search_pipeline(opensearch_url, wired, own_query(), "--json")
    assert json.loads(output)["task"]["name"] == "default"


# --- Client-side (Elasticsearch) ----------------------------------------------------------------------


ES_INDEX = f"rstrust-es-{RUN}"


@pytest.fixture(scope="module")
def es_index(es_node: EngineNode) -> Iterator[str]:
    yield from indexed(es_node.client, ES_INDEX)


def search_es(es_node: EngineNode, connector_url: str, query: str, *args: str) -> tuple[int, str]:
    return cli(
        "search", query, "--engine", "elasticsearch", "--url", es_node.url, "--index", ES_INDEX,
        "--connector-url", connector_url, "--candidates", str(SIZE), "--top", "3", *args,
    )  # fmt: skip


def test_a_client_side_rerank_with_the_model_down_is_said_plainly(
    es_node: EngineNode, es_index: str, live_connector: RestartableConnector, model_down: None
) -> None:
    query = own_query()
    code, table = search_es(es_node, live_connector.url, query)
    assert code == ExitCode.INCOMPLETE, table
    assert "NOT reranked (client-side): first-stage order" in flat(table)
    assert "nothing was reranked: none of the 7 documents got a Retro* score" in flat(table)

    code, output = search_es(es_node, live_connector.url, query, "--json")
    result = json.loads(output)
    assert code == ExitCode.INCOMPLETE
    assert result["degraded"] is True and result["rerank"]["status"] == "none"
    assert "HTTP 503" in result["rerank"]["reason"]


def test_the_task_a_client_side_rerank_was_judged_under_is_shown(
    es_node: EngineNode,
    es_index: str,
    live_connector: RestartableConnector,
    connector_server: Callable[..., BackgroundServer],
) -> None:
    code, table = search_es(es_node, live_connector.url, own_query(), "--task", "biology")
    assert code == 0, table
    assert f"task biology: {PRESETS['biology'].relevance_definition}" in flat(table)
    # Without --task, the connector's own (from its /ready).
    leetcode = connector_server(task="leetcode")
    code, output = search_es(es_node, leetcode.url, own_query(), "--json")
    assert json.loads(output)["task"] == PRESETS["leetcode"].model_dump()


def test_explanations_are_titled_read_as_reasoning_and_structured_in_json(
    es_node: EngineNode, es_index: str, live_connector: RestartableConnector
) -> None:
    code, output = search_es(es_node, live_connector.url, own_query(), "--explain")
    assert code == 0, output
    assert "#1 · Volcanoes (volcano-7) · Retro* 99.0" in output
    assert "sample 1 of 1 · score 99" in output
    assert "<score>" not in output and "</score>" not in output

    code, output = search_es(es_node, live_connector.url, own_query(), "--explain", "--json")
    explanation = json.loads(output)["reranked"][0]["explanation"]
    assert explanation["score"] == 99 and explanation["cached"] in (True, False)
    [sample] = explanation["samples"]
    # How the generation ended, when the connector says (null otherwise).
    assert sample["score"] == 99 and sample["finish_reason"] in ("stop", None)
    assert "Relevance Annotation" in sample["reasoning"] and "<score>" not in sample["reasoning"]


# --- What the pieces say, on their own ------------------------------------------------------------------


def hit(doc_id: str, bm25: float, score: float | None) -> Hit:
    return Hit(doc_id, 1, bm25, doc_id, "text", {"title": doc_id, "text": "text"}, 1, score)


def test_a_pipeline_rerank_that_cannot_be_confirmed_is_unverified_not_degraded() -> None:
    first_stage = [hit("a", 7.0, None), hit("b", 5.0, None)]
    reranked = [hit("b", 5.0, 90.0), hit("a", 7.0, 40.0)]
    status, unscored = verify_pipeline_rerank("q", first_stage, reranked, None, ("title", "text"))
    assert status.state is RerankState.UNVERIFIED and not status.degraded and unscored == set()
    assert status.describe() == "not verified with the connector: the pipeline's connector is not known"

    # Every score 0.0 is what a rerank that scored nothing looks like: said as such, as unconfirmed.
    zeros = [hit("a", 7.0, 0.0), hit("b", 5.0, 0.0)]
    status, unscored = verify_pipeline_rerank("q", first_stage, zeros, None, ("title", "text"))
    assert status.state is RerankState.NONE and status.verified is False and unscored == {"a", "b"}
    assert "every score is 0.0" in (status.reason or "")

    # The BM25 scores handed back as they were: the rerank failed, whatever the connector says.
    bm25 = [hit("a", 7.0, 700.0), hit("b", 5.0, 500.0)]
    status, _ = verify_pipeline_rerank("q", first_stage, bm25, None, ("title", "text"))
    assert status.state is RerankState.NONE and "BM25 order and scores" in (status.reason or "")


def test_an_explanation_shows_each_samples_score_and_how_it_ended_when_the_connector_says() -> None:
    explanation = Explanation.from_wire(
        {
            "score": 45.0,
            "cached": False,
            "samples": [
                {
                    "score": 90,
                    "parsed": True,
                    "text": "Good.\n<score>\n90\n</score>",
                    "finish_reason": "stop",
                },
                {
                    "score": None,
                    "parsed": False,
                    "text": "Cut off mid-",
                    "finish_reason": "length",
                    "truncated": True,
                },
            ],
        }
    )
    assert [sample.label for sample in explanation.samples] == ["score 90", "no score, length, truncated"]
    text = explanation.as_text()
    assert "sample 1 of 2 · score 90\nGood." in text and "<score>" not in text
    assert explanation.to_dict()["samples"][1] == {
        "score": None, "finish_reason": "length", "notes": ["truncated"], "reasoning": "Cut off mid-",
    }  # fmt: skip
    # Fields the connector does not send are left out, not guessed.
    older = Explanation.from_wire({"score": 70, "samples": [{"score": 70, "parsed": True, "text": "x"}]})
    assert older.samples[0].finish_reason is None and older.samples[0].label == "score 70"
