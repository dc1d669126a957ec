"""Putting the log's index template and retention policy on the engine, idempotently.

Retention deletes whole daily indices once they are older than the configured number of days: an ISM
policy on OpenSearch (attached to new log indices by its `ism_template`), an ILM policy on Elasticsearch
(named in the template's `index.lifecycle.name`). Age counts from index creation, and each index holds one
UTC day, so a day's events are kept for at least that many days.

Some clusters lack the retention API (OpenSearch without the index-management plugin, Elasticsearch
without the ILM module, as in the integ-test distributions). The template then goes in without a policy
and the report says why: logging works, old indices just stay until someone deletes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from retrostar_search.engines.connection import Engine
from retrostar_search.engines.errors import describe_engine_error
from retrostar_search.rerank_log.schema import (
    TEMPLATE_META,
    index_pattern,
    index_template,
    retention_policy_name,
    template_name,
)

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch
    from opensearchpy import OpenSearch

# ISM's own priority among policies whose ism_template matches the same new index.
ISM_TEMPLATE_PRIORITY = 100


class RetentionStatus(StrEnum):
    """What became of the retention policy."""

    INSTALLED = "installed"
    UNSUPPORTED = "unsupported"  # the engine has no ISM / ILM API
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class InstallReport:
    """What `install` did: the template is what matters for writing; `message` says why when something
    did not go in."""

    template_installed: bool
    retention: RetentionStatus
    policy_name: str
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether events can be written: the template is what types them; retention is best effort."""
        return self.template_installed


def ism_policy(prefix: str, retention_days: int) -> dict[str, Any]:
    """Body of `PUT _plugins/_ism/policies/<name>`: keep a log index `retention_days`, then delete it."""
    return {
        "policy": {
            "description": f"Delete {index_pattern(prefix)} indices {retention_days} days after creation "
            f"({TEMPLATE_META['managed_by']}).",
            "default_state": "hot",
            "states": [
                {
                    "name": "hot",
                    "actions": [],
                    "transitions": [
                        {"state_name": "delete", "conditions": {"min_index_age": f"{retention_days}d"}}
                    ],
                },
                {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
            ],
            "ism_template": [{"index_patterns": [index_pattern(prefix)], "priority": ISM_TEMPLATE_PRIORITY}],
        }
    }


def ilm_policy(retention_days: int) -> dict[str, Any]:
    """The `policy` of `PUT _ilm/policy/<name>`: no rollover (indices are daily), delete after the age."""
    return {
        "_meta": TEMPLATE_META,
        "phases": {
            "hot": {"min_age": "0ms", "actions": {}},
            "delete": {"min_age": f"{retention_days}d", "actions": {"delete": {}}},
        },
    }


def install(
    client: OpenSearch | Elasticsearch, engine: Engine, prefix: str, retention_days: int
) -> InstallReport:
    """Install (or update) the retention policy, then the index template; never raises for engine errors."""
    if engine is Engine.OPENSEARCH:
        retention, message = _install_ism(client, prefix, retention_days)  # type: ignore[arg-type]
        extra_settings: dict[str, Any] = {}
    else:
        retention, message = _install_ilm(client, prefix, retention_days)  # type: ignore[arg-type]
        # Only name a policy that exists: without the ILM module the setting itself is unknown and
        # every index creation would fail.
        installed = retention is RetentionStatus.INSTALLED
        extra_settings = {"index.lifecycle.name": retention_policy_name(prefix)} if installed else {}
    try:
        client.indices.put_index_template(
            name=template_name(prefix), body=index_template(prefix, extra_settings)
        )
    except Exception as error:  # any failure leaves the log unwritable; the report carries why
        return InstallReport(
            template_installed=False,
            retention=retention,
            policy_name=retention_policy_name(prefix),
            message=f"index template: {describe_engine_error(error)}",
        )
    return InstallReport(
        template_installed=True,
        retention=retention,
        policy_name=retention_policy_name(prefix),
        message=message,
    )


def _install_ism(client: OpenSearch, prefix: str, retention_days: int) -> tuple[RetentionStatus, str]:
    name = retention_policy_name(prefix)
    body = ism_policy(prefix, retention_days)
    ism = client.plugins.index_management
    try:
        existing = _existing_ism_policy(client, name)
        # ISM refuses a PUT over an existing policy unless it names the version it replaces.
        params = (
            {"if_seq_no": existing["_seq_no"], "if_primary_term": existing["_primary_term"]}
            if existing is not None
            else None
        )
        ism.put_policy(policy=name, body=body, params=params)
    except Exception as error:
        return _retention_failure(error, "ISM (index-management plugin)")
    return RetentionStatus.INSTALLED, ""


def _existing_ism_policy(client: OpenSearch, name: str) -> dict[str, Any] | None:
    from opensearchpy.exceptions import NotFoundError

    try:
        return client.plugins.index_management.get_policy(policy=name)
    except NotFoundError:
        return None


def _install_ilm(client: Elasticsearch, prefix: str, retention_days: int) -> tuple[RetentionStatus, str]:
    try:
        client.ilm.put_lifecycle(name=retention_policy_name(prefix), policy=ilm_policy(retention_days))
    except Exception as error:
        return _retention_failure(error, "ILM")
    return RetentionStatus.INSTALLED, ""


def _retention_failure(error: Exception, api: str) -> tuple[RetentionStatus, str]:
    if "no handler found" in str(error):
        return RetentionStatus.UNSUPPORTED, f"the engine has no {api} API; old log indices are not deleted"
    return RetentionStatus.FAILED, f"retention policy: {describe_engine_error(error)}"
