"""The shared score cache (--cache-url) on a real Redis server: replicas share scores, an outage costs no
rerank, entries expire, credentials stay out of logs and metrics."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from retrostar_search.cache import REDIS_KEY_PREFIX, RETRY_AFTER_SECONDS, cache_key
from tests.conftest import RedisServer
from tests.scripted_sglang import ScriptedSGLangServer
from tests.test_connector_api import metric_value

ClientFactory = Callable[..., TestClient]

DOCUMENTS = ["Chlorophyll breaks down in autumn.", "A recipe for pumpkin soup.", "Leaves fall in winter."]


def rerank(client: TestClient, query: str, documents: list[str] = DOCUMENTS) -> Any:
    response = client.post("/v1/rerank", json={"query": query, "documents": documents})
    assert response.status_code == 200, response.text
    return response.json()


def unique_query() -> str:
    # Cache keys hash the query: a query of its own keeps this test apart from every other on the server.
    return f"why do leaves change colour {uuid.uuid4().hex}"


def test_a_pair_scored_by_one_replica_is_a_hit_on_the_other(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer, redis_url: str
) -> None:
    first, second = connector_client(cache_url=redis_url), connector_client(cache_url=redis_url)
    query = unique_query()

    scored = rerank(first, query)
    shared = rerank(second, query)

    assert scored["meta"]["retrostar"]["pairs_scored"] == len(DOCUMENTS)
    assert shared["meta"]["retrostar"]["cache_hits"] == len(DOCUMENTS)
    assert shared["meta"]["retrostar"]["pairs_scored"] == 0
    assert len(scripted_sglang.stats.prompts) == len(DOCUMENTS)
    assert shared["results"] == scored["results"]
    assert metric_value(second, "retrosearch_cache_store_hits_total", store="redis") == len(DOCUMENTS)
    # The memory layer in front: the second replica's next lookup does not reach Redis.
    rerank(second, query)
    assert metric_value(second, "retrosearch_cache_store_hits_total", store="redis") == len(DOCUMENTS)


def test_entries_expire_after_the_ttl(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer, redis_url: str
) -> None:
    query = unique_query()
    client = connector_client(cache_url=redis_url, cache_ttl=600)
    rerank(client, query)
    settings = client.app.state.settings
    keys = [
        REDIS_KEY_PREFIX
        + cache_key(settings.model, settings.task_definition(), query, document, settings.samples)
        for document in DOCUMENTS
    ]
    ttls = [redis.Redis.from_url(redis_url).ttl(key) for key in keys]
    assert all(590 < ttl <= 600 for ttl in ttls), ttls

    short_lived = unique_query()
    rerank(connector_client(cache_url=redis_url, cache_ttl=1), short_lived)
    time.sleep(1.5)
    later = rerank(connector_client(cache_url=redis_url), short_lived)  # a replica with an empty memory

    assert later["meta"]["retrostar"]["cache_hits"] == 0
    assert later["meta"]["retrostar"]["pairs_scored"] == len(DOCUMENTS)


def test_reranks_go_on_while_redis_is_down_and_the_outage_is_logged_once(
    connector_client: ClientFactory,
    redis_server: Callable[..., RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_server(password="s3cret-redis-pw")
    client = connector_client(cache_url=server.url)
    rerank(client, unique_query())
    assert metric_value(client, "retrosearch_cache_errors_total", store="redis", operation="get") == 0

    server.stop()
    caplog.set_level(logging.INFO)
    answers = []
    for _ in range(3):
        answers.append(rerank(client, unique_query()))
        time.sleep(RETRY_AFTER_SECONDS / 2)

    assert all(not answer["degraded"] for answer in answers)
    assert all(answer["meta"]["retrostar"]["pairs_scored"] == len(DOCUMENTS) for answer in answers)
    errors = sum(
        metric_value(client, "retrosearch_cache_errors_total", store="redis", operation=operation)
        for operation in ("get", "put")
    )
    assert errors >= 2  # the first rerank's lookup and store, at least
    outage = [record for record in caplog.records if "failed" in record.getMessage()]
    assert len(outage) == 1
    assert f"Redis at redis://127.0.0.1:{server.port}/0" in outage[0].getMessage()

    server.start()
    time.sleep(RETRY_AFTER_SECONDS)
    query = unique_query()
    rerank(client, query)
    assert any("answers again" in record.getMessage() for record in caplog.records)
    assert redis.Redis.from_url(server.url).dbsize() == len(DOCUMENTS)  # written again once it answered
    assert "s3cret-redis-pw" not in caplog.text
    assert "s3cret-redis-pw" not in client.get("/metrics").text
