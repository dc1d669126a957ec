"""Wiring the Retro* connector into Elasticsearch (8.19, 9.1+) as a `custom` rerank inference endpoint.

The endpoint lets the `text_similarity_reranker` retriever rerank inside a search. Both need an
Enterprise licence (or the trial); on Basic, Elasticsearch refuses them and the way to rerank is
client-side (``retrosearch search --engine elasticsearch``, see ``engines.search.rerank_client_side``).
The `custom` service came with 8.19.0 and 9.1.0 (elasticsearch-specification, inference/put_custom:
`@availability stack since=8.19.0`; the 9.x line has it from 9.1), so setup reads the cluster's version
first and says so on 9.0 or before 8.19 rather than sending a body the cluster cannot parse.

What the retriever does with the endpoint's answer (Elasticsearch's
TextSimilarityRankFeaturePhaseRankCoordinatorContext): one inference call for the whole
`rank_window_size`; scores are placed by `index`, and fewer scores than documents fail the search
("Reranker input document count and returned score count mismatch"); `min_score` is compared with the
endpoint's raw score; the raw score `s` then becomes the hit's `_score` as `max(s, 0) + min(exp(s), 1)`,
so the connector's 0-1 relevance (Retro* / 100) comes back as 1.0-2.0, in the same order.

The custom service's template rules (Elasticsearch's `inference.put_custom` API specification and its
`CustomService`/`CustomRequest`/`ValidatingSubstitutor` sources), which ``template_violations`` checks:

- ``${name}`` placeholders are replaced in `url`, `headers`, `query_parameters` and `request`; a
  placeholder left without a value fails the endpoint's creation (Elasticsearch renders the templates
  with a mock query and input when the endpoint is created);
- in `request`, the values are JSON: ``${query}`` becomes a JSON string and ``${input}`` a JSON array of
  strings, so they must not be wrapped in quotes; ``${top_n}`` and ``${return_documents}`` exist only
  when the caller sets them, which the retriever does not, so a template for it must not use them;
- in `url`, `headers` and `query_parameters` only `secret_parameters` and `task_settings.parameters`
  are available, as plain strings;
- `request` is a string; `response.json_parser` of a rerank endpoint needs `relevance_score` and may
  have `reranked_index` and `document_text`, nothing else; unknown `service_settings` keys are refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from retrostar_search.engines.connector_endpoint import (
    MASK,
    NO_API_KEY,
    RERANK_PATH,
    PlannedRequest,
    connector_base_url,
)
from retrostar_search.engines.errors import explain_engine_error
from retrostar_search.engines.search import first_stage_body
from retrostar_search.engines.versions import version_tuple
from retrostar_search.errors import EngineError, Unavailable

if TYPE_CHECKING:
    from elasticsearch import ApiError

ENTERPRISE_LICENCES = frozenset({"enterprise", "trial"})
SERVICE_SETTINGS_KEYS = frozenset(
    {"url", "headers", "query_parameters", "request", "response", "secret_parameters", "rate_limit",
     "input_type", "batch_size"}
)  # fmt: skip
RERANK_PARSER_KEYS = frozenset({"relevance_score", "reranked_index", "document_text"})
# What a rerank request from the text_similarity_reranker retriever fills in `request`.
RETRIEVER_REQUEST_VALUES = {"query": json.dumps("test query"), "input": json.dumps(["test input"])}
# Same pattern as Elasticsearch's ValidatingSubstitutor: `${...}` on one line.
_PLACEHOLDER = re.compile(r"\$\{([^}\n]*)\}")
_QUOTED_PLACEHOLDER = re.compile(r"\"\$\{[^}\n]*\}\"")


@dataclass(frozen=True)
class InferenceWiring:
    connector_url: str
    inference_id: str = "retrostar"
    connector_api_key: SecretStr | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "connector_url", connector_base_url(self.connector_url))


def inference_endpoint_body(wiring: InferenceWiring, mask_secrets: bool = False) -> dict[str, Any]:
    """`PUT _inference/rerank/<id>` for the connector: Cohere's rerank shape, every document scored."""
    if wiring.connector_api_key is None:
        api_key = NO_API_KEY  # the header template needs a value; a keyless connector ignores it
    else:
        api_key = MASK if mask_secrets else wiring.connector_api_key.get_secret_value()
    return {
        "service": "custom",
        "service_settings": {
            "url": wiring.connector_url + RERANK_PATH,
            "headers": {"Authorization": "Bearer ${api_key}", "Content-Type": "application/json"},
            # No top_n: the connector then answers one result per document, which the retriever requires.
            "request": '{"query": ${query}, "documents": ${input}}',
            "response": {
                "json_parser": {
                    "relevance_score": "$.results[*].relevance_score",
                    "reranked_index": "$.results[*].index",
                }
            },
            "secret_parameters": {"api_key": api_key},
        },
    }


def dry_run_plan(wiring: InferenceWiring) -> list[PlannedRequest]:
    """The one call `setup elasticsearch` makes, secrets masked."""
    return [
        PlannedRequest(
            "create the rerank inference endpoint (replaced if it exists)",
            "PUT",
            f"/_inference/rerank/{wiring.inference_id}",
            inference_endpoint_body(wiring, mask_secrets=True),
        )
    ]


def template_violations(body: Mapping[str, Any]) -> list[str]:
    """What Elasticsearch's custom service would refuse (or mis-render) in a rerank endpoint body."""
    problems: list[str] = []
    if body.get("service") != "custom":
        problems.append("service must be 'custom'")
    settings = body.get("service_settings")
    if not isinstance(settings, Mapping):
        return [*problems, "service_settings must be an object"]
    problems += [
        f"unknown service_settings key {key!r}" for key in settings if key not in SERVICE_SETTINGS_KEYS
    ]

    secrets = settings.get("secret_parameters") or {}
    task_parameters = (body.get("task_settings") or {}).get("parameters") or {}
    problems += [
        f"secret_parameters.{key} must be a string"
        for key, value in secrets.items()
        if not isinstance(value, str)
    ]
    string_values = {**{k: str(v) for k, v in task_parameters.items()}, **secrets}

    url = settings.get("url")
    if not isinstance(url, str) or not url:
        problems.append("url is required")
    else:
        problems += _unresolved(url, "url", string_values)
    for name, value in (settings.get("headers") or {}).items():
        problems += _unresolved(str(value), f"headers.{name}", string_values)

    request = settings.get("request")
    if not isinstance(request, str):
        problems.append("request must be a string (a JSON template)")
    else:
        if _QUOTED_PLACEHOLDER.search(request):
            problems.append("request: placeholders must not be surrounded by quotes")
        json_values = {
            **{k: json.dumps(v) for k, v in task_parameters.items()},
            **{k: json.dumps(v) for k, v in secrets.items()},
            **RETRIEVER_REQUEST_VALUES,
        }
        unresolved = _unresolved(request, "request", json_values)
        problems += unresolved
        if not unresolved:
            rendered = _PLACEHOLDER.sub(lambda match: json_values[match.group(1)], request)
            try:
                json.loads(rendered)
            except ValueError as error:
                problems.append(f"request does not render to JSON: {error}")

    parser = ((settings.get("response") or {}).get("json_parser")) or {}
    if "relevance_score" not in parser:
        problems.append("response.json_parser.relevance_score is required for rerank")
    problems += [
        f"unknown response.json_parser key {key!r}" for key in parser if key not in RERANK_PARSER_KEYS
    ]
    return problems


def retriever_example(
    inference_id: str, query: str, field: str = "text", rank_window_size: int = 50
) -> dict[str, Any]:
    """A search body that reranks the BM25 top `rank_window_size` through the endpoint."""
    first_stage = first_stage_body(query, size=rank_window_size)
    return {
        "retriever": {
            "text_similarity_reranker": {
                "retriever": {"standard": {"query": first_stage["query"]}},
                "field": field,
                "inference_id": inference_id,
                "inference_text": query,
                "rank_window_size": rank_window_size,
            }
        },
        "size": 10,
    }


class ElasticsearchSetupError(EngineError):
    """A failed step; the message is meant for the user as is."""


class LicenceError(ElasticsearchSetupError, Unavailable):
    """The cluster's licence does not include the inference API's custom service."""


class NoInferenceApiError(ElasticsearchSetupError, Unavailable):
    """The cluster has no inference API at all (a distribution without the inference plugin)."""


class NoCustomServiceError(ElasticsearchSetupError, Unavailable):
    """The cluster's version has no `custom` inference service (before 8.19, and 9.0)."""


def custom_service_problem(version: str) -> str | None:
    """Why an Elasticsearch of `version` has no `custom` inference service, or None when it has one."""
    numbers = version_tuple(version)
    if numbers >= (9, 1) or (8, 19) <= numbers < (9, 0):
        return None
    return (
        f"Elasticsearch {version} has no `custom` inference service: it came with 8.19 and 9.1. "
        "Upgrade, or rerank client-side: retrosearch search --engine elasticsearch"
    )


def retriever_score(raw: float) -> float:
    """The `_score` the text_similarity_reranker gives a hit whose endpoint score is `raw`."""
    return max(raw, 0.0) + min(math.exp(raw), 1.0)


def cluster_version(client: Any) -> str:
    """The lowest version among the nodes, from `_nodes` (Elasticsearch's integ-test zips answer no `GET /`)."""
    nodes = client.nodes.info(filter_path="nodes.*.version")["nodes"]
    return min((node["version"] for node in nodes.values()), key=version_tuple)


def licence_explanation(licence: str | None, es_url: str) -> str:
    runs = f"runs a {licence!r} licence" if licence else "refused the request for its licence"
    return (
        f"Elasticsearch at {es_url} {runs}. The inference API's custom service and the "
        "text_similarity_reranker retriever need an Enterprise licence (or the 30-day trial: "
        "POST _license/start_trial?acknowledge=true). On this cluster, rerank client-side instead: "
        'retrosearch search "your query" --engine elasticsearch --index <index> --url '
        f"{es_url} --connector-url <connector URL>"
    )


def licence_type(client: Any) -> str:
    return str(client.license.get()["license"]["type"]).lower()


def create_inference_endpoint(client: Any, wiring: InferenceWiring, es_url: str) -> dict[str, Any]:
    """Create (or replace) the endpoint; raise `LicenceError` on a licence without it, before trying."""
    from elasticsearch import ApiError

    body = inference_endpoint_body(wiring)
    try:
        problem = custom_service_problem(cluster_version(client))
        if problem:
            raise NoCustomServiceError(problem)
        licence = licence_type(client)
        if licence not in ENTERPRISE_LICENCES:
            raise LicenceError(licence_explanation(licence, es_url))
        if _endpoint_exists(client, wiring.inference_id):
            client.inference.delete(task_type="rerank", inference_id=wiring.inference_id)
        answer = client.inference.put(
            task_type="rerank", inference_id=wiring.inference_id, inference_config=body
        )
    except ApiError as error:
        raise _setup_error(error, es_url) from None
    return dict(answer)


def delete_inference_endpoint(client: Any, inference_id: str, es_url: str) -> bool:
    """Remove the endpoint; False when there was none."""
    from elasticsearch import ApiError

    try:
        if not _endpoint_exists(client, inference_id):
            return False
        client.inference.delete(task_type="rerank", inference_id=inference_id)
    except ApiError as error:
        raise _setup_error(error, es_url) from None
    return True


def _endpoint_exists(client: Any, inference_id: str) -> bool:
    from elasticsearch import NotFoundError

    try:
        client.inference.get(task_type="rerank", inference_id=inference_id)
    except NotFoundError:
        return False
    return True


def _setup_error(error: ApiError, es_url: str) -> ElasticsearchSetupError:
    reason = explain_engine_error(error)
    if error.meta.status == 403 and "licen" in reason.lower():
        return LicenceError(f"{licence_explanation(None, es_url)}\nElasticsearch said: {reason}")
    if "no handler found" in reason:
        # The route is missing: a distribution without the inference plugin (such as the integ-test zip).
        return NoInferenceApiError(
            f"Elasticsearch at {es_url} has no inference API ({reason}). Rerank client-side instead: "
            "retrosearch search --engine elasticsearch"
        )
    return ElasticsearchSetupError(f"Elasticsearch refused the inference endpoint: {reason}")


def _unresolved(template: str, where: str, values: Mapping[str, str]) -> list[str]:
    return [
        f"{where}: placeholder ${{{name}}} has no value (the retriever fills only query and input)"
        if name in ("top_n", "return_documents")
        else f"{where}: placeholder ${{{name}}} has no value"
        for name in _PLACEHOLDER.findall(template)
        if name not in values
    ]
