"""What `setup opensearch` sends to each OpenSearch version, checked against what the ml-commons sources
accept (no cluster: Maven Central serves no 3.x ML Commons, so the 3.x bodies are verified by source).

Field lists below were read from opensearch-project/ml-commons at the tags named:
- common/src/main/java/org/opensearch/ml/common/transport/connector/MLCreateConnectorInput.java (parse)
- common/src/main/java/org/opensearch/ml/common/connector/ConnectorClientConfig.java (parse)
- common/src/main/java/org/opensearch/ml/common/transport/register/MLRegisterModelInput.java (parse)
- common/src/main/java/org/opensearch/ml/common/settings/MLCommonsSettings.java (validateRegexSafety)
- common/src/main/java/org/opensearch/ml/common/utils/MLResourceIdUtils.java (3.9 custom ids)
"""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from retrostar_search.engines.opensearch_ml import StoredObject
from retrostar_search.engines.opensearch_setup import (
    PRIVATE_IP_ENABLED,
    PRIVATE_IP_RECORD,
    TRUSTED_ENDPOINTS,
    TRUSTED_PRIVATE_ENDPOINTS,
    UNSET,
    ClusterFeatures,
    PrivateAccess,
    RerankWiring,
    cluster_settings,
    connector_body,
    dry_run_plan,
    model_body,
    plan_private_access,
    private_endpoint_status,
    regex_safety_problem,
    trusted_endpoint_regex,
)

# MLCreateConnectorInput.parse: 2.19.1.0 and 3.8.0.0 (url/headers/provisioned_by came in 3.x), and main
# (3.9) which adds connector_id. Fields outside these are skipped silently, so sending one is a no-op.
CONNECTOR_FIELDS_2_19 = {
    "name", "description", "version", "protocol", "parameters", "credential", "actions", "backend_roles",
    "add_all_backend_roles", "access_mode", "dry_run", "client_config", "tenant_id",
}  # fmt: skip
CONNECTOR_FIELDS_3_8 = CONNECTOR_FIELDS_2_19 | {"url", "headers", "provisioned_by"}
CONNECTOR_FIELDS_3_9 = CONNECTOR_FIELDS_3_8 | {"connector_id"}
# ConnectorClientConfig.parse (2.19.1.0; later versions add TLS fields only).
CLIENT_CONFIG_FIELDS = {
    "max_connection", "connection_timeout", "read_timeout", "retry_backoff_millis", "retry_timeout_seconds",
    "max_retry_times", "retry_backoff_policy",
}  # fmt: skip
# MLRegisterModelInput.parse, the fields a remote model uses; main (3.9) adds model_id.
MODEL_FIELDS_2_19 = {"name", "function_name", "description", "connector_id", "model_group_id"}
MODEL_FIELDS_3_9 = MODEL_FIELDS_2_19 | {"model_id"}
# MLResourceIdUtils.CUSTOM_DOCUMENT_ID_PATTERN.
CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")

V2_19, V3_5, V3_7, V3_8, V3_9 = (ClusterFeatures(v) for v in ("2.19.1", "3.5.0", "3.7.0", "3.8.0", "3.9.0"))
LOCAL = "http://127.0.0.1:8000"


def wiring(url: str = LOCAL, **overrides: object) -> RerankWiring:
    return RerankWiring(
        connector_url=url, read_timeout_s=30, connection_timeout_s=30,
        connector_api_key=SecretStr("k-1"), **overrides,  # type: ignore[arg-type]
    )  # fmt: skip


def test_features_follow_the_release_that_brought_them() -> None:
    assert [f.scoped_private_endpoints for f in (V2_19, V3_5, V3_7, V3_8, V3_9)] == [0, 0, 1, 1, 1]
    assert [f.regex_safety_checks for f in (V2_19, V3_5, V3_7, V3_8, V3_9)] == [0, 0, 1, 1, 1]
    assert [f.retries_5xx for f in (V2_19, V3_5, V3_7, V3_8, V3_9)] == [0, 0, 0, 1, 1]
    assert [f.custom_ids for f in (V2_19, V3_5, V3_7, V3_8, V3_9)] == [0, 0, 0, 0, 1]
    assert ClusterFeatures("3.10.0").custom_ids and ClusterFeatures("3.9.0-SNAPSHOT").custom_ids


@pytest.mark.parametrize(
    ("features", "fields"),
    [(V2_19, CONNECTOR_FIELDS_2_19), (V3_8, CONNECTOR_FIELDS_3_8), (V3_9, CONNECTOR_FIELDS_3_9)],
)
def test_connector_body_uses_only_fields_that_version_parses(
    features: ClusterFeatures, fields: set[str]
) -> None:
    body = connector_body(wiring(), features=features, private_ip_before=UNSET)
    assert set(body) <= fields
    assert set(body["client_config"]) <= CLIENT_CONFIG_FIELDS
    # Never a retry: from 3.8 a connector retries 429/5xx unless this is 0.
    assert body["client_config"]["max_retry_times"] == 0
    # parameters is a Map<String, String>: the record is a string.
    assert body["parameters"] == {PRIVATE_IP_RECORD: UNSET}


def test_custom_ids_only_from_3_9_and_only_valid_ones() -> None:
    assert "connector_id" not in connector_body(wiring(pipeline="docs"), features=V3_8)
    assert "model_id" not in model_body(wiring(pipeline="docs"), "c-1", V3_8)

    body = connector_body(wiring(pipeline="docs"), features=V3_9)
    model = model_body(wiring(pipeline="docs"), "docs-rerank-connector", V3_9)
    assert body["connector_id"] == "docs-rerank-connector" and model["model_id"] == "docs-rerank"
    assert CUSTOM_ID_PATTERN.match(body["connector_id"]) and CUSTOM_ID_PATTERN.match(model["model_id"])
    assert set(model) <= MODEL_FIELDS_3_9 and set(model_body(wiring(), "c", V2_19)) <= MODEL_FIELDS_2_19

    # A name ML Commons would refuse as an id (a dot) is sent without one: the cluster assigns it.
    dotted = wiring(pipeline="docs.v2")
    assert "connector_id" not in connector_body(dotted, features=V3_9)
    assert "model_id" not in model_body(dotted, "c", V3_9)


def test_dry_run_shows_the_chosen_ids_on_3_9() -> None:
    plan = dry_run_plan(wiring(pipeline="docs"), V3_9)
    assert [request.path for request in plan][3:5] == [
        "/_plugins/_ml/models/docs-rerank/_deploy",
        "/_search/pipeline/docs",
    ]
    assert plan[4].body is not None
    assert plan[4].body["response_processors"][0]["rerank"]["ml_opensearch"]["model_id"] == "docs-rerank"


@pytest.mark.parametrize("features", [V2_19, V3_5])
def test_before_3_7_private_access_is_only_the_cluster_wide_switch(features: ClusterFeatures) -> None:
    settings = cluster_settings(wiring(), ["^https://api\\.cohere\\.ai/.*$"], features, PrivateAccess())
    assert settings == {
        TRUSTED_ENDPOINTS: ["^https://api\\.cohere\\.ai/.*$", trusted_endpoint_regex(LOCAL)],
        PRIVATE_IP_ENABLED: True,
    }


def test_from_3_7_private_access_is_scoped_to_the_connector_url() -> None:
    regex = trusted_endpoint_regex(LOCAL)
    fresh = cluster_settings(wiring(), [], V3_7, PrivateAccess())
    assert fresh[PRIVATE_IP_ENABLED] is True and fresh[TRUSTED_PRIVATE_ENDPOINTS] == [regex]
    # A list someone else scoped keeps its entries; ours is added once.
    scoped = cluster_settings(
        wiring(), [], V3_7, PrivateAccess(True, "true", ("^http://10\\.0\\.0\\.5:11434/.*$",))
    )
    assert PRIVATE_IP_ENABLED not in scoped
    assert scoped[TRUSTED_PRIVATE_ENDPOINTS] == ["^http://10\\.0\\.0\\.5:11434/.*$", regex]
    again = cluster_settings(wiring(), [], V3_7, PrivateAccess(True, "true", (regex,)))
    assert again[TRUSTED_PRIVATE_ENDPOINTS] == [regex]
    # Already open to every connector: adding our URL would cut the others off, so the list stays empty.
    assert TRUSTED_PRIVATE_ENDPOINTS not in cluster_settings(wiring(), [], V3_7, PrivateAccess(True, "true"))
    # A public connector changes no private setting at all.
    public = cluster_settings(wiring("https://8.8.8.8"), [], V3_7, PrivateAccess())
    assert set(public) == {TRUSTED_ENDPOINTS}


def test_the_scoped_regex_matches_the_rerank_url_the_way_java_does() -> None:
    # MLValidatableAsyncHttpClient applies pattern.matcher(endpoint).matches(): the whole URL.
    regex = trusted_endpoint_regex(LOCAL)
    assert re.fullmatch(regex, f"{LOCAL}/v1/rerank")
    assert not re.fullmatch(regex, "http://127.0.0.1:80001/v1/rerank")


@pytest.mark.parametrize(
    "url", [LOCAL, "http://connector.internal:8000", "https://rerank.example/retrostar", "http://[::1]:8000"]
)
def test_our_regexes_pass_the_3_7_redos_guard(url: str) -> None:
    assert regex_safety_problem(trusted_endpoint_regex(url)) is None


def test_the_redos_guard_refuses_what_ml_commons_refuses() -> None:
    assert "ReDoS" in (regex_safety_problem("^(a+)+$") or "")
    assert "ReDoS" in (regex_safety_problem("^(a)\\1$") or "")
    long_url = "https://rerank.example/" + "a" * 250
    assert "longer than 256" in (regex_safety_problem(trusted_endpoint_regex(long_url)) or "")


def connector(name: str, url: str, record: str | None = None) -> StoredObject:
    parameters = {PRIVATE_IP_RECORD: record} if record else {}
    return StoredObject(name, {"name": name, "parameters": parameters, "actions": [{"url": url}]})


def test_the_last_retrostar_connector_restores_private_ip_enabled() -> None:
    removed = [connector("a", f"{LOCAL}/v1/rerank", UNSET)]
    public = connector("openai", "https://8.8.8.8/v1/chat/completions")
    settings, lines, notes = plan_private_access(
        removed, [public], V2_19, PrivateAccess(True, "true"), private_endpoint_status
    )
    assert settings == {PRIVATE_IP_ENABLED: None}  # None removes the setting: back to the default
    assert lines == [f"{PRIVATE_IP_ENABLED} back to its default (false), its value before the first setup"]
    assert notes == []
    explicit, _, _ = plan_private_access(
        [connector("a", f"{LOCAL}/v1/rerank", "false")],
        [],
        V2_19,
        PrivateAccess(True, "true"),
        private_endpoint_status,
    )
    assert explicit == {PRIVATE_IP_ENABLED: "false"}


@pytest.mark.parametrize(
    "other",
    [
        connector("b", "http://127.0.0.1:9000/v1/rerank", UNSET),  # another retrostar connector
        connector("ollama", "http://127.0.0.1:11434/api/chat"),  # someone's private connector
        connector("templated", "https://${parameters.endpoint}/v1/chat"),  # host unknown from here
    ],
    ids=["retrostar", "private", "unknown-host"],
)
def test_private_ip_enabled_stays_while_a_remaining_connector_may_need_it(other: StoredObject) -> None:
    removed = [connector("a", f"{LOCAL}/v1/rerank", UNSET)]
    settings, lines, notes = plan_private_access(
        removed, [other], V2_19, PrivateAccess(True, "true"), private_endpoint_status
    )
    assert settings == {} and lines == []
    assert len(notes) == 1 and "stays true" in notes[0]


def test_a_setting_retrostar_did_not_change_is_never_touched() -> None:
    removed = [connector("a", f"{LOCAL}/v1/rerank")]  # no record: private access was on before setup
    assert plan_private_access(removed, [], V2_19, PrivateAccess(True, "true"), private_endpoint_status) == (
        {},
        [],
        [],
    )


def test_from_3_7_teardown_drops_its_private_entry_and_keeps_the_list_non_empty() -> None:
    ours = trusted_endpoint_regex(LOCAL)
    theirs = "^http://10\\.0\\.0\\.5:11434/.*$"
    removed = [connector("a", f"{LOCAL}/v1/rerank", UNSET)]
    # Only ours: the list and the switch both go back.
    settings, _, _ = plan_private_access(
        removed, [], V3_7, PrivateAccess(True, "true", (ours,)), private_endpoint_status
    )
    assert settings == {PRIVATE_IP_ENABLED: None, TRUSTED_PRIVATE_ENDPOINTS: []}
    # Someone else's private connector is listed too: it keeps the switch on and its entry.
    ollama = connector("ollama", "http://10.0.0.5:11434/api/chat")
    settings, _, notes = plan_private_access(
        removed, [ollama], V3_7, PrivateAccess(True, "true", (theirs, ours)), private_endpoint_status
    )
    assert settings == {TRUSTED_PRIVATE_ENDPOINTS: [theirs]} and "stays true" in notes[0]
    # A private connector the list never let through does not need the switch: it goes back.
    blocked = connector("blocked", "http://192.168.1.9:8080/x")
    settings, _, _ = plan_private_access(
        removed, [blocked], V3_7, PrivateAccess(True, "true", (ours,)), private_endpoint_status
    )
    assert settings == {PRIVATE_IP_ENABLED: None, TRUSTED_PRIVATE_ENDPOINTS: []}
    # Switch kept on (no record) and only our entry listed: emptying it would open every private address.
    settings, _, notes = plan_private_access(
        [connector("a", f"{LOCAL}/v1/rerank")],
        [],
        V3_7,
        PrivateAccess(True, "true", (ours,)),
        private_endpoint_status,
    )
    assert settings == {} and "keeps its entries" in notes[0]


def test_private_endpoint_status_tells_unknown_from_public() -> None:
    assert private_endpoint_status("http://127.0.0.1:8000/v1/rerank") is True
    assert private_endpoint_status("https://8.8.8.8/v1/rerank") is False
    assert private_endpoint_status("https://${parameters.endpoint}/v1/chat") is None
    assert private_endpoint_status("https://no-such-host.invalid/v1/rerank") is None
