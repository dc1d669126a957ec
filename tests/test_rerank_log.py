"""The rerank log: record shapes, the writer's queue discipline, and real writes into both engines."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.rerank_log import (
    DocumentOutcome,
    RerankEvent,
    RerankLogSettings,
    RerankLogWriter,
    RetentionStatus,
    outcomes_from_ranking,
)
from connector.rerank_log import writer as writer_module
from connector.rerank_log.install import ilm_policy, ism_policy
from connector.rerank_log.metrics import RerankLogMetrics
from connector.rerank_log.records import REASONING_EXCERPT_CHARS, event_records, reasoning_excerpt, short_hash
from retrostar_search.backends.sglang_http import SGLangGenerateBackend
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.rerank_log.schema import (
    MAPPING_PROPERTIES,
    TEMPLATE_PRIORITY,
    daily_index,
    retention_policy_name,
    template_name,
)
from retrostar_search.reranker import Candidate, Reranker
from retrostar_search.scoring import Cascade
from tests.scripted_sglang import ScriptedSGLangServer

QUERY = "why do leaves change colour in autumn"


def make_event(request_id: str = "req-1", documents: int = 3, **overrides: Any) -> RerankEvent:
    outcomes = [
        DocumentOutcome(
            first_stage_rank=rank,
            new_rank=documents - rank + 1,  # the reranker reversed the list
            score=float(10 * rank),
            sample_scores=(10 * rank, None),
            reasoning=f"Document {rank} discusses chlorophyll. <score>{10 * rank}</score>",
            doc_id=f"doc-{rank}" if rank % 2 else None,
            text=f"text of document {rank}",
            cached=rank == 1,
        )
        for rank in range(1, documents + 1)
    ]
    fields: dict[str, Any] = {
        "request_id": request_id,
        "task": "biology",
        "model": "ljw13/retro-star-qwen3-14b-0928",
        "backend": "sglang",
        "query": QUERY,
        "documents": outcomes,
        "queue_ms": 1.5,
        "model_ms": 120.25,
        "total_ms": 123.0,
        "cache_hits": 1,
        "degraded": False,
    }
    return RerankEvent(**(fields | overrides))


def free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# Records (no engine)
# ------------------------------------------------------------------------------------------------


def test_event_record_summarises_the_request_without_the_query_by_default() -> None:
    event, *documents = event_records(make_event(), log_queries=False, log_reasoning=True)
    assert event["kind"] == "event"
    assert "query" not in event and all("query" not in record for record in documents)
    assert event["query_hash"] == short_hash(QUERY) == documents[0]["query_hash"]
    assert event["document_count"] == 3 and event["cache_hits"] == 1
    assert event["cache_hit_ratio"] == pytest.approx(1 / 3)
    assert (event["queue_ms"], event["model_ms"], event["total_ms"]) == (1.5, 120.25, 123.0)
    # Ranks 1,2,3 became 3,2,1: shifts 2,0,2.
    assert event["rank_shift_max"] == 2 and event["rank_shift_mean"] == pytest.approx(4 / 3)
    assert datetime.fromisoformat(event["@timestamp"]).tzinfo is not None


def test_query_text_is_stored_only_when_asked() -> None:
    records = event_records(make_event(), log_queries=True, log_reasoning=True)
    assert all(record["query"] == QUERY for record in records)


def test_document_records_carry_ranks_scores_samples_and_an_id() -> None:
    _, first, second, third = event_records(make_event(), log_queries=False, log_reasoning=True)
    assert first["kind"] == "document"
    assert (first["doc_id"], first["doc_id_hashed"]) == ("doc-1", False)
    # No caller id: a hash of the text, and the text itself is not stored.
    assert (second["doc_id"], second["doc_id_hashed"]) == (short_hash("text of document 2"), True)
    assert all("text of document" not in str(value) for value in second.values())
    assert (first["first_stage_rank"], first["new_rank"], first["rank_change"], first["rank_shift"]) == (
        1,
        3,
        -2,
        2,
    )
    assert third["rank_change"] == 2  # moved up
    assert first["samples"] == [10] and first["sample_count"] == 2 and first["unparsed_samples"] == 1
    assert first["cached"] is True and second["cached"] is False
    assert first["reasoning"] == "Document 1 discusses chlorophyll."


def test_reasoning_can_be_left_out() -> None:
    records = event_records(make_event(), log_queries=False, log_reasoning=False)
    assert all("reasoning" not in record for record in records)


def test_reasoning_excerpt_keeps_the_justification_before_the_score() -> None:
    trajectory = "Query analysis. " + "x" * 2000 + " Final justification. <score>70</score> trailing"
    excerpt = reasoning_excerpt(trajectory)
    assert len(excerpt) <= REASONING_EXCERPT_CHARS
    assert excerpt.startswith("…") and excerpt.endswith("Final justification.")
    assert reasoning_excerpt("short, no score tag") == "short, no score tag"


def test_every_record_field_is_in_the_mapping() -> None:
    records = event_records(make_event(), log_queries=True, log_reasoning=True)
    assert {name for record in records for name in record} <= set(MAPPING_PROPERTIES)


def test_daily_index_uses_the_utc_day() -> None:
    assert (
        daily_index("retrostar-log", datetime(2025, 3, 9, 23, 59, tzinfo=UTC)) == "retrostar-log-2025.03.09"
    )


async def test_outcomes_from_a_real_rerank_result() -> None:
    with ScriptedSGLangServer() as server:
        backend = SGLangGenerateBackend(server.url)
        candidates = [
            Candidate("a [[retrostar:20]]", "id-a"),
            Candidate("b [[retrostar:90]]"),
            Candidate("c [[retrostar:50]]", "id-c"),
        ]
        result = await Reranker(backend, cascade=Cascade.single(2)).rerank("q", candidates)
    outcomes = outcomes_from_ranking(result.ranking)
    assert [(o.first_stage_rank, o.new_rank, o.score) for o in outcomes] == [
        (2, 1, 90.0),
        (3, 2, 50.0),
        (1, 3, 20.0),
    ]
    assert [o.doc_id for o in outcomes] == [None, "id-c", "id-a"]
    assert outcomes[0].text == candidates[1].text and outcomes[0].sample_scores == (90, 90)
    assert outcomes[0].reasoning and "<score>" in outcomes[0].reasoning


# ------------------------------------------------------------------------------------------------
# Settings and policies (no engine)
# ------------------------------------------------------------------------------------------------


def test_settings_embed_into_the_connectors_environment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    class Embedding(RerankLogSettings, BaseSettings):
        model_config = SettingsConfigDict(env_prefix="RETROSEARCH_", extra="forbid")

    monkeypatch.setenv("RETROSEARCH_LOG_URL", "https://logs:9200")
    monkeypatch.setenv("RETROSEARCH_LOG_ENGINE", "elasticsearch")
    monkeypatch.setenv("RETROSEARCH_LOG_QUERIES", "true")
    monkeypatch.setenv("RETROSEARCH_LOG_PASSWORD", "s3cret")
    settings = Embedding(log_username="writer")
    assert settings.log_enabled and settings.log_queries
    connection = settings.log_connection()
    assert connection.engine is Engine.ELASTICSEARCH and connection.url == "https://logs:9200"
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(connection)


def test_log_is_off_without_a_url_and_rejects_bad_prefixes() -> None:
    assert not RerankLogSettings().log_enabled
    with pytest.raises(ValueError, match="log_index"):
        RerankLogSettings(log_index="Retro*Log")
    with pytest.raises(ValueError, match="log_url"):
        RerankLogWriter(RerankLogSettings())


def test_retention_policies_delete_after_the_configured_age() -> None:
    ism = ism_policy("retrostar-log", 30)["policy"]
    hot, delete = ism["states"]
    assert ism["default_state"] == "hot"
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "30d"}}]
    assert delete["actions"] == [{"delete": {}}]
    assert ism["ism_template"][0]["index_patterns"] == ["retrostar-log-*"]
    assert ilm_policy(7)["phases"]["delete"] == {"min_age": "7d", "actions": {"delete": {}}}


# ------------------------------------------------------------------------------------------------
# Writer behaviour that needs no working engine
# ------------------------------------------------------------------------------------------------


async def test_unreachable_engine_drops_and_counts_without_raising() -> None:
    settings = RerankLogSettings(
        log_url=f"http://127.0.0.1:{free_port()}", log_flush_interval=0.05, log_timeout=2
    )
    writer = RerankLogWriter(settings)
    await writer.start()
    assert all(writer.submit(make_event(f"r{i}")) for i in range(3))
    await writer.flush()
    counters = writer.counters()
    assert (counters.written, counters.dropped_engine_error, counters.dropped_queue_full) == (0, 3, 0)
    assert writer.install_report is not None and not writer.install_report.ok
    await writer.stop()
    # After stop nothing is accepted, and that is counted too.
    assert writer.submit(make_event()) is False
    assert writer.counters().dropped_queue_full == 1


def test_counters_export_as_prometheus_metrics() -> None:
    registry = CollectorRegistry()
    log_metrics = RerankLogMetrics(registry)
    writer = RerankLogWriter(
        RerankLogSettings(log_url=f"http://127.0.0.1:{free_port()}", log_queue_size=1),
        observer=log_metrics.observe,
    )
    assert (
        'retrosearch_rerank_log_dropped_total{reason="queue_full"} 0.0' in generate_latest(registry).decode()
    )
    writer.submit(make_event("kept"))
    writer.submit(make_event("dropped"))
    writer.submit(make_event("dropped too"))
    text = generate_latest(registry).decode()
    assert "retrosearch_rerank_log_written_total 0.0" in text
    assert 'retrosearch_rerank_log_dropped_total{reason="queue_full"} 2.0' in text
    assert 'retrosearch_rerank_log_dropped_total{reason="engine_error"} 0.0' in text
    assert "retrosearch_rerank_log_queued 1.0" in text
    log_metrics.unregister()
    assert "retrosearch_rerank_log" not in generate_latest(registry).decode()


class StalledEngine:
    """A TCP peer that accepts connections and never answers: an engine hung mid-request."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._server.close()
        for connection in self._held:
            connection.close()


async def test_a_hung_engine_never_slows_submit_and_overflow_is_counted() -> None:
    stalled = StalledEngine()
    try:
        settings = RerankLogSettings(
            log_url=stalled.url, log_queue_size=5, log_batch_size=1, log_flush_interval=0.01, log_timeout=1
        )
        writer = RerankLogWriter(settings)
        await writer.start()
        await asyncio.sleep(0.2)  # the writer is now blocked installing the template on the hung engine
        started = time.perf_counter()
        accepted = [writer.submit(make_event(f"r{i}")) for i in range(200)]
        elapsed = time.perf_counter() - started
        # A submit that waited on the engine would take log_timeout (1 s) each; 200 take microseconds.
        assert elapsed < 1.0, f"200 submits took {elapsed:.3f}s"
        assert accepted.count(True) == 5
        assert writer.counters().dropped_queue_full == 195
        await writer.stop(timeout=30)
        counters = writer.counters()
        assert counters.written == 0 and counters.dropped_engine_error == 5
    finally:
        stalled.close()


# ------------------------------------------------------------------------------------------------
# Real nodes
# ------------------------------------------------------------------------------------------------


@pytest.fixture(params=[Engine.OPENSEARCH, Engine.ELASTICSEARCH], ids=lambda engine: engine.value)
def engine_url(request: pytest.FixtureRequest) -> tuple[Engine, str]:
    engine: Engine = request.param
    url = request.getfixturevalue("opensearch_url" if engine is Engine.OPENSEARCH else "elasticsearch_url")
    return engine, url


@pytest.fixture
def log_prefix(engine_url: tuple[Engine, str]) -> Iterator[str]:
    """A prefix of this test's own, and afterwards its indices, template and policy removed by name."""
    engine, url = engine_url
    prefix = f"test-rerank-log-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = EngineConnection(engine=engine, url=url).client()
    # Elasticsearch refuses wildcard deletes by default: resolve the names first.
    for index in client.indices.get(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True):
        client.indices.delete(index=index)
    # The log's template, and any a test added beside it.
    if client.indices.exists_index_template(name=f"{prefix}*"):
        templates = client.indices.get_index_template(name=f"{prefix}*")["index_templates"]
        for template in templates:
            client.indices.delete_index_template(name=template["name"])
    _delete_policy_if_present(client, engine, retention_policy_name(prefix))
    client.close()


def _delete_policy_if_present(client: Any, engine: Engine, name: str) -> None:
    try:
        if engine is Engine.OPENSEARCH:
            client.index_management.delete_policy(policy=name)
        else:
            client.ilm.delete_lifecycle(name=name)
    except Exception:  # absent, or the node has no retention API at all
        return


def _settings(engine: Engine, url: str, prefix: str, **overrides: Any) -> RerankLogSettings:
    return RerankLogSettings(
        log_url=url, log_engine=engine, log_index=prefix, log_flush_interval=0.05, **overrides
    )


def _search(engine: Engine, url: str, prefix: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    client = EngineConnection(engine=engine, url=url).client()
    client.indices.refresh(index=f"{prefix}-*")
    response = client.search(index=f"{prefix}-*", body={"query": query, "size": 100})
    client.close()
    return [hit["_source"] for hit in response["hits"]["hits"]]


async def test_events_land_searchable_with_typed_fields(
    engine_url: tuple[Engine, str], log_prefix: str
) -> None:
    engine, url = engine_url
    writer = RerankLogWriter(_settings(engine, url, log_prefix))
    await writer.start()
    event = make_event("req-typed")
    assert writer.submit(event)
    await writer.flush()
    await writer.stop()
    assert writer.counters().written == 1

    events = _search(engine, url, log_prefix, {"term": {"kind": "event"}})
    documents = _search(engine, url, log_prefix, {"term": {"kind": "document"}})
    assert [e["request_id"] for e in events] == ["req-typed"]
    assert sorted(d["new_rank"] for d in documents) == [1, 2, 3]
    # Typed fields answer typed queries: a range over a float, a term on a boolean.
    assert _search(engine, url, log_prefix, {"range": {"total_ms": {"gte": 100}}})
    assert len(_search(engine, url, log_prefix, {"term": {"cached": True}})) == 1

    client = EngineConnection(engine=engine, url=url).client()
    index = daily_index(log_prefix, event.timestamp)
    properties = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    client.close()
    expected = {
        "@timestamp": "date",
        "request_id": "keyword",
        "task": "keyword",
        "model": "keyword",
        "backend": "keyword",
        "doc_id": "keyword",
        "total_ms": "float",
        "queue_ms": "float",
        "score": "float",
        "new_rank": "integer",
        "document_count": "integer",
        "degraded": "boolean",
        "reasoning": "text",
    }
    assert {name: properties[name]["type"] for name in expected} == expected
    assert properties["query"]["fields"]["keyword"]["type"] == "keyword"


@pytest.mark.parametrize("log_queries", [False, True])
async def test_query_text_reaches_the_engine_only_when_enabled(
    engine_url: tuple[Engine, str], log_prefix: str, log_queries: bool
) -> None:
    engine, url = engine_url
    writer = RerankLogWriter(_settings(engine, url, log_prefix, log_queries=log_queries))
    await writer.start()
    writer.submit(make_event("req-privacy"))
    await writer.stop()
    records = _search(engine, url, log_prefix, {"match_all": {}})
    assert len(records) == 4
    assert all(("query" in record) is log_queries for record in records)
    assert all(record["query_hash"] == short_hash(QUERY) for record in records)
    matches = _search(engine, url, log_prefix, {"match": {"query": "leaves autumn"}})
    assert len(matches) == (4 if log_queries else 0)


async def test_full_queue_drops_and_counts_then_writes_what_it_kept(
    engine_url: tuple[Engine, str], log_prefix: str
) -> None:
    engine, url = engine_url
    writer = RerankLogWriter(_settings(engine, url, log_prefix, log_queue_size=3))
    await writer.start()
    # No await between submits: the writer cannot drain, exactly as under a burst of requests.
    started = time.perf_counter()
    accepted = [writer.submit(make_event(f"burst-{i}")) for i in range(500)]
    assert time.perf_counter() - started < 0.2
    assert accepted.count(True) == 3
    assert writer.counters().dropped_queue_full == 497
    await writer.stop()
    assert writer.counters().written == 3
    events = _search(engine, url, log_prefix, {"term": {"kind": "event"}})
    assert sorted(e["request_id"] for e in events) == ["burst-0", "burst-1", "burst-2"]


@pytest.mark.parametrize(
    "bad_field",
    [
        {"total_ms": "slow"},  # serialises, but the engine rejects a string in a float field
        {"cache_hits": "many"},  # cannot even be serialised (it is divided by the document count)
    ],
    ids=["rejected-by-engine", "unserialisable"],
)
async def test_a_bad_event_drops_only_itself(
    engine_url: tuple[Engine, str], log_prefix: str, bad_field: dict[str, Any]
) -> None:
    engine, url = engine_url
    writer = RerankLogWriter(_settings(engine, url, log_prefix, log_batch_size=10))
    await writer.start()
    writer.submit(make_event("good-1"))
    writer.submit(make_event("bad", **bad_field))
    writer.submit(make_event("good-2"))
    await writer.stop()
    counters = writer.counters()
    assert (counters.written, counters.dropped_engine_error) == (2, 1)
    events = _search(engine, url, log_prefix, {"term": {"kind": "event"}})
    assert sorted(e["request_id"] for e in events) == ["good-1", "good-2"]


async def test_nothing_is_written_without_the_template_and_installation_is_retried(
    engine_url: tuple[Engine, str], log_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, url = engine_url
    monkeypatch.setattr(writer_module, "_INSTALL_RETRY_SECONDS", 0.2)
    client = EngineConnection(engine=engine, url=url).client()
    # Another template with the same priority over the same indices: both engines refuse ours.
    blocker = f"{log_prefix}-blocker"
    client.indices.put_index_template(
        name=blocker, body={"index_patterns": [f"{log_prefix}-*"], "priority": TEMPLATE_PRIORITY}
    )
    writer = RerankLogWriter(_settings(engine, url, log_prefix))
    await writer.start()
    writer.submit(make_event("while-blocked"))
    await writer.flush()
    assert writer.counters().dropped_engine_error == 1
    assert writer.install_report is not None and not writer.install_report.ok
    # Dropped rather than written into an index whose mapping the engine would have guessed.
    assert not client.indices.exists(index=f"{log_prefix}-*", allow_no_indices=False)

    client.indices.delete_index_template(name=blocker)
    await asyncio.sleep(0.3)
    writer.submit(make_event("after-fix"))
    await writer.stop()
    client.close()
    assert writer.counters().written == 1
    events = _search(engine, url, log_prefix, {"term": {"kind": "event"}})
    assert [e["request_id"] for e in events] == ["after-fix"]


async def test_template_is_installed_with_the_log_mapping(
    engine_url: tuple[Engine, str], log_prefix: str
) -> None:
    engine, url = engine_url
    writer = RerankLogWriter(_settings(engine, url, log_prefix))
    report = await writer.install()
    await writer.stop()
    assert report.ok
    client = EngineConnection(engine=engine, url=url).client()
    templates = client.indices.get_index_template(name=template_name(log_prefix))["index_templates"]
    client.close()
    template = templates[0]["index_template"]
    assert template["index_patterns"] == [f"{log_prefix}-*"]
    assert template["template"]["mappings"]["properties"]["@timestamp"] == {"type": "date"}
    assert template["template"]["mappings"]["properties"]["request_id"] == {"type": "keyword"}


def _retention_api_present(engine: Engine, url: str) -> bool:
    client = EngineConnection(engine=engine, url=url).client()
    try:
        if engine is Engine.OPENSEARCH:
            client.index_management.get_policy(policy="retrostar-probe-absent")
        else:
            client.ilm.get_lifecycle(name="retrostar-probe-absent")
    except Exception as error:
        return "no handler found" not in str(error)
    finally:
        client.close()
    return True


async def test_retention_policy_is_installed_where_the_engine_has_the_api(
    engine_url: tuple[Engine, str], log_prefix: str
) -> None:
    engine, url = engine_url
    if not _retention_api_present(engine, url):
        pytest.skip(f"this {engine.value} node has no ISM/ILM API (integ-test distribution)")
    writer = RerankLogWriter(_settings(engine, url, log_prefix, log_retention_days=12))
    first = await writer.install()
    second = await writer.install()  # re-running updates in place
    await writer.stop()
    assert first.retention is second.retention is RetentionStatus.INSTALLED
    client = EngineConnection(engine=engine, url=url).client()
    name = retention_policy_name(log_prefix)
    if engine is Engine.OPENSEARCH:
        policy = client.index_management.get_policy(policy=name)["policy"]
        assert policy["states"][0]["transitions"][0]["conditions"]["min_index_age"] == "12d"
    else:
        policy = client.ilm.get_lifecycle(name=name)[name]["policy"]
        assert policy["phases"]["delete"]["min_age"] == "12d"
        settings = client.indices.get_index_template(name=template_name(log_prefix))["index_templates"][0]
        assert settings["index_template"]["template"]["settings"]["index"]["lifecycle"]["name"] == name
    client.close()


async def test_without_a_retention_api_the_log_still_works_and_says_why(
    engine_url: tuple[Engine, str], log_prefix: str
) -> None:
    engine, url = engine_url
    if _retention_api_present(engine, url):
        pytest.skip(f"this {engine.value} node has a retention API")
    writer = RerankLogWriter(_settings(engine, url, log_prefix))
    await writer.start()
    writer.submit(make_event("no-retention"))
    await writer.stop()
    report = writer.install_report
    assert report is not None and report.ok and report.retention is RetentionStatus.UNSUPPORTED
    assert "ISM" in report.message or "ILM" in report.message
    assert writer.counters().written == 1
