"""Wiring the Retro* connector into OpenSearch (2.19, ML Commons + neural-search), idempotently.

`retrosearch setup opensearch` makes five changes, each found by name and updated on a re-run:

1. cluster settings: the connector's URL added to `plugins.ml_commons.trusted_connector_endpoints_regex`
   (the entries already in effect are kept), and `plugins.ml_commons.connector.private_ip_enabled` when the
   connector is on a private or loopback address (ML Commons refuses such hosts otherwise);
2. an ML Commons HTTP connector speaking Cohere's rerank API to the connector's `/v1/rerank`;
3. a remote model on that connector, registered and deployed;
4. a search pipeline whose rerank processor calls the model with the hits' `document_fields`;
5. optionally, that pipeline as an index's `index.search.default_pipeline`;

and ends with a `_predict` smoke test. `teardown` removes them again (the trusted-endpoint entry too).
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from retrostar_search.engines.connector_endpoint import (
    MASK,
    NO_API_KEY,
    RERANK_PATH,
    PlannedRequest,
    connector_base_url,
)
from retrostar_search.engines.opensearch_ml import MLCommons, MLCommonsError, StoredObject
from retrostar_search.engines.search import DEFAULT_FIELDS
from retrostar_search.errors import EngineError

TRUSTED_ENDPOINTS = "plugins.ml_commons.trusted_connector_endpoints_regex"
PRIVATE_IP_ENABLED = "plugins.ml_commons.connector.private_ip_enabled"
# The connector must answer within its deadline; OpenSearch waits a little longer so that the connector's
# own, better answer (what it scored in time) arrives before OpenSearch gives up on the call.
TIMEOUT_MARGIN_S = 5
TASK_TIMEOUT_S = 120.0
DEPLOYED_STATES = frozenset({"DEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOYING"})
SMOKE_QUERY = "retrosearch setup smoke test"
SMOKE_DOCUMENTS = ("Retro* reranks search results with an LLM.", "An unrelated sentence about weather.")

Report = Callable[[str], None]


def timeout_for_deadline(deadline_s: float) -> int:
    """ML Commons' read/connection timeout (whole SECONDS in 2.19) for a connector with this deadline."""
    return math.ceil(deadline_s) + TIMEOUT_MARGIN_S


def trusted_endpoint_regex(base_url: str) -> str:
    """The regex ML Commons must find the rerank URL trusted by: this base URL exactly, any path below.

    Java's `String.matches` applies it to the whole URL, so it is anchored at both ends."""
    return "^" + _escape_regex(base_url) + "/.*$"


def is_private_endpoint(base_url: str) -> bool:
    """Whether the connector's host is loopback, private or link-local, as ML Commons judges it."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return _is_private_ip(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False  # unresolvable here; the cluster may still resolve it, to a public address or not
    # An IPv6 address may carry its zone ("fe80::1%eth0").
    return any(_is_private_ip(ipaddress.ip_address(str(address).split("%")[0])) for address in addresses)


def connector_name(name: str) -> str:
    return f"{name}-rerank-connector"


def model_name(name: str) -> str:
    return f"{name}-rerank"


@dataclass(frozen=True)
class RerankWiring:
    """What to wire: where the connector is, how long to wait for it, and what to rerank."""

    connector_url: str
    read_timeout_s: int
    connection_timeout_s: int
    connector_api_key: SecretStr | None = None
    fields: tuple[str, ...] = DEFAULT_FIELDS
    pipeline: str = "retrostar"
    name: str = "retrostar"
    index: str | None = None
    default_pipeline: bool = False
    ignore_failure: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "connector_url", connector_base_url(self.connector_url))
        if not self.fields or any(not name.strip() for name in self.fields):
            raise ValueError("give at least one document field, e.g. --fields title,text")
        if self.read_timeout_s < 1 or self.connection_timeout_s < 1:
            raise ValueError("timeouts are whole seconds, at least 1")
        if self.default_pipeline and not self.index:
            raise ValueError("--default-pipeline needs --index")

    @classmethod
    def plan(
        cls,
        connector_url: str,
        *,
        connector_api_key: str | None = None,
        deadline_s: float,
        read_timeout_s: int | None = None,
        connection_timeout_s: int | None = None,
        **wiring: Any,
    ) -> RerankWiring:
        """The wiring for a connector with this deadline: the timeouts not given follow from it."""
        default_timeout = timeout_for_deadline(deadline_s)
        return cls(
            connector_url=connector_url,
            connector_api_key=SecretStr(connector_api_key) if connector_api_key else None,
            read_timeout_s=default_timeout if read_timeout_s is None else read_timeout_s,
            connection_timeout_s=default_timeout if connection_timeout_s is None else connection_timeout_s,
            **wiring,
        )

    @property
    def connector_name(self) -> str:
        return connector_name(self.name)

    @property
    def model_name(self) -> str:
        return model_name(self.name)

    @property
    def rerank_url(self) -> str:
        return self.connector_url + RERANK_PATH

    @cached_property  # resolves the host name: once per wiring
    def private_endpoint(self) -> bool:
        return is_private_endpoint(self.connector_url)


def connector_body(wiring: RerankWiring, mask_secrets: bool = False) -> dict[str, Any]:
    """ML Commons' connector for Cohere's rerank API, pointed at the Retro* connector."""
    if wiring.connector_api_key is None:
        credential = NO_API_KEY
    else:
        credential = MASK if mask_secrets else wiring.connector_api_key.get_secret_value()
    return {
        "name": wiring.connector_name,
        "description": f"Retro* LLM reranker served by retrostar-search at {wiring.connector_url}",
        "version": "1",
        "protocol": "http",
        "credential": {"api_key": credential},
        "parameters": {},
        "client_config": {
            "connection_timeout": wiring.connection_timeout_s,
            "read_timeout": wiring.read_timeout_s,
            "max_connection": 30,
            # A retry would repeat a whole rerank after the time was already spent; fail fast instead.
            "max_retry_times": 0,
        },
        "actions": [
            {
                "action_type": "predict",
                "method": "POST",
                "url": wiring.rerank_url,
                "headers": {
                    "Authorization": "Bearer ${credential.api_key}",
                    "Content-Type": "application/json",
                },
                # The Cohere pre-process function fills query (JSON-escaped), documents and top_n (the
                # number of hits); the post-process function reads results[*].index/relevance_score.
                "request_body": '{ "documents": ${parameters.documents}, "query": "${parameters.query}", '
                '"top_n": ${parameters.top_n} }',
                "pre_process_function": "connector.pre_process.cohere.rerank",
                "post_process_function": "connector.post_process.cohere.rerank",
            }
        ],
    }


def model_body(wiring: RerankWiring, connector_id: str) -> dict[str, Any]:
    # No model group: ML Commons creates one named after the model (and reuses it on a re-register).
    return {
        "name": wiring.model_name,
        "function_name": "remote",
        "description": f"Retro* reranker through {wiring.connector_url}",
        "connector_id": connector_id,
    }


def pipeline_body(wiring: RerankWiring, model_id: str) -> dict[str, Any]:
    return {
        "description": f"BM25 hits reranked by Retro* ({wiring.model_name})",
        "response_processors": [
            {
                "rerank": {
                    "ml_opensearch": {"model_id": model_id},
                    "context": {"document_fields": list(wiring.fields)},
                    "ignore_failure": wiring.ignore_failure,
                }
            }
        ],
    }


def cluster_settings(wiring: RerankWiring, trusted_in_effect: Sequence[str]) -> dict[str, Any]:
    """The persistent settings to write: the trusted list with this connector's entry added."""
    regex = trusted_endpoint_regex(wiring.connector_url)
    trusted = list(trusted_in_effect)
    if regex not in trusted:
        trusted.append(regex)
    settings: dict[str, Any] = {TRUSTED_ENDPOINTS: trusted}
    if wiring.private_endpoint:
        settings[PRIVATE_IP_ENABLED] = True
    return settings


def smoke_parameters() -> dict[str, Any]:
    return {"query": SMOKE_QUERY, "documents": list(SMOKE_DOCUMENTS), "top_n": len(SMOKE_DOCUMENTS)}


def dry_run_plan(wiring: RerankWiring) -> list[PlannedRequest]:
    """The calls a first setup makes, in order, secrets masked; ids the cluster would assign appear as
    `<connector_id>` and `<model_id>`. Nothing here contacts the cluster."""
    in_effect = ["<entries already in effect are kept>"]
    plan = [
        PlannedRequest(
            "trust the connector's URL"
            + (" and allow its private address" if wiring.private_endpoint else ""),
            "PUT",
            "/_cluster/settings",
            {"persistent": cluster_settings(wiring, in_effect)},
        ),
        PlannedRequest(
            "create the connector (on a re-run: undeploy its models, then PUT /_plugins/_ml/connectors/<id>)",
            "POST",
            "/_plugins/_ml/connectors/_create",
            connector_body(wiring, mask_secrets=True),
        ),
        PlannedRequest(
            "register the model (then poll GET /_plugins/_ml/tasks/<task_id>)",
            "POST",
            "/_plugins/_ml/models/_register",
            model_body(wiring, "<connector_id>"),
        ),
        PlannedRequest(
            "deploy the model (then poll its task)", "POST", "/_plugins/_ml/models/<model_id>/_deploy"
        ),
        PlannedRequest(
            "create or replace the search pipeline",
            "PUT",
            f"/_search/pipeline/{wiring.pipeline}",
            pipeline_body(wiring, "<model_id>"),
        ),
    ]
    if wiring.default_pipeline:
        plan.append(
            PlannedRequest(
                "make it the index's default pipeline",
                "PUT",
                f"/{wiring.index}/_settings",
                {"index.search.default_pipeline": wiring.pipeline},
            )
        )
    plan.append(
        PlannedRequest(
            "smoke test",
            "POST",
            "/_plugins/_ml/models/<model_id>/_predict",
            {"parameters": smoke_parameters()},
        )
    )
    return plan


@dataclass
class SetupResult:
    connector_id: str
    model_id: str
    pipeline: str
    smoke_scores: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class SetupError(EngineError):
    """A setup or teardown step that failed; the message names the step and carries OpenSearch's reason."""


class OpenSearchRerankSetup:
    """Applies a `RerankWiring` to a cluster, or removes it; each step reports one line through `report`."""

    def __init__(self, ml: MLCommons, report: Report = lambda line: None) -> None:
        self.ml = ml
        self.report = report

    def apply(self, wiring: RerankWiring, smoke_test: bool = True) -> SetupResult:
        try:
            notes = self._apply_cluster_settings(wiring)
            connector_id = self._apply_connector(wiring)
            model_id = self._apply_model(wiring, connector_id)
            self.ml.put_pipeline(wiring.pipeline, pipeline_body(wiring, model_id))
            self.report(f"search pipeline {wiring.pipeline!r} reranks {', '.join(wiring.fields)}")
            if wiring.default_pipeline:
                assert wiring.index is not None  # RerankWiring checks it
                self.ml.set_index_default_pipeline(wiring.index, wiring.pipeline)
                self.report(f"index {wiring.index!r} searches through {wiring.pipeline!r} by default")
            result = SetupResult(connector_id, model_id, wiring.pipeline, notes=notes)
            if smoke_test:
                result.smoke_scores = self.smoke_test(model_id)
        except MLCommonsError as error:
            raise SetupError(str(error)) from None
        return result

    def smoke_test(self, model_id: str) -> list[float]:
        """`_predict` through the model: one float per document, or an error with OpenSearch's message."""
        try:
            answer = self.ml.predict(model_id, smoke_parameters())
        except MLCommonsError as error:
            raise SetupError(f"smoke test: {error}") from None
        scores = predict_scores(answer)
        if len(scores) != len(SMOKE_DOCUMENTS):
            raise SetupError(
                f"smoke test: expected {len(SMOKE_DOCUMENTS)} scores from _predict, got {len(scores)}"
            )
        self.report(f"smoke test: _predict scored {len(scores)} documents: {scores}")
        return scores

    def teardown(self, name: str, pipeline: str) -> list[str]:
        """Remove what `apply` made under these names; returns what was removed (empty: nothing there)."""
        removed: list[str] = []
        try:
            for index in self.ml.indices_with_default_pipeline(pipeline):
                self.ml.set_index_default_pipeline(index, None)
                removed.append(f"index.search.default_pipeline of {index!r}")
            if self.ml.get_pipeline(pipeline) is not None:
                self.ml.delete_pipeline(pipeline)
                removed.append(f"search pipeline {pipeline!r}")
            for model in self.ml.find_models(model_name(name)):
                self._undeploy(model.id)
                self.ml.delete_model(model.id)
                removed.append(f"model {model_name(name)!r} ({model.id})")
            # ML Commons made this group for the model at registration; empty now, it would only linger.
            for group in self.ml.find_model_groups(model_name(name)):
                self.ml.delete_model_group(group.id)
                removed.append(f"model group {model_name(name)!r} ({group.id})")
            connectors = self.ml.find_connectors(connector_name(name))
            for connector in connectors:
                self.ml.delete_connector(connector.id)
                removed.append(f"connector {connector_name(name)!r} ({connector.id})")
            removed.extend(self._untrust(connectors))
        except MLCommonsError as error:
            raise SetupError(str(error)) from None
        for line in removed:
            self.report(f"removed {line}")
        return removed

    # --- steps ----------------------------------------------------------------------------------------------

    def _apply_cluster_settings(self, wiring: RerankWiring) -> list[str]:
        in_effect = self.ml.effective_setting(TRUSTED_ENDPOINTS) or []
        self.ml.put_persistent_settings(cluster_settings(wiring, in_effect))
        self.report(f"trusted connector endpoint {trusted_endpoint_regex(wiring.connector_url)}")
        notes = []
        if wiring.private_endpoint:
            notes.append(
                f"{PRIVATE_IP_ENABLED} is now true: the connector at {wiring.connector_url} is on a private "
                "or loopback address, which ML Commons refuses otherwise. This lets every connector on "
                "this cluster reach private addresses."
            )
        return notes

    def _apply_connector(self, wiring: RerankWiring) -> str:
        body = connector_body(wiring)
        existing = self._one_by_name(self.ml.find_connectors(wiring.connector_name), "connector")
        if existing is None:
            connector_id = self.ml.create_connector(body)
            self.report(f"created connector {wiring.connector_name!r} ({connector_id})")
            return connector_id
        # ML Commons refuses to update a connector while a deployed model uses it.
        for model in self.ml.find_models_using(existing.id):
            self._undeploy(model.id)
        self.ml.update_connector(existing.id, body)
        self.report(f"updated connector {wiring.connector_name!r} ({existing.id})")
        return existing.id

    def _apply_model(self, wiring: RerankWiring, connector_id: str) -> str:
        existing = self._one_by_name(self.ml.find_models(wiring.model_name), "model")
        if existing is None:
            model_id = self.ml.register_model(model_body(wiring, connector_id), TASK_TIMEOUT_S)
            self.report(f"registered model {wiring.model_name!r} ({model_id})")
        else:
            model_id = existing.id
            if existing.source.get("connector_id") != connector_id:
                self._undeploy(model_id)
                self.ml.update_model(model_id, {"connector_id": connector_id})
        self.ml.deploy_model(model_id, TASK_TIMEOUT_S)
        self.report(f"deployed model {wiring.model_name!r} ({model_id})")
        return model_id

    def _undeploy(self, model_id: str) -> None:
        if self.ml.model_state(model_id) in DEPLOYED_STATES:
            self.ml.undeploy_model(model_id)
            self.report(f"undeployed model {model_id}")

    def _one_by_name(self, found: list[StoredObject], kind: str) -> StoredObject | None:
        if len(found) > 1:
            ids = ", ".join(item.id for item in found[1:])
            self.report(f"note: {len(found)} {kind}s share this name; using the oldest, leaving {ids}")
        return found[0] if found else None

    def _untrust(self, removed: list[StoredObject]) -> list[str]:
        """Drop the trusted-endpoint entries `apply` added for the removed connectors' URLs, unless a
        connector still on the cluster is at the same URL (another `--name` wired to the same service)."""
        still_used = [url for connector in self.ml.all_connectors() for url in _action_urls(connector)]
        ours: set[str] = set()
        for url in (url for connector in removed for url in _action_urls(connector)):
            if url.endswith(RERANK_PATH):
                regex = trusted_endpoint_regex(url.removesuffix(RERANK_PATH))
                if not any(re.fullmatch(regex, other) for other in still_used):
                    ours.add(regex)
        in_effect = list(self.ml.effective_setting(TRUSTED_ENDPOINTS) or [])
        kept = [regex for regex in in_effect if regex not in ours]
        if len(kept) == len(in_effect):
            return []
        self.ml.put_persistent_settings({TRUSTED_ENDPOINTS: kept})
        return [f"trusted endpoint {regex}" for regex in in_effect if regex in ours]


def _action_urls(connector: StoredObject) -> list[str]:
    return [str(action.get("url", "")) for action in connector.source.get("actions") or []]


def predict_scores(answer: dict[str, Any]) -> list[float]:
    """The scores of a `_predict` answer through the Cohere post-process function, in document order."""
    scores: list[float] = []
    for result in answer.get("inference_results") or []:
        for output in result.get("output") or []:
            scores.extend(float(value) for value in output.get("data") or [])
    return scores


def _is_private_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_private or address.is_loopback or address.is_link_local or address.is_unspecified


# Characters that mean something in a Java (and Python) regex. Not re.escape: setup finds its entry among
# those in effect by string equality, so the escaping must stay the same across runs (re.escape's has
# changed between Python versions), and escaping only these keeps entries readable (`connector-host`).
_REGEX_SPECIAL = set("\\.[]{}()*+?^$|")


def _escape_regex(text: str) -> str:
    return "".join("\\" + char if char in _REGEX_SPECIAL else char for char in text)
