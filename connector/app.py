"""The connector's FastAPI app: `create_app(settings)` wires settings, backend, reranker, rerank log,
explorer, routes, errors and metrics together; `retrosearch serve` runs it under uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, closing

from fastapi import FastAPI

from connector.errors import install_error_handlers
from connector.explorer.engines import ExplorerEngines
from connector.explorer.routes import EXPLORER_ROUTES, install_explorer
from connector.metrics import ConnectorMetrics, RequestMetricsMiddleware
from connector.openapi import publish_request_schemas
from connector.pages import install_pages
from connector.rerank_log import RerankLogMetrics, RerankLogWriter
from connector.routes import PROBE_ROUTES, RERANK_ROUTES, router
from connector.schemas import AnyRerankRequest, CohereRerankRequest
from connector.service import RerankService
from connector.settings import ConnectorSettings
from retrostar_search import __version__
from retrostar_search.backends.base import Backend
from retrostar_search.reranker import Reranker

DESCRIPTION = """Reranks documents with Retro*, an LLM that reasons about relevance and ends with a 0-100
score, served by SGLang. Speaks Cohere's rerank API (what OpenSearch's and Elasticsearch's rerank
connectors call) and Hugging Face TEI's; `relevance_score` is the Retro* score / 100 (banded by stage with a
cascade, so that promoted documents sort first), `retrostar_score` the Retro* score itself."""


def create_app(settings: ConnectorSettings | None = None, backend: Backend | None = None) -> FastAPI:
    """The connector app. The backend is built from `settings` at startup unless one is given (the caller
    then owns it and closes it)."""
    settings = settings or ConnectorSettings()
    metrics = ConnectorMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Built inside the server's event loop: HTTP clients and engines bind to the loop that uses them.
        # Torn down in reverse: the explorer's clients, then the log (writing what is queued), then the
        # reranker (its cache and the backend it built).
        async with AsyncExitStack() as resources:
            reranker = await resources.enter_async_context(Reranker.from_settings(settings, backend=backend))
            rerank_log = await resources.enter_async_context(_rerank_log(settings, metrics))
            app.state.service = RerankService(settings, reranker, metrics, rerank_log)
            if settings.explore:
                app.state.explorer = resources.enter_context(closing(ExplorerEngines.from_settings(settings)))
            yield

    app = FastAPI(
        title="Retro* rerank connector",
        description=DESCRIPTION,
        version=__version__,
        lifespan=lifespan,
        # Served by install_pages with their assets from this install: FastAPI's load them from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(router)
    install_pages(app, explorer=settings.explore)
    if settings.explore:
        install_explorer(app)
    install_error_handlers(app)
    counted_routes = RERANK_ROUTES + PROBE_ROUTES + (EXPLORER_ROUTES if settings.explore else ())
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics, routes=counted_routes)
    publish_request_schemas(app, [CohereRerankRequest, AnyRerankRequest], settings)
    return app


@asynccontextmanager
async def _rerank_log(
    settings: ConnectorSettings, metrics: ConnectorMetrics
) -> AsyncIterator[RerankLogWriter | None]:
    """The running rerank-log writer with its counters on /metrics; None when no log URL is set."""
    if not settings.log_enabled:
        yield None
        return
    log_metrics = RerankLogMetrics(metrics.registry)
    writer = RerankLogWriter(settings, observer=log_metrics.observe)
    await writer.start()
    try:
        yield writer
    finally:
        await writer.stop()
        log_metrics.unregister()
