"""`retrosearch doctor` against the real nodes and a live connector: every link of the chain a search takes,
and what it says when one is broken (connector down, pipeline missing, model undeployed, backend down,
engine unreachable)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opensearchpy import OpenSearch

from connector.background import BackgroundServer, free_port
from retrostar_search.engines.opensearch_ml import MLCommons
from retrostar_search.engines.opensearch_setup import model_name
from retrostar_search.errors import ExitCode
from tests.conftest import EngineNode, RestartableConnector
from tests.scripted_sglang import ScriptedSGLangServer
from tests.search_corpus import index_documents, indexed, run_cli

RUN = uuid.uuid4().hex[:8]
PIPELINE = f"rsdoctor-{RUN}"
UNDEPLOYED = f"{PIPELINE}-undeployed"
INDEX = f"rsdoctor-docs-{RUN}"
PIPELINE_CHECKS = [
    "engine", "index", "plugins", "pipeline", "model", "connector URL", "engine → connector",
    "connector", "backend", "served model", "task",
]  # fmt: skip


def doctor(*args: str) -> tuple[int, dict[str, Any]]:
    code, output = run_cli("doctor", *args, "--json")
    return code, json.loads(output)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["check"]: check for check in report["checks"]}


@pytest.fixture(scope="module")
def wired(
    opensearch_url: str, opensearch_client: OpenSearch, live_connector: RestartableConnector
) -> Iterator[str]:
    index_documents(opensearch_client, INDEX)
    for pipeline in (PIPELINE, UNDEPLOYED):
        code, output = run_cli(
            "setup", "opensearch", "--url", opensearch_url, "--connector-url", live_connector.url,
            "--pipeline", pipeline, "--no-smoke-test",
        )  # fmt: skip
        assert code == 0, output
    yield PIPELINE
    for pipeline in (PIPELINE, UNDEPLOYED):
        run_cli("teardown", "opensearch", "--url", opensearch_url, "--pipeline", pipeline)
    opensearch_client.indices.delete(index=INDEX, ignore_unavailable=True)


def test_every_link_of_the_pipeline_path_answers(
    opensearch_url: str, wired: str, live_connector: RestartableConnector
) -> None:
    code, report = doctor("--url", opensearch_url, "--index", INDEX, "--pipeline", wired)
    assert code == 0, report
    assert report["ok"] is True and report["path"] == "pipeline"
    assert [check["check"] for check in report["checks"]] == PIPELINE_CHECKS
    assert {check["status"] for check in report["checks"]} == {"ok"}, report
    checks = by_name(report)
    assert "opensearch 2.19.1" in checks["engine"]["detail"]
    assert "holds 7 documents" in checks["index"]["detail"]
    assert checks["connector URL"]["detail"] == f"the model calls {live_connector.url}/v1/rerank"
    assert "sglang backend ready" in checks["backend"]["detail"]
    assert checks["served model"]["detail"] == "ljw13/retro-star-qwen3-14b-0928"
    assert checks["task"]["detail"].startswith("default: Given a query (query)")

    code, table = run_cli(
        "doctor", "--url", opensearch_url, "--index", INDEX, "--pipeline", wired, columns=220
    )
    assert code == 0 and "every link answered" in table


def test_a_connector_that_is_down_fails_from_the_engine_and_from_here(
    opensearch_url: str, wired: str, live_connector: RestartableConnector
) -> None:
    live_connector.stop()
    try:
        code, report = doctor("--url", opensearch_url, "--index", INDEX, "--pipeline", wired)
    finally:
        live_connector.start()
    assert code == ExitCode.FAILED and report["ok"] is False
    checks = by_name(report)
    assert checks["model"]["status"] == "ok"
    assert checks["engine → connector"]["status"] == "fail"
    assert live_connector.url in checks["engine → connector"]["detail"]
    assert checks["connector"]["status"] == "fail"
    assert (
        checks["connector"]["detail"]
        == f"cannot reach {live_connector.url}: connection refused: nothing listens there"
    )
    assert "retrosearch serve" in checks["connector"]["fix"]
    assert [checks[name]["status"] for name in ("backend", "served model", "task")] == ["skipped"] * 3


def test_a_missing_pipeline_says_how_to_create_it(opensearch_url: str, wired: str) -> None:
    code, report = doctor("--url", opensearch_url, "--index", INDEX, "--pipeline", "rsdoctor-no-such")
    assert code == ExitCode.FAILED
    checks = by_name(report)
    assert checks["pipeline"]["status"] == "fail"
    assert checks["pipeline"]["detail"] == "no search pipeline 'rsdoctor-no-such'"
    assert "retrosearch setup opensearch --pipeline rsdoctor-no-such" in checks["pipeline"]["fix"]
    assert checks["model"]["status"] == checks["task"]["status"] == "skipped"


def test_an_undeployed_model_is_named_with_how_to_deploy_it(
    opensearch_url: str, opensearch_client: OpenSearch, wired: str
) -> None:
    ml = MLCommons(opensearch_client)
    (model,) = ml.find_models(model_name(UNDEPLOYED))
    ml.undeploy_model(model.id)
    give_up_at = time.monotonic() + 30
    while ml.model_state(model.id) == "DEPLOYED":
        assert time.monotonic() < give_up_at
        time.sleep(0.2)

    code, report = doctor("--url", opensearch_url, "--index", INDEX, "--pipeline", UNDEPLOYED)
    assert code == ExitCode.FAILED
    checks = by_name(report)
    assert checks["model"]["status"] == "fail"
    assert f"{model.id} is" in checks["model"]["detail"] and "not DEPLOYED" in checks["model"]["detail"]
    assert f"POST /_plugins/_ml/models/{model.id}/_deploy" in checks["model"]["fix"]


def test_a_backend_that_is_down_fails_but_the_model_and_task_are_still_told(
    opensearch_url: str, wired: str, scripted_sglang_session: ScriptedSGLangServer
) -> None:
    scripted_sglang_session.script(status="unhealthy")
    try:
        code, report = doctor("--url", opensearch_url, "--index", INDEX, "--pipeline", wired)
    finally:
        scripted_sglang_session.reset()
    assert code == ExitCode.FAILED
    checks = by_name(report)
    assert checks["backend"]["status"] == "fail"
    assert checks["backend"]["detail"] == "the sglang backend is not reachable"
    assert checks["served model"]["status"] == checks["task"]["status"] == "ok"


def test_an_engine_that_does_not_answer_says_where_and_what_to_try() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, report = doctor("--url", url, "--index", INDEX)
    assert code == ExitCode.FAILED
    engine = by_name(report)["engine"]
    assert engine["detail"] == f"cannot reach {url}: connection refused: nothing listens there"
    assert "retrosearch node status" in engine["fix"]


@pytest.fixture(scope="module")
def es_index(es_node: EngineNode) -> Iterator[str]:
    yield from indexed(es_node.client, INDEX)


def test_the_client_side_path_on_elasticsearch(
    es_node: EngineNode,
    es_index: str,
    live_connector: RestartableConnector,
    connector_server: Callable[..., BackgroundServer],
) -> None:
    args = ["--engine", "elasticsearch", "--url", es_node.url, "--index", es_index]
    code, report = doctor(*args, "--connector-url", live_connector.url)
    assert code == 0, report
    assert report["path"] == "client-side"
    assert [check["check"] for check in report["checks"]] == [
        "engine", "index", "connector", "backend", "served model", "task",
    ]  # fmt: skip
    assert {check["status"] for check in report["checks"]} == {"ok"}, report

    # The CPU fallback answers, but it is not Retro*: a warning, not a failure.
    fallback = connector_server(backend="cpu")
    code, report = doctor(*args, "--connector-url", fallback.url)
    assert code == 0
    model = by_name(report)["served model"]
    assert model["status"] == "warn" and "NOT Retro*" in model["detail"]

    code, report = doctor(*args, "--connector-url", f"http://127.0.0.1:{free_port()}")
    assert code == ExitCode.FAILED
    assert by_name(report)["connector"]["status"] == "fail"
