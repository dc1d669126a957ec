"""The connector's FastAPI app: `create_app(settings)` wires settings, backend, reranker, routes, errors and
metrics together; `retrosearch serve` runs it under uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from connector.errors import install_error_handlers
from connector.factory import build_backend, build_cache, build_reranker
from connector.metrics import ConnectorMetrics, RequestMetricsMiddleware
from connector.openapi import publish_request_schemas
from connector.routes import PROBE_ROUTES, RERANK_ROUTES, router
from connector.schemas import AnyRerankRequest, CohereRerankRequest
from connector.service import RerankService
from connector.settings import ConnectorSettings
from retrostar_search import __version__
from retrostar_search.backends.base import Backend

DESCRIPTION = """Reranks documents with Retro*, an LLM that reasons about relevance and ends with a 0-100
score, served by SGLang. Speaks Cohere's rerank API (what OpenSearch's and Elasticsearch's rerank
connectors call) and Hugging Face TEI's; `relevance_score` is the Retro* score / 100."""


def create_app(settings: ConnectorSettings | None = None, backend: Backend | None = None) -> FastAPI:
    """The connector app. The backend is built from `settings` at startup unless one is given (the caller
    then owns it and closes it)."""
    settings = settings or ConnectorSettings()
    metrics = ConnectorMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Built inside the server's event loop: HTTP clients and engines bind to the loop that uses them.
        active_backend = backend or build_backend(settings)
        cache = build_cache(settings)
        app.state.service = RerankService(settings, build_reranker(settings, active_backend, cache), metrics)
        try:
            yield
        finally:
            if backend is None:
                await active_backend.aclose()
            if cache is not None:
                cache.close()

    app = FastAPI(
        title="Retro* rerank connector", description=DESCRIPTION, version=__version__, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics, routes=RERANK_ROUTES + PROBE_ROUTES)
    publish_request_schemas(app, [CohereRerankRequest, AnyRerankRequest])
    return app
