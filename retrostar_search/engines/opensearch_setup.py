"""Wiring the Retro* connector into OpenSearch (ML Commons + neural-search), idempotently.

`retrosearch setup opensearch` reads the cluster's version, then makes five changes, each found by name
and updated on a re-run:

1. cluster settings: the connector's URL added to `plugins.ml_commons.trusted_connector_endpoints_regex`
   (the entries already in effect are kept); when the connector is on a private or loopback address,
   `plugins.ml_commons.connector.private_ip_enabled` and, from 3.7, the same URL in
   `plugins.ml_commons.trusted_connector_private_endpoints_regex`, which narrows private access to the
   listed URLs (without it, private_ip_enabled opens private addresses to every connector);
2. an ML Commons HTTP connector speaking Cohere's rerank API to the connector's `/v1/rerank`;
3. a remote model on that connector, registered and deployed;
4. a search pipeline whose rerank processor calls the model with the hits' `document_fields`;
5. optionally, that pipeline as an index's `index.search.default_pipeline`;

and ends with a `_predict` smoke test. Connector and model are named after the pipeline unless `--name`
is given, so two pipelines never share them by accident. `teardown` plans before it changes anything:
it removes the pipeline's objects, keeps (and names) what another pipeline still uses, drops the
trusted-endpoint entries no remaining connector needs, and puts `private_ip_enabled` back to what it was
before the first setup changed it (recorded in the connector) once no remaining connector needs private
addresses.

What each OpenSearch version accepts was read from the ml-commons sources (files cited where used): the
3.x path is verified by source, not by a running 3.x ML Commons here (Maven Central serves no 3.x ML
Commons or neural-search plugin zip).
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
from retrostar_search.engines.versions import version_tuple
from retrostar_search.errors import EngineError, Unavailable

TRUSTED_ENDPOINTS = "plugins.ml_commons.trusted_connector_endpoints_regex"
PRIVATE_IP_ENABLED = "plugins.ml_commons.connector.private_ip_enabled"
# ml-commons 3.7.0.0, common/src/main/java/org/opensearch/ml/common/settings/MLCommonsSettings.java
# (ML_COMMONS_TRUSTED_CONNECTOR_PRIVATE_ENDPOINTS_REGEX) and .../common/httpclient/MLValidatableAsyncHttpClient.java
# (validateIp): private_ip_enabled must still be true; when this list is not empty, a call to a private
# address must also match one of its regexes (checked against the resolved URL on every call).
TRUSTED_PRIVATE_ENDPOINTS = "plugins.ml_commons.trusted_connector_private_endpoints_regex"
#: Connector parameter recording `private_ip_enabled`'s persistent value before retrostar first set it
#: ("unset" when it had none). Unreferenced parameters never reach the request body.
PRIVATE_IP_RECORD = "retrostar_private_ip_enabled_before"
UNSET = "unset"
# ml-commons 3.9 (main after 3.8.0.0), common/.../utils/MLResourceIdUtils.java: CUSTOM_DOCUMENT_ID_PATTERN
# and MAX_DOCUMENT_ID_LENGTH, for the `connector_id` / `model_id` a create or register may carry.
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*")
_CUSTOM_ID_MAX_BYTES = 512
# ml-commons 3.7.0.0, MLCommonsSettings.validateRegexSafety: applied to every entry of the trusted lists.
_REDOS_NESTED_QUANTIFIER = re.compile(r".*\([^)]*[*+?]\)[*+?{].*")
_REDOS_BACKREFERENCE = re.compile(r".*\\[1-9].*")
_REGEX_MAX_CHARS = 256
# The connector must answer within its deadline; OpenSearch waits a little longer so that the connector's
# own, better answer (what it scored in time) arrives before OpenSearch gives up on the call.
TIMEOUT_MARGIN_S = 5
TASK_TIMEOUT_S = 120.0
DEPLOYED_STATES = frozenset({"DEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOYING"})
#: What the wiring needs on every node: ML Commons (connector, model) and neural-search (the rerank
#: processor), as `_cat/plugins` names them.
REQUIRED_PLUGINS = ("opensearch-ml", "opensearch-neural-search")
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
    """Whether the connector's host is loopback, private or link-local, as ML Commons judges it (a host
    this machine cannot resolve counts as public: the cluster may still resolve it, either way)."""
    return private_endpoint_status(base_url) is True


def connector_name(name: str) -> str:
    return f"{name}-rerank-connector"


def model_name(name: str) -> str:
    return f"{name}-rerank"


@dataclass(frozen=True)
class ClusterFeatures:
    """What the cluster's ML Commons version has that setup uses, from the ml-commons sources."""

    version: str

    @property
    def scoped_private_endpoints(self) -> bool:
        """3.7+: `trusted_connector_private_endpoints_regex` (see TRUSTED_PRIVATE_ENDPOINTS)."""
        return version_tuple(self.version) >= (3, 7)

    @property
    def regex_safety_checks(self) -> bool:
        """3.7+: the trusted lists refuse long or ReDoS-prone regexes (see `regex_safety_problem`)."""
        return version_tuple(self.version) >= (3, 7)

    @property
    def retries_5xx(self) -> bool:
        """3.8+: a connector retries 429 and 5xx answers unless `max_retry_times` is 0 (ml-commons
        3.8.0.0, ml-algorithms/.../remote/RemoteConnectorExecutor.java, RetryableActionExtension
        .isRetryable). Setup always sends 0: a retry would replay a whole rerank, and the connector's
        own 429 means "saturated, come back later", not "try again now"."""
        return version_tuple(self.version) >= (3, 8)

    @property
    def custom_ids(self) -> bool:
        """3.9+: `connector_id` in a connector create and `model_id` in a model register choose the
        object's id (MLCreateConnectorInput / MLRegisterModelInput, MINIMAL_SUPPORTED_VERSION_FOR_CUSTOM_*).
        Older versions skip unknown fields silently, so these are sent only from 3.9."""
        return version_tuple(self.version) >= (3, 9)


#: What `--dry-run` and callers without a cluster assume: the oldest version the project supports.
OLDEST_FEATURES = ClusterFeatures("2.19.0")


def custom_id(name: str) -> str | None:
    """`name` as a 3.9 custom id, or None when ML Commons would refuse it (so the cluster picks one)."""
    if _CUSTOM_ID.fullmatch(name) and len(name.encode()) <= _CUSTOM_ID_MAX_BYTES:
        return name
    return None


def regex_safety_problem(regex: str) -> str | None:
    """Why ML Commons 3.7+ refuses `regex` in a trusted-endpoint list, as its validateRegexSafety does."""
    if _REDOS_NESTED_QUANTIFIER.fullmatch(regex) or _REDOS_BACKREFERENCE.fullmatch(regex):
        return "it contains nested quantifiers or backreferences that may cause ReDoS"
    if len(regex) > _REGEX_MAX_CHARS:
        return f"it is longer than {_REGEX_MAX_CHARS} characters"
    return None


@dataclass(frozen=True)
class RerankWiring:
    """What to wire: where the connector is, how long to wait for it, and what to rerank.

    `name` is the base name of the connector (`<name>-rerank-connector`) and model (`<name>-rerank`);
    None (the default) names them after the pipeline, so each pipeline has its own."""

    connector_url: str
    read_timeout_s: int
    connection_timeout_s: int
    connector_api_key: SecretStr | None = None
    fields: tuple[str, ...] = DEFAULT_FIELDS
    pipeline: str = "retrostar"
    name: str | None = None
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
        if not self.pipeline.strip() or (self.name is not None and not self.name.strip()):
            raise ValueError("--pipeline and --name must not be blank")

    @property
    def base_name(self) -> str:
        return self.name if self.name is not None else self.pipeline

    @property
    def shares_by_choice(self) -> bool:
        """Whether the names were given (`--name`), so other pipelines may share the objects on purpose."""
        return self.name is not None

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
        return connector_name(self.base_name)

    @property
    def model_name(self) -> str:
        return model_name(self.base_name)

    @property
    def rerank_url(self) -> str:
        return self.connector_url + RERANK_PATH

    @cached_property  # resolves the host name: once per wiring
    def private_endpoint(self) -> bool:
        return is_private_endpoint(self.connector_url)


def connector_body(
    wiring: RerankWiring,
    mask_secrets: bool = False,
    features: ClusterFeatures = OLDEST_FEATURES,
    private_ip_before: str | None = None,
) -> dict[str, Any]:
    """ML Commons' connector for Cohere's rerank API, pointed at the Retro* connector.

    `private_ip_before` is recorded in the connector's parameters (see PRIVATE_IP_RECORD) for teardown."""
    if wiring.connector_api_key is None:
        credential = NO_API_KEY
    else:
        credential = MASK if mask_secrets else wiring.connector_api_key.get_secret_value()
    body: dict[str, Any] = {
        "name": wiring.connector_name,
        "description": f"Retro* LLM reranker served by retrostar-search at {wiring.connector_url}",
        "version": "1",
        "protocol": "http",
        "credential": {"api_key": credential},
        "parameters": {} if private_ip_before is None else {PRIVATE_IP_RECORD: private_ip_before},
        "client_config": {
            "connection_timeout": wiring.connection_timeout_s,
            "read_timeout": wiring.read_timeout_s,
            "max_connection": 30,
            # Never retry (3.8+ retries 429 and 5xx unless this is 0): a retry would repeat a whole rerank
            # after its time was spent, and replay the connector's own 429 ("saturated") at once.
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
    chosen_id = custom_id(wiring.connector_name) if features.custom_ids else None
    if chosen_id:
        body["connector_id"] = chosen_id
    return body


def model_body(
    wiring: RerankWiring, connector_id: str, features: ClusterFeatures = OLDEST_FEATURES
) -> dict[str, Any]:
    # No model group: ML Commons creates one named after the model (and reuses it on a re-register).
    body: dict[str, Any] = {
        "name": wiring.model_name,
        "function_name": "remote",
        "description": f"Retro* reranker through {wiring.connector_url}",
        "connector_id": connector_id,
    }
    chosen_id = custom_id(wiring.model_name) if features.custom_ids else None
    if chosen_id:
        body["model_id"] = chosen_id
    return body


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


@dataclass(frozen=True)
class PrivateAccess:
    """The cluster's private-address settings as setup finds them."""

    #: `private_ip_enabled` in effect (transient over persistent over the default, false).
    enabled: bool = False
    #: Its persistent value as stored, None when unset: what teardown restores.
    persistent: str | None = None
    #: `trusted_connector_private_endpoints_regex` in effect (3.7+; empty: no scoping).
    scoped: tuple[str, ...] = ()


def cluster_settings(
    wiring: RerankWiring,
    trusted_in_effect: Sequence[str],
    features: ClusterFeatures = OLDEST_FEATURES,
    private: PrivateAccess = PrivateAccess(),
) -> dict[str, Any]:
    """The persistent settings to write: this connector's URL trusted and, for a private address, private
    access turned on, scoped to the listed URLs from 3.7 on.

    From 3.7, a private list that is empty while private access is already on (someone opened it to every
    connector) is left empty: adding our URL would cut off the connectors that rely on it."""
    regex = trusted_endpoint_regex(wiring.connector_url)
    settings: dict[str, Any] = {TRUSTED_ENDPOINTS: _with(trusted_in_effect, regex)}
    if wiring.private_endpoint:
        if not private.enabled:
            settings[PRIVATE_IP_ENABLED] = True
        if features.scoped_private_endpoints and (private.scoped or not private.enabled):
            settings[TRUSTED_PRIVATE_ENDPOINTS] = _with(private.scoped, regex)
    return settings


def _with(entries: Sequence[str], regex: str) -> list[str]:
    return [*entries, regex] if regex not in entries else list(entries)


def smoke_parameters() -> dict[str, Any]:
    return {"query": SMOKE_QUERY, "documents": list(SMOKE_DOCUMENTS), "top_n": len(SMOKE_DOCUMENTS)}


def dry_run_plan(wiring: RerankWiring, features: ClusterFeatures = OLDEST_FEATURES) -> list[PlannedRequest]:
    """The calls a first setup makes on a cluster of `features`' version, in order, secrets masked; ids
    the cluster would assign appear as `<connector_id>` and `<model_id>`. Nothing here contacts the
    cluster."""
    in_effect = ["<entries already in effect are kept>"]
    private_note = ""
    if wiring.private_endpoint:
        private_note = " and allow its private address" + (
            " (scoped to this URL)" if features.scoped_private_endpoints else ""
        )
    connector_id = custom_id(wiring.connector_name) if features.custom_ids else None
    model_id = custom_id(wiring.model_name) if features.custom_ids else None
    plan = [
        PlannedRequest(
            "trust the connector's URL" + private_note,
            "PUT",
            "/_cluster/settings",
            {
                "persistent": cluster_settings(
                    wiring, in_effect, features, PrivateAccess(scoped=tuple(in_effect))
                )
            },
        ),
        PlannedRequest(
            "create the connector (on a re-run: undeploy its models, then PUT /_plugins/_ml/connectors/<id>)",
            "POST",
            "/_plugins/_ml/connectors/_create",
            connector_body(
                wiring,
                mask_secrets=True,
                features=features,
                private_ip_before="<its value before>" if wiring.private_endpoint else None,
            ),
        ),
        PlannedRequest(
            "register the model (then poll GET /_plugins/_ml/tasks/<task_id>)",
            "POST",
            "/_plugins/_ml/models/_register",
            model_body(wiring, connector_id or "<connector_id>", features),
        ),
        PlannedRequest(
            "deploy the model (then poll its task)",
            "POST",
            f"/_plugins/_ml/models/{model_id or '<model_id>'}/_deploy",
        ),
        PlannedRequest(
            "create or replace the search pipeline",
            "PUT",
            f"/_search/pipeline/{wiring.pipeline}",
            pipeline_body(wiring, model_id or "<model_id>"),
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
            f"/_plugins/_ml/models/{model_id or '<model_id>'}/_predict",
            {"parameters": smoke_parameters()},
        )
    )
    return plan


@dataclass
class SetupResult:
    connector_id: str
    model_id: str
    pipeline: str
    version: str = OLDEST_FEATURES.version
    smoke_scores: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class SetupError(EngineError):
    """A setup or teardown step that failed; the message names the step and carries OpenSearch's reason."""


class MissingPluginError(SetupError, Unavailable):
    """The cluster lacks a plugin the rerank pipeline needs (ML Commons, neural-search)."""


@dataclass(frozen=True)
class Kept:
    """An object teardown leaves in place, and why."""

    what: str
    reason: str


@dataclass
class TeardownPlan:
    """What `teardown` removes and changes, decided before anything is touched (`--dry-run` prints it)."""

    pipeline: str
    name: str
    index_defaults: list[str] = field(default_factory=list)
    pipeline_exists: bool = False
    models: list[StoredObject] = field(default_factory=list)
    model_groups: list[StoredObject] = field(default_factory=list)
    connectors: list[StoredObject] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    #: Persistent cluster settings to write (a None value removes the setting: back to its default).
    settings: dict[str, Any] = field(default_factory=dict)
    #: One line per settings change, for people.
    settings_lines: list[str] = field(default_factory=list)
    #: Settings teardown leaves as they are although setup changed them, and why.
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.index_defaults or self.pipeline_exists or self.models or self.model_groups
            or self.connectors or self.settings
        )  # fmt: skip

    def lines(self) -> list[str]:
        """What it removes or changes, one line each (`removed` or `would remove` goes in front)."""
        lines = [f"index.search.default_pipeline of {index!r}" for index in self.index_defaults]
        if self.pipeline_exists:
            lines.append(f"search pipeline {self.pipeline!r}")
        lines += [f"model {model_name(self.name)!r} ({model.id})" for model in self.models]
        lines += [f"model group {model_name(self.name)!r} ({group.id})" for group in self.model_groups]
        lines += [f"connector {connector_name(self.name)!r} ({c.id})" for c in self.connectors]
        return lines + self.settings_lines


def models_in_pipeline(body: Any) -> set[str]:
    """Every `model_id` a search pipeline's processors name (rerank, neural query enricher, ...)."""
    found: set[str] = set()
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "model_id" and isinstance(value, str):
                found.add(value)
            else:
                found |= models_in_pipeline(value)
    elif isinstance(body, list):
        for item in body:
            found |= models_in_pipeline(item)
    return found


def plan_private_access(
    removed: Sequence[StoredObject],
    remaining: Sequence[StoredObject],
    features: ClusterFeatures,
    private: PrivateAccess,
    is_private: Callable[[str], bool | None],
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The private-address settings teardown writes once `removed` are gone, a line for each change,
    and notes on what it leaves although setup changed it.

    - 3.7+: entries of the private list that matched a removed connector and match no remaining one
      go; an emptied list while private access stays on would open it to every connector, so then the
      entries stay.
    - `private_ip_enabled` goes back to the value recorded in the removed connectors (its value before
      retrostar first set it) when no remaining connector carries a record of its own (the last one
      restores) and none needs private access: a remaining connector needs it when its URL is private or
      unknown from here (a `${parameters...}` host, a name that does not resolve) and, on 3.7+ with a
      non-empty list, the list lets it through."""
    settings: dict[str, Any] = {}
    lines: list[str] = []
    notes: list[str] = []

    def allowed(url: str) -> bool:
        if not (features.scoped_private_endpoints and private.scoped):
            return True
        return any(re.fullmatch(regex, url) for regex in private.scoped)

    needing = [
        connector
        for connector in remaining
        for url in _action_urls(connector)
        if is_private(url) is not False and allowed(url)
    ]
    records = [c.source.get("parameters", {}).get(PRIVATE_IP_RECORD) for c in removed]
    recorded = next((record for record in records if record), None)
    still_recording = any((c.source.get("parameters") or {}).get(PRIVATE_IP_RECORD) for c in remaining)
    restore = recorded is not None and recorded != "true" and not still_recording and not needing
    if recorded is not None and recorded != "true" and private.enabled and not restore:
        if needing:
            names = ", ".join(sorted({repr(c.source.get("name", c.id)) for c in needing}))
            notes.append(f"{PRIVATE_IP_ENABLED} stays true: connector(s) {names} may reach private addresses")
        elif still_recording:
            notes.append(f"{PRIVATE_IP_ENABLED} stays true: another retrostar connector still needs it")
    if restore and private.enabled:
        settings[PRIVATE_IP_ENABLED] = None if recorded == UNSET else recorded
        lines.append(
            f"{PRIVATE_IP_ENABLED} back to "
            + ("its default (false)" if recorded == UNSET else str(recorded))
            + ", its value before the first setup"
        )

    if features.scoped_private_endpoints and private.scoped:
        removed_urls = [url for c in removed for url in _action_urls(c)]
        remaining_urls = [url for c in remaining for url in _action_urls(c)]
        ours = {
            regex
            for regex in private.scoped
            if any(re.fullmatch(regex, url) for url in removed_urls)
            and not any(re.fullmatch(regex, url) for url in remaining_urls)
        }
        kept_list = [regex for regex in private.scoped if regex not in ours]
        stays_on = private.enabled and not restore
        if ours and not (stays_on and not kept_list):
            settings[TRUSTED_PRIVATE_ENDPOINTS] = kept_list
            lines += [f"trusted private endpoint {regex}" for regex in private.scoped if regex in ours]
        elif ours:
            notes.append(
                f"{TRUSTED_PRIVATE_ENDPOINTS} keeps its entries: emptied, with private access still on, it "
                "would let every connector reach private addresses"
            )
    return settings, lines, notes


class OpenSearchRerankSetup:
    """Applies a `RerankWiring` to a cluster, or removes it; each step reports one line through `report`."""

    def __init__(self, ml: MLCommons, report: Report = lambda line: None) -> None:
        self.ml = ml
        self.report = report

    def dry_run(self, wiring: RerankWiring) -> tuple[ClusterFeatures, list[PlannedRequest]]:
        """What `apply` would send on a first run, for this cluster's version (`dry_run_plan`). Reading the
        version changes nothing; a cluster that cannot be read gets the oldest supported version's plan."""
        try:
            features = ClusterFeatures(self.ml.cluster_version())
        except MLCommonsError:
            features = OLDEST_FEATURES
        return features, dry_run_plan(wiring, features)

    def apply(self, wiring: RerankWiring, smoke_test: bool = True) -> SetupResult:
        try:
            features = ClusterFeatures(self.ml.cluster_version())
            self.report(f"OpenSearch {features.version}")
            self._require_plugins(features)
            self._refuse_other_pipelines_objects(wiring)
            private_before = self._private_ip_record(wiring)
            notes = self._apply_cluster_settings(wiring, features)
            connector_id = self._apply_connector(wiring, features, private_before)
            model_id = self._apply_model(wiring, connector_id, features)
            self.ml.put_pipeline(wiring.pipeline, pipeline_body(wiring, model_id))
            self.report(f"search pipeline {wiring.pipeline!r} reranks {', '.join(wiring.fields)}")
            if wiring.default_pipeline:
                assert wiring.index is not None  # RerankWiring checks it
                self.ml.set_index_default_pipeline(wiring.index, wiring.pipeline)
                self.report(f"index {wiring.index!r} searches through {wiring.pipeline!r} by default")
            result = SetupResult(connector_id, model_id, wiring.pipeline, features.version, notes=notes)
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

    def plan_teardown(self, pipeline: str, name: str | None = None) -> TeardownPlan:
        """What `teardown` would do for this pipeline (names follow it unless `name` is given)."""
        base = name if name is not None else pipeline
        try:
            return self._plan_teardown(pipeline, base)
        except MLCommonsError as error:
            raise SetupError(str(error)) from None

    def teardown(self, pipeline: str, name: str | None = None) -> TeardownPlan:
        """Carry out `plan_teardown`; each removal and change is reported as it is made."""
        plan = self.plan_teardown(pipeline, name)
        try:
            for index in plan.index_defaults:
                self.ml.set_index_default_pipeline(index, None)
            if plan.pipeline_exists:
                self.ml.delete_pipeline(plan.pipeline)
            for model in plan.models:
                self._undeploy(model.id)
                self.ml.delete_model(model.id)
            for group in plan.model_groups:
                self.ml.delete_model_group(group.id)
            for connector in plan.connectors:
                self.ml.delete_connector(connector.id)
            if plan.settings:
                self.ml.put_persistent_settings(plan.settings)
        except MLCommonsError as error:
            raise SetupError(str(error)) from None
        for line in plan.lines():
            self.report(line if line.startswith(PRIVATE_IP_ENABLED) else f"removed {line}")
        return plan

    # --- steps ----------------------------------------------------------------------------------------------

    def _require_plugins(self, features: ClusterFeatures) -> None:
        missing = [name for name in REQUIRED_PLUGINS if name not in self.ml.plugins()]
        if missing:
            raise MissingPluginError(
                f"this OpenSearch {features.version} has no {' or '.join(missing)} plugin, which the rerank "
                "pipeline needs (`retrosearch node` can add them to 2.19.1 only: Maven Central serves no 3.x "
                "build). Rerank client-side instead: retrosearch search --client-side"
            )

    def _plan_teardown(self, pipeline: str, base: str) -> TeardownPlan:
        self._require_plugins(ClusterFeatures(self.ml.cluster_version()))
        plan = TeardownPlan(pipeline=pipeline, name=base)
        plan.index_defaults = self.ml.indices_with_default_pipeline(pipeline)
        pipelines = self.ml.all_pipelines()
        plan.pipeline_exists = pipeline in pipelines
        others = {name: models_in_pipeline(body) for name, body in pipelines.items() if name != pipeline}

        for model in self.ml.find_models(model_name(base)):
            using_pipelines = sorted(name for name, ids in others.items() if model.id in ids)
            if using_pipelines:
                plan.kept.append(
                    Kept(
                        f"model {model_name(base)!r} ({model.id})",
                        "search pipeline(s) " + ", ".join(repr(u) for u in using_pipelines) + " still use it",
                    )
                )
            else:
                plan.models.append(model)
        if not plan.kept:
            # ML Commons made this group for the model at registration; empty now, it would only linger.
            plan.model_groups = self.ml.find_model_groups(model_name(base))

        removed_models = {model.id for model in plan.models}
        for connector in self.ml.find_connectors(connector_name(base)):
            using_models = [m for m in self.ml.find_models_using(connector.id) if m.id not in removed_models]
            if using_models:
                names = ", ".join(f"{m.source.get('name', '?')!r} ({m.id})" for m in using_models)
                plan.kept.append(
                    Kept(f"connector {connector_name(base)!r} ({connector.id})", f"model(s) {names} use it")
                )
            else:
                plan.connectors.append(connector)

        if plan.connectors:
            features = ClusterFeatures(self.ml.cluster_version())
            removed_ids = {c.id for c in plan.connectors}
            remaining = [c for c in self.ml.all_connectors() if c.id not in removed_ids]
            trusted, trusted_lines = self._untrust(plan.connectors, remaining)
            private = self._private_access(features)
            private_settings, private_lines, plan.notes = plan_private_access(
                plan.connectors, remaining, features, private, private_endpoint_status
            )
            plan.settings = {**trusted, **private_settings}
            plan.settings_lines = trusted_lines + private_lines
        return plan

    def _refuse_other_pipelines_objects(self, wiring: RerankWiring) -> None:
        """Setup never changes the model of another pipeline unless `--name` asked for sharing."""
        if wiring.shares_by_choice:
            return
        pipelines = self.ml.all_pipelines()
        for model in self.ml.find_models(wiring.model_name):
            users = sorted(
                name
                for name, body in pipelines.items()
                if name != wiring.pipeline and model.id in models_in_pipeline(body)
            )
            if users:
                raise SetupError(
                    f"model {wiring.model_name!r} ({model.id}) belongs to search pipeline(s) "
                    + ", ".join(repr(u) for u in users)
                    + f": setup of {wiring.pipeline!r} would change it. Give --name to choose other "
                    f"names, or --name {wiring.base_name} to share it on purpose"
                )

    def _private_access(self, features: ClusterFeatures) -> PrivateAccess:
        enabled = str(self.ml.effective_setting(PRIVATE_IP_ENABLED)).lower() == "true"
        persistent = self.ml.persistent_setting(PRIVATE_IP_ENABLED)
        scoped: tuple[str, ...] = ()
        if features.scoped_private_endpoints:
            scoped = tuple(self.ml.effective_setting(TRUSTED_PRIVATE_ENDPOINTS) or ())
        return PrivateAccess(enabled, None if persistent is None else str(persistent).lower(), scoped)

    def _private_ip_record(self, wiring: RerankWiring) -> str | None:
        """What the connector records of `private_ip_enabled`: a record already made by an earlier setup
        (this wiring's or another's), else the value now when this setup is about to turn it on."""
        if not wiring.private_endpoint:
            return None
        for connector in self.ml.all_connectors():
            record = (connector.source.get("parameters") or {}).get(PRIVATE_IP_RECORD)
            if record:
                return str(record)
        if str(self.ml.effective_setting(PRIVATE_IP_ENABLED)).lower() == "true":
            return None  # already on before any retrostar setup: not ours to turn off later
        persistent = self.ml.persistent_setting(PRIVATE_IP_ENABLED)
        return UNSET if persistent is None else str(persistent).lower()

    def _apply_cluster_settings(self, wiring: RerankWiring, features: ClusterFeatures) -> list[str]:
        in_effect = self.ml.effective_setting(TRUSTED_ENDPOINTS) or []
        private = self._private_access(features)
        settings = cluster_settings(wiring, in_effect, features, private)
        if features.regex_safety_checks:
            regex = trusted_endpoint_regex(wiring.connector_url)
            problem = regex_safety_problem(regex)
            if problem:
                raise SetupError(
                    f"OpenSearch {features.version} refuses the trusted-endpoint regex {regex} because "
                    f"{problem}; serve the connector at a shorter URL"
                )
        self.ml.put_persistent_settings(settings)
        self.report(f"trusted connector endpoint {trusted_endpoint_regex(wiring.connector_url)}")
        notes = []
        if wiring.private_endpoint:
            if TRUSTED_PRIVATE_ENDPOINTS in settings:
                notes.append(
                    f"{PRIVATE_IP_ENABLED} is true and {TRUSTED_PRIVATE_ENDPOINTS} lists "
                    f"{wiring.connector_url}: connectors may reach private addresses only at the URLs listed "
                    "there. Teardown takes both back when nothing else needs them."
                )
            elif features.scoped_private_endpoints:
                notes.append(
                    f"{PRIVATE_IP_ENABLED} was already true with an empty {TRUSTED_PRIVATE_ENDPOINTS}: every "
                    "connector of this cluster may reach private addresses. Setup leaves that as it is (adding "
                    "this URL would cut off the others); list their URLs there to scope it."
                )
            else:
                notes.append(
                    f"{PRIVATE_IP_ENABLED} is true: the connector at {wiring.connector_url} is on a private "
                    f"or loopback address, which ML Commons refuses otherwise. OpenSearch {features.version} "
                    "cannot scope this (3.7 can): every connector of this cluster may now reach private "
                    "addresses. Teardown turns it back when no remaining connector needs it."
                )
        return notes

    def _apply_connector(
        self, wiring: RerankWiring, features: ClusterFeatures, private_before: str | None
    ) -> str:
        body = connector_body(wiring, features=features, private_ip_before=private_before)
        existing = self._one_by_name(self.ml.find_connectors(wiring.connector_name), "connector")
        if existing is None:
            connector_id = self.ml.create_connector(body)
            self.report(f"created connector {wiring.connector_name!r} ({connector_id})")
            return connector_id
        # ML Commons refuses to update a connector while a deployed model uses it.
        for model in self.ml.find_models_using(existing.id):
            self._undeploy(model.id)
        body.pop("connector_id", None)  # an update keeps the id it has
        self.ml.update_connector(existing.id, body)
        self.report(f"updated connector {wiring.connector_name!r} ({existing.id})")
        return existing.id

    def _apply_model(self, wiring: RerankWiring, connector_id: str, features: ClusterFeatures) -> str:
        existing = self._one_by_name(self.ml.find_models(wiring.model_name), "model")
        if existing is None:
            model_id = self.ml.register_model(model_body(wiring, connector_id, features), TASK_TIMEOUT_S)
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

    def _untrust(
        self, removed: list[StoredObject], remaining: list[StoredObject]
    ) -> tuple[dict[str, Any], list[str]]:
        """Drop the trusted-endpoint entries `apply` added for the removed connectors' URLs, unless a
        connector still on the cluster is at the same URL (another pipeline wired to the same service)."""
        still_used = [url for connector in remaining for url in _action_urls(connector)]
        ours: set[str] = set()
        for url in (url for connector in removed for url in _action_urls(connector)):
            if url.endswith(RERANK_PATH):
                regex = trusted_endpoint_regex(url.removesuffix(RERANK_PATH))
                if not any(re.fullmatch(regex, other) for other in still_used):
                    ours.add(regex)
        in_effect = list(self.ml.effective_setting(TRUSTED_ENDPOINTS) or [])
        kept = [regex for regex in in_effect if regex not in ours]
        if len(kept) == len(in_effect):
            return {}, []
        return {TRUSTED_ENDPOINTS: kept}, [
            f"trusted endpoint {regex}" for regex in in_effect if regex in ours
        ]


def _action_urls(connector: StoredObject) -> list[str]:
    return [str(action.get("url", "")) for action in connector.source.get("actions") or []]


def private_endpoint_status(url: str) -> bool | None:
    """Whether a connector action URL reaches a private address: None when that cannot be told from
    here (a `${parameters...}` host, a name this machine cannot resolve)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or "${" in parts.netloc:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return _is_private_ip(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return None
    # An IPv6 address may carry its zone ("fe80::1%eth0").
    return any(_is_private_ip(ipaddress.ip_address(str(address).split("%")[0])) for address in addresses)


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
