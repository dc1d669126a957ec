"""The explorer's HTTP side: the page at `/explore`, its static files, and the JSON API the page calls.

The page is static and holds no secrets; it asks for the connector's API key only when the API answers
401, and keeps it in the tab's sessionStorage. The API sits behind the same key as the rerank routes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from connector.auth import require_api_key
from connector.explorer.catalog import searchable_indices
from connector.explorer.engines import ExplorerEngines
from connector.explorer.events import recent_events
from connector.explorer.search import explore_search
from connector.limits import check_query
from connector.openapi import error_responses
from connector.routes import Service
from connector.schemas import NON_BLANK, WHITESPACE
from connector.service import RerankService
from connector.wire import until_disconnected
from retrostar_search.engines.connection import Engine
from retrostar_search.engines.errors import describe_engine_error, engine_errors, http_status
from retrostar_search.errors import EngineError, InvalidInput

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE = STATIC_DIR / "explore.html"

# Counted by route in the request metrics (the static files share the "unmatched" label).
EXPLORER_ROUTES = (
    "/explore",
    "/explore/api/config",
    "/explore/api/indices",
    "/explore/api/search",
    "/explore/api/events",
)

DEFAULT_CANDIDATES = 20
MAX_CANDIDATES = 100
DEFAULT_EVENTS = 20
MAX_EVENTS = 200

# An index or alias name as the engines allow it, minus what would widen a search beyond the one index the
# page picked: wildcards, lists, remote clusters and dot- or underscore-prefixed system names.
_INDEX_NAME = re.compile(rf'[^._\-+\\/*?"<>|{WHITESPACE},#:][^\\/*?"<>|{WHITESPACE},#:]{{0,254}}')

# The page runs only its own script and style and talks only to this connector: injected markup could
# neither load nor send anything.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

ResultT = TypeVar("ResultT")


def _explorer(request: Request) -> ExplorerEngines:
    return request.app.state.explorer


Explorer = Annotated[ExplorerEngines, Depends(_explorer)]

page_router = APIRouter()
api_router = APIRouter(
    prefix="/explore/api",
    tags=["explorer"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses(
        {
            401: "Missing or wrong API key.",
            422: "A bad parameter (the message names it).",
            502: "The engine failed; the message says how (never with its URL).",
        }
    ),
)


@page_router.get("/explore", include_in_schema=False)
async def explore_page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html", headers=_PAGE_HEADERS)


@api_router.get("/config", summary="What the page can offer: engines, the log, limits")
async def config(explorer: Explorer, service: Service) -> dict[str, Any]:
    return {
        "engines": [engine.value for engine in explorer.engines],
        "default_engine": explorer.default_engine.value,
        "log_enabled": explorer.log_client is not None,
        "model": service.model,
        "backend": service.reranker.backend.kind,
        # What Retro* judges relevance under: the page shows it in its header.
        "task": service.default_task.model_dump(),
        "candidates": {"default": DEFAULT_CANDIDATES, "max": _max_candidates(service)},
    }


@api_router.get("/indices", summary="Indices to search (system and rerank-log indices left out)")
async def indices(explorer: Explorer, engine: Engine | None = None) -> dict[str, Any]:
    client = _search_client(explorer, engine)
    found = await _engine_call("listing indices", searchable_indices, client, explorer.log_index)
    return {"indices": found}


@api_router.get(
    "/search",
    summary="First-stage hits and the same hits reranked, with the reasoning",
    responses=error_responses(
        {
            404: "The engine has no such index or alias.",
            413: "The query or the hits over a rerank limit (the message names it).",
            429: "Too many rerank requests in flight; retry after Retry-After seconds.",
            504: "strict: the deadline passed before every hit was scored.",
        }
    ),
)
async def search(
    request: Request,
    explorer: Explorer,
    service: Service,
    # The patterns are checked below, with messages of their own; they are stated here for the schema.
    q: Annotated[
        str, Query(min_length=1, json_schema_extra={"pattern": NON_BLANK}, description="The query.")
    ],
    index: Annotated[
        str,
        Query(json_schema_extra={"pattern": f"^{_INDEX_NAME.pattern}$"}, description="One index or alias."),
    ],
    engine: Engine | None = None,
    candidates: Annotated[
        int, Query(ge=1, le=MAX_CANDIDATES, description="First-stage hits to rerank.")
    ] = DEFAULT_CANDIDATES,
) -> dict[str, Any]:
    if not q.strip():
        raise InvalidInput("invalid request: q must not be empty")
    check_query(q, service.settings)  # before the engine is asked
    if not _INDEX_NAME.fullmatch(index):
        raise InvalidInput(
            "invalid request: index must name one index or alias: no wildcards, commas or remote "
            "clusters, and no leading '.', '_', '-' or '+'"
        )
    client = _search_client(explorer, engine)
    request_id = uuid.uuid4().hex
    try:
        answer = await until_disconnected(
            explore_search(service, client, index, q, candidates, request_id),
            request.receive,
            f"explorer search {request_id}",
        )
    except engine_errors() as error:
        if http_status(error) == 404:
            raise HTTPException(404, f"searching failed: no index or alias {index} on the engine") from None
        raise _engine_failure("searching", error) from None
    return {**answer, "engine": (engine or explorer.default_engine).value}


@api_router.get("/events", summary="Recent rerank events from the rerank log, newest first")
async def events(
    explorer: Explorer, limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = DEFAULT_EVENTS
) -> dict[str, Any]:
    if explorer.log_client is None or explorer.log_index is None:
        return {
            "enabled": False,
            "events": [],
            "note": "The rerank log is off: start the connector with --log-url to record reranks.",
        }
    found = await _engine_call(
        "reading the rerank log", recent_events, explorer.log_client, explorer.log_index, limit
    )
    return {"enabled": True, "index": explorer.log_index, "events": found}


def install_explorer(app: FastAPI) -> None:
    app.include_router(page_router)
    app.include_router(api_router)
    app.mount("/explore/static", StaticFiles(directory=STATIC_DIR), name="explore-static")


def _max_candidates(service: RerankService) -> int:
    return min(MAX_CANDIDATES, service.settings.max_documents)


def _search_client(explorer: ExplorerEngines, engine: Engine | None) -> Any:
    chosen = engine or explorer.default_engine
    client = explorer.search_clients.get(chosen)
    if client is None:
        configured = ", ".join(engine.value for engine in explorer.engines)
        raise InvalidInput(f"invalid request: engine {chosen.value} is not configured ({configured} is)")
    return client


async def _engine_call(what: str, function: Callable[..., ResultT], *args: Any) -> ResultT:
    # The engine clients are synchronous: a worker thread keeps the event loop free for reranks.
    try:
        return await run_in_threadpool(function, *args)
    except engine_errors() as error:
        raise _engine_failure(what, error) from None


def _engine_failure(what: str, error: Exception) -> EngineError:
    return EngineError(f"{what} failed: {describe_engine_error(error)}")
