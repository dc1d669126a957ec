"""`retrosearch doctor`: the chain a reranked search takes, checked link by link, each failure with what to
do about it.

OpenSearch through its search pipeline: engine → index and mapping → the ML Commons and neural-search
plugins → pipeline and its rerank processor → model (deployed) → its connector's URL → the engine calling
that connector (a `_predict`) → the connector from here → its backend → the served model → the task.
Elasticsearch, or OpenSearch with --client-side: engine → index → the connector given → backend → model →
task. A link that fails leaves the links after it unchecked ("skipped"), naming what they need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from retrostar_search.engines.connection import Engine
from retrostar_search.engines.connector_client import ConnectorClient, ConnectorReadiness
from retrostar_search.engines.errors import describe_failure, engine_errors, explain_engine_error
from retrostar_search.engines.opensearch_ml import MLCommons, MLCommonsError
from retrostar_search.engines.opensearch_setup import REQUIRED_PLUGINS, predict_scores, smoke_parameters
from retrostar_search.engines.pipeline_wiring import PipelineWiring, PipelineWiringError, read_pipeline_wiring
from retrostar_search.engines.versions import version_tuple
from retrostar_search.errors import EngineError


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but not as one would expect (the CPU fallback scores, a field is unmapped)
    FAIL = "fail"
    SKIPPED = "skipped"  # an earlier link failed


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status.value, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Diagnosis:
    path: str  # "pipeline" or "client-side"
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return not any(check.status is Status.FAIL for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "path": self.path, "checks": [check.to_dict() for check in self.checks]}


@dataclass
class _Chain:
    """Checks in order; once one fails, the rest are recorded as skipped."""

    checks: list[Check]
    broken_at: str | None = None

    def run(self, name: str, check: Callable[[], Check], *, breaks: bool = True) -> None:
        """Run `check` unless an earlier link broke; `breaks`: whether its failure stops the rest."""
        if self.broken_at is not None:
            self.checks.append(Check(name, Status.SKIPPED, f"needs {self.broken_at}"))
            return
        result = check()
        self.checks.append(result)
        if result.status is Status.FAIL and breaks:
            self.broken_at = name

    def skip(self, *names: str) -> None:
        for name in names:
            self.checks.append(Check(name, Status.SKIPPED, f"needs {self.broken_at}"))


def diagnose(
    client: Any,
    engine: Engine,
    engine_url: str,
    *,
    index: str | None,
    fields: Sequence[str],
    pipeline: str,
    client_side: bool,
    connector: ConnectorClient,
) -> Diagnosis:
    """Every link of the chain, in order. `connector` is the client-side path's connector (and carries the
    key and timeout for the pipeline's own); `engine_url` is shown without credentials."""
    path = "pipeline" if engine is Engine.OPENSEARCH and not client_side else "client-side"
    chain = _Chain([])
    chain.run("engine", lambda: _engine(client, engine, engine_url))
    if index is not None:
        # A missing index fails every search, but says nothing about the rerank links: they are checked.
        chain.run("index", lambda: _index(client, index, fields), breaks=False)
    else:
        chain.checks.append(Check("index", Status.SKIPPED, "no --index given"))
    if path == "client-side":
        _connector_checks(chain, connector, "the connector given by --connector-url")
        return Diagnosis(path, chain.checks)
    ml = MLCommons(client)
    chain.run("plugins", lambda: _plugins(ml))
    wiring: list[PipelineWiring] = []
    chain.run("pipeline", lambda: _pipeline(ml, pipeline, fields, wiring))
    if chain.broken_at is None:
        found = wiring[0]
        chain.run("model", lambda: _model(found, pipeline))
        chain.run(
            "connector URL", lambda: Check("connector URL", Status.OK, f"the model calls {found.rerank_url}")
        )
        # Failing from the engine and answering from here tells a wrong URL from a connector that is down.
        chain.run("engine → connector", lambda: _engine_calls_connector(ml, found), breaks=False)
        with connector.at(found.connector_url) as own:
            _connector_checks(chain, own, "the URL the pipeline's model calls, checked from this machine")
    else:
        chain.skip("model", "connector URL", "engine → connector", *_CONNECTOR_CHECKS)
    return Diagnosis(path, chain.checks)


_CONNECTOR_CHECKS = ("connector", "backend", "served model", "task")


def _connector_checks(chain: _Chain, connector: ConnectorClient, whose: str) -> None:
    readiness: list[ConnectorReadiness] = []

    def reachable() -> Check:
        ready = connector.readiness()
        readiness.append(ready)
        if not ready.reachable or (ready.problem and ready.backend is None):
            return Check("connector", Status.FAIL, ready.problem or "no answer", ready.hint)
        return Check("connector", Status.OK, f"answers at {connector.base_url} ({whose})")

    chain.run("connector", reachable)
    # The connector reports its model and task whether or not its backend answers.
    chain.run("backend", lambda: _backend(readiness[0]), breaks=False)
    chain.run("served model", lambda: _served_model(readiness[0]))
    chain.run("task", lambda: _task(readiness[0]))


def _engine(client: Any, engine: Engine, url: str) -> Check:
    try:
        nodes = _body(client.nodes.info(filter_path="nodes.*.version"))
    except engine_errors() as error:
        failure = describe_failure(error, url)
        return Check("engine", Status.FAIL, failure.message, failure.hint)
    versions = [node["version"] for node in (nodes.get("nodes") or {}).values()]
    version = min(versions, key=version_tuple) if versions else "unknown"
    return Check("engine", Status.OK, f"{engine.value} {version} at {url}, {len(versions)} node(s)")


def _index(client: Any, index: str, fields: Sequence[str]) -> Check:
    try:
        exists = bool(client.indices.exists(index=index))
        if not exists:
            return Check(
                "index",
                Status.FAIL,
                f"no index {index!r}",
                f"index a corpus into it: retrosearch index PATH --index {index}",
            )
        count = int(_body(client.count(index=index))["count"])
        mappings = [
            entry.get("mappings", {}) for entry in _body(client.indices.get_mapping(index=index)).values()
        ]
    except engine_errors() as error:
        return Check("index", Status.FAIL, f"reading {index!r} failed: {explain_engine_error(error)}")
    properties: dict[str, Any] = {}
    for mapping in mappings:
        properties.update(mapping.get("properties") or {})
    unmapped = [name for name in fields if properties.get(name, {}).get("type") not in ("text", "keyword")]
    detail = f"{index!r} holds {count:,} documents"
    if count == 0:
        return Check(
            "index", Status.WARN, f"{detail}: nothing to search", f"retrosearch index PATH --index {index}"
        )
    if unmapped:
        return Check(
            "index",
            Status.WARN,
            f"{detail}; no text field {', '.join(map(repr, unmapped))} to search and rerank",
            "pass the fields the documents have with --fields",
        )
    return Check("index", Status.OK, f"{detail}; fields {', '.join(fields)} mapped")


def _plugins(ml: MLCommons) -> Check:
    try:
        plugins = ml.plugins()
    except MLCommonsError as error:
        return Check("plugins", Status.FAIL, str(error))
    missing = [plugin for plugin in REQUIRED_PLUGINS if plugin not in plugins]
    if missing:
        return Check(
            "plugins",
            Status.FAIL,
            f"missing on this cluster: {', '.join(missing)} (the rerank pipeline needs them)",
            "rerank client-side: retrosearch search --client-side (or doctor --client-side)",
        )
    return Check("plugins", Status.OK, ", ".join(REQUIRED_PLUGINS))


def _pipeline(ml: MLCommons, pipeline: str, fields: Sequence[str], found: list[PipelineWiring]) -> Check:
    setup = f"retrosearch setup opensearch --pipeline {pipeline} --connector-url URL"
    try:
        wiring = read_pipeline_wiring(ml, pipeline)
    except PipelineWiringError as error:
        return Check(
            "pipeline", Status.FAIL, str(error), f"create it: {setup}" if error.link == "pipeline" else setup
        )
    except EngineError as error:
        return Check("pipeline", Status.FAIL, str(error))
    found.append(wiring)
    processor = wiring.processor
    detail = (
        f"{pipeline!r} reranks fields {', '.join(processor.document_fields) or '(none)'} with model "
        f"{processor.model_id}" + (", ignore_failure on" if processor.ignore_failure else "")
    )
    if processor.ignore_failure:
        return Check(
            "pipeline",
            Status.WARN,
            f"{detail}: a failed rerank answers the BM25 order without an error",
            "`retrosearch search` still says when that happens; re-run setup without --ignore-failure to fail loudly",
        )
    if list(processor.document_fields) != list(fields):
        return Check(
            "pipeline",
            Status.WARN,
            f"{detail}, not the fields checked here ({', '.join(fields)})",
            f"search with --fields {','.join(processor.document_fields)}",
        )
    return Check("pipeline", Status.OK, detail)


def _model(wiring: PipelineWiring, pipeline: str) -> Check:
    model_id = wiring.processor.model_id
    if wiring.deployed:
        return Check("model", Status.OK, f"{model_id} deployed")
    return Check(
        "model",
        Status.FAIL,
        f"{model_id} is {wiring.model_state or 'in an unknown state'}, not DEPLOYED: the pipeline cannot rerank",
        f"deploy it: POST /_plugins/_ml/models/{model_id}/_deploy (or re-run retrosearch setup opensearch "
        f"--pipeline {pipeline} ...)",
    )


def _engine_calls_connector(ml: MLCommons, wiring: PipelineWiring) -> Check:
    """A `_predict` through the model: the engine itself calling the connector, as the pipeline does."""
    try:
        scores = predict_scores(ml.predict(wiring.processor.model_id, smoke_parameters()))
    except MLCommonsError as error:
        return Check(
            "engine → connector",
            Status.FAIL,
            f"the engine could not call {wiring.rerank_url}: {error.reason}",
            "is the connector running and reachable from the engine's host at that URL? Re-run `retrosearch "
            "setup opensearch` with the --connector-url the engine can reach",
        )
    return Check(
        "engine → connector", Status.OK, f"a _predict through the model scored {len(scores)} documents"
    )


def _backend(readiness: ConnectorReadiness) -> Check:
    if readiness.ready:
        return Check("backend", Status.OK, f"{readiness.backend} backend ready")
    return Check(
        "backend",
        Status.FAIL,
        readiness.problem or f"the {readiness.backend} backend is not ready",
        "start the model server, or fix the connector's --backend-url (its /ready says why)",
    )


def _served_model(readiness: ConnectorReadiness) -> Check:
    if readiness.backend == "cpu":
        return Check(
            "served model",
            Status.WARN,
            "the CPU fallback, a lexical scorer: NOT Retro*",
            "serve Retro* with --backend sglang --backend-url http://gpu-host:30000",
        )
    return Check("served model", Status.OK, str(readiness.model))


def _task(readiness: ConnectorReadiness) -> Check:
    if readiness.task is None:
        return Check("task", Status.WARN, "the connector does not report its task (an older version?)")
    return Check("task", Status.OK, readiness.task.describe().removeprefix("task "))


def _body(response: Any) -> dict[str, Any]:
    # Elasticsearch answers with an ObjectApiResponse; its `.body` is the plain dict OpenSearch returns.
    return response.body if hasattr(response, "body") else response
