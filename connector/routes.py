"""The HTTP routes: Cohere's `/v1/rerank` and `/v2/rerank`, the Cohere-or-TEI `/rerank`, and the probes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from connector.auth import require_api_key
from connector.errors import invalid_request
from connector.openapi import METRICS_RESPONSE, error_responses, json_body
from connector.outcomes import RerankOutcome
from connector.responses import cohere_response, json_response, tei_response
from connector.schemas import AnyRerankRequest, CohereRerankRequest, CohereRerankResponse, TEIRank
from connector.service import RerankService
from connector.wire import read_request_body, until_disconnected
from retrostar_search.engines.connector_endpoint import OUTCOMES_PATH
from retrostar_search.errors import InvalidInput
from retrostar_search.reranker import RerankResult

RERANK_ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank")
PROBE_ROUTES = ("/health", "/ready", "/metrics")

RequestT = TypeVar("RequestT", CohereRerankRequest, AnyRerankRequest)

_ERROR_RESPONSES = error_responses(
    {
        401: "Missing or wrong API key.",
        408: "The body did not arrive within body_timeout.",
        413: "Body, query, task, document count or document length over a limit (the message names it).",
        422: "Malformed body (the message names the fields).",
        429: "Too many rerank requests in flight; retry after Retry-After seconds.",
        502: "strict: the backend failed for some documents.",
        504: "strict: the deadline passed before every document was scored.",
    }
)


def _service(request: Request) -> RerankService:
    return request.app.state.service


Service = Annotated[RerankService, Depends(_service)]

router = APIRouter()
rerank_router = APIRouter(
    dependencies=[Depends(require_api_key)], responses=_ERROR_RESPONSES, tags=["rerank"]
)


async def _rerank(
    request: Request, service: RerankService, shape: type[RequestT]
) -> tuple[RequestT, RerankResult, str]:
    received_at = time.perf_counter()
    request_id = uuid.uuid4().hex
    # The whole body first: a slow or vanishing client never holds one of the rerank slots.
    body = await read_request_body(request, service.settings)
    if not body.strip():
        raise InvalidInput("invalid request: the body is empty; expected JSON")
    try:
        # Validated straight from bytes in one pass, whatever Content-Type the client sent.
        parsed = shape.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_request(exc) from None
    del body  # the parsed request holds the text now; a 32 MiB body need not stay twice
    result = await until_disconnected(
        service.rerank(parsed, request_id, received_at), request.receive, f"rerank {request_id}"
    )
    return parsed, result, request_id


def _cohere_answer(
    parsed: CohereRerankRequest | AnyRerankRequest,
    result: RerankResult,
    request_id: str,
    service: RerankService,
    api_version: str,
) -> Response:
    content = cohere_response(
        result,
        request_id=request_id,
        model=service.model,
        api_version=api_version,
        top_n=parsed.top_n,
        return_documents=parsed.return_documents,
        return_explanations=parsed.return_explanations,
    )
    return json_response(content, request_id=request_id, degraded=result.degraded)


def _cohere_route(api_version: str) -> Callable[[Request, RerankService], Awaitable[Response]]:
    async def rerank(request: Request, service: Service) -> Response:
        parsed, result, request_id = await _rerank(request, service, CohereRerankRequest)
        return _cohere_answer(parsed, result, request_id, service, api_version)

    return rerank


for _version in ("1", "2"):
    rerank_router.post(
        f"/v{_version}/rerank",
        name=f"rerank_v{_version}",
        response_model=CohereRerankResponse,
        openapi_extra=json_body(CohereRerankRequest),
        summary=f"Rerank documents (Cohere v{_version} shape)",
    )(_cohere_route(_version))


@rerank_router.post(
    "/rerank",
    response_model=CohereRerankResponse | list[TEIRank],
    openapi_extra=json_body(AnyRerankRequest),
    summary="Rerank documents (Cohere shape with `documents`, TEI's with `texts`)",
)
async def rerank_any(request: Request, service: Service) -> Response:
    parsed, result, request_id = await _rerank(request, service, AnyRerankRequest)
    if not parsed.is_tei:
        return _cohere_answer(parsed, result, request_id, service, api_version="1")
    ranks = tei_response(
        result, return_text=parsed.return_text, return_explanations=parsed.return_explanations
    )
    return json_response(ranks, request_id=request_id, degraded=result.degraded)


@router.get("/health", tags=["probes"], summary="Alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@rerank_router.get(
    f"{OUTCOMES_PATH}/{{fingerprint}}",
    response_model=RerankOutcome,
    summary="How a recent rerank went, by the fingerprint of its query and documents",
    responses=error_responses({404: "No recent rerank with this fingerprint."}),
)
async def rerank_outcome(
    service: Service, fingerprint: Annotated[str, Path(pattern="^[0-9a-f]{32}$")]
) -> RerankOutcome:
    outcome = service.outcomes.get(fingerprint)
    if outcome is None:
        raise HTTPException(404, "no recent rerank with this fingerprint")
    return outcome


@router.get(
    "/ready",
    tags=["probes"],
    summary="Backend reachable (200) or not (503), and who scores",
    responses={503: {"description": "The backend does not answer."}},
)
async def ready(service: Service) -> JSONResponse:
    backend = service.reranker.backend
    # Who scores, ready or not: the backend, the model and the task Retro* judges relevance under.
    scorer = {
        "backend": backend.kind,
        "model": backend.model,
        "task": service.default_task.model_dump(),
        "cascade": str(service.reranker.cascade),
    }
    if await backend.ready():
        return JSONResponse({"status": "ready", **scorer})
    return JSONResponse(
        {"status": "unavailable", "message": f"the {backend.kind} backend is not reachable", **scorer},
        status_code=503,
    )


@router.get(
    "/metrics",
    tags=["probes"],
    summary="Prometheus metrics",
    response_class=Response,
    responses=METRICS_RESPONSE,
)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


router.include_router(rerank_router)
