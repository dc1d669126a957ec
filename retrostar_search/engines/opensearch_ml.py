"""The handful of OpenSearch ML Commons and search-pipeline REST calls the rerank wiring needs, typed.

opensearch-py has no stable wrapper for these plugin APIs, so they go through the client's transport;
everything that can fail raises `MLCommonsError` carrying OpenSearch's own message (its
`error.reason`, see engines/errors.py), which is what a user needs to act on.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrostar_search.engines.errors import explain_engine_error
from retrostar_search.engines.versions import version_tuple
from retrostar_search.errors import EngineError

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

ML = "/_plugins/_ml"


class MLCommonsError(EngineError):
    """An ML Commons call that failed, with OpenSearch's message."""

    def __init__(self, action: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{action} failed: {message}")
        self.action = action
        self.reason = message
        self.status = status


@dataclass(frozen=True)
class StoredObject:
    """A connector or a model found by name."""

    id: str
    source: dict[str, Any]


class MLCommons:
    def __init__(self, client: OpenSearch) -> None:
        self.client = client

    # --- cluster settings -------------------------------------------------------------------------------

    def effective_setting(self, key: str) -> Any:
        """A cluster setting's value in effect: transient overrides persistent, which overrides the default."""
        flat = self._call(
            "read cluster settings",
            "GET",
            "/_cluster/settings",
            params={"include_defaults": "true", "flat_settings": "true"},
        )
        for scope in ("transient", "persistent", "defaults"):
            if key in flat.get(scope, {}):
                return flat[scope][key]
        return None

    def persistent_setting(self, key: str) -> Any:
        """A cluster setting's persistent value as stored (None when unset), defaults and transient aside."""
        flat = self._call(
            "read cluster settings", "GET", "/_cluster/settings", params={"flat_settings": "true"}
        )
        return flat.get("persistent", {}).get(key)

    def cluster_version(self) -> str:
        """The lowest OpenSearch version among the nodes: what every node of a mixed cluster understands."""
        nodes = self._call("read node versions", "GET", "/_nodes", params={"filter_path": "nodes.*.version"})
        versions = [node["version"] for node in (nodes.get("nodes") or {}).values()]
        if not versions:
            raise MLCommonsError("read node versions", "the cluster listed no nodes")
        return min(versions, key=version_tuple)

    def plugins(self) -> set[str]:
        """The plugins every node of the cluster has (`_cat/plugins` names)."""
        rows = self._call("list plugins", "GET", "/_cat/plugins", params={"format": "json"})
        per_node: dict[str, set[str]] = {}
        for row in rows:
            per_node.setdefault(row["name"], set()).add(row["component"])
        return set.intersection(*per_node.values()) if per_node else set()

    def put_persistent_settings(self, settings: Mapping[str, Any]) -> None:
        self._call("update cluster settings", "PUT", "/_cluster/settings", {"persistent": dict(settings)})

    # --- connectors and models ----------------------------------------------------------------------------

    def find_connectors(self, name: str) -> list[StoredObject]:
        return self._find(f"{ML}/connectors/_search", {"term": {"name.keyword": name}})

    def all_connectors(self) -> list[StoredObject]:
        return self._find(f"{ML}/connectors/_search", {"match_all": {}})

    def find_models(self, name: str) -> list[StoredObject]:
        return self._find(f"{ML}/models/_search", {"term": {"name.keyword": name}})

    def find_models_using(self, connector_id: str) -> list[StoredObject]:
        return self._find(f"{ML}/models/_search", {"term": {"connector_id.keyword": connector_id}})

    def create_connector(self, body: Mapping[str, Any]) -> str:
        return self._call("create connector", "POST", f"{ML}/connectors/_create", body)["connector_id"]

    def update_connector(self, connector_id: str, body: Mapping[str, Any]) -> None:
        self._call("update connector", "PUT", f"{ML}/connectors/{connector_id}", body)

    def delete_connector(self, connector_id: str) -> None:
        self._call("delete connector", "DELETE", f"{ML}/connectors/{connector_id}")

    def register_model(self, body: Mapping[str, Any], timeout_s: float) -> str:
        answer = self._call("register model", "POST", f"{ML}/models/_register", body)
        self.wait_for_task(answer["task_id"], "register model", timeout_s)
        return answer["model_id"]

    def update_model(self, model_id: str, body: Mapping[str, Any]) -> None:
        self._call("update model", "PUT", f"{ML}/models/{model_id}", body)

    def deploy_model(self, model_id: str, timeout_s: float) -> None:
        # `_register?deploy=true` hands back the register task only; deploying separately gives the deploy
        # task, whose `error` holds the reason when deployment fails.
        answer = self._call("deploy model", "POST", f"{ML}/models/{model_id}/_deploy")
        self.wait_for_task(answer["task_id"], "deploy model", timeout_s)

    def undeploy_model(self, model_id: str) -> None:
        self._call("undeploy model", "POST", f"{ML}/models/{model_id}/_undeploy")

    def get_model(self, model_id: str) -> dict[str, Any]:
        return dict(self._call("read model", "GET", f"{ML}/models/{model_id}"))

    def model_state(self, model_id: str) -> str | None:
        return self.get_model(model_id).get("model_state")

    def get_connector(self, connector_id: str) -> dict[str, Any]:
        return dict(self._call("read connector", "GET", f"{ML}/connectors/{connector_id}"))

    def delete_model(self, model_id: str) -> None:
        self._call("delete model", "DELETE", f"{ML}/models/{model_id}")

    def find_model_groups(self, name: str) -> list[StoredObject]:
        return self._find(f"{ML}/model_groups/_search", {"term": {"name.keyword": name}})

    def delete_model_group(self, group_id: str) -> None:
        self._call("delete model group", "DELETE", f"{ML}/model_groups/{group_id}")

    def predict(self, model_id: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(
            "predict", "POST", f"{ML}/models/{model_id}/_predict", {"parameters": dict(parameters)}
        )

    def wait_for_task(self, task_id: str, action: str, timeout_s: float, poll_s: float = 0.25) -> None:
        """Poll an ML task until it completes; a failed task raises with the task's own error."""
        deadline = time.monotonic() + timeout_s
        while True:
            task = self._call(f"{action} (task {task_id})", "GET", f"{ML}/tasks/{task_id}")
            state = task.get("state")
            if state == "COMPLETED":
                return
            if state in ("FAILED", "CANCELLED", "COMPLETED_WITH_ERROR"):
                raise MLCommonsError(action, str(task.get("error") or f"task ended {state}"))
            if time.monotonic() > deadline:
                raise MLCommonsError(action, f"task {task_id} still {state} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    # --- search pipelines and index settings --------------------------------------------------------------

    def all_pipelines(self) -> dict[str, Any]:
        """Every search pipeline of the cluster, by name."""
        try:
            return dict(self._call("read search pipelines", "GET", "/_search/pipeline"))
        except MLCommonsError as error:
            if error.status == 404:  # none defined yet
                return {}
            raise

    def get_pipeline(self, name: str) -> dict[str, Any] | None:
        try:
            return self._call("read search pipeline", "GET", f"/_search/pipeline/{name}").get(name)
        except MLCommonsError as error:
            if error.status == 404:
                return None
            raise

    def put_pipeline(self, name: str, body: Mapping[str, Any]) -> None:
        self._call("create search pipeline", "PUT", f"/_search/pipeline/{name}", body)

    def delete_pipeline(self, name: str) -> None:
        self._call("delete search pipeline", "DELETE", f"/_search/pipeline/{name}")

    def set_index_default_pipeline(self, index: str, pipeline: str | None) -> None:
        self._call(
            "set index.search.default_pipeline",
            "PUT",
            f"/{index}/_settings",
            {"index.search.default_pipeline": pipeline},
        )

    def indices_with_default_pipeline(self, pipeline: str) -> list[str]:
        settings = self._call("read index settings", "GET", "/_all/_settings/index.search.default_pipeline")
        return [
            index
            for index, body in settings.items()
            if body.get("settings", {}).get("index", {}).get("search", {}).get("default_pipeline") == pipeline
        ]

    # --- plumbing ---------------------------------------------------------------------------------------

    def _find(self, path: str, query: Mapping[str, Any]) -> list[StoredObject]:
        body = {"query": query, "size": 1000, "sort": [{"created_time": {"order": "asc"}}]}
        try:
            answer = self._call("search", "POST", path, body)
        except MLCommonsError as error:
            # Before the first connector or model exists, ML Commons has no system index to search.
            if error.status == 404 or "index_not_found" in error.reason:
                return []
            raise
        return [StoredObject(hit["_id"], hit.get("_source", {})) for hit in answer["hits"]["hits"]]

    def _call(
        self,
        action: str,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        # Imported here, like every engine client: `retrosearch --help` must not pay for opensearch-py.
        from opensearchpy import OpenSearchWarning, TransportError

        try:
            with warnings.catch_warnings():
                # ML Commons' search APIs read its system indices on the caller's behalf, and OpenSearch
                # answers each with a deprecation warning about direct system-index access that a user
                # cannot act on.
                warnings.simplefilter("ignore", OpenSearchWarning)
                return self.client.transport.perform_request(method, path, params=params, body=body)
        except TransportError as error:
            status = error.status_code if isinstance(error.status_code, int) else None
            raise MLCommonsError(action, explain_engine_error(error), status) from None
