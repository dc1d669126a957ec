"""The pages a person opens in a browser: `/` (what this server is and where to go) and the API docs at
`/docs` and `/redoc`, served with their assets from this install, never from a CDN.

FastAPI's own docs pages load Swagger UI and ReDoc from jsDelivr, so on a host without internet `/docs` is
blank. The assets come from the `fastapi-offline` wheel (its `static/` folder: Swagger UI 5, which reads
OpenAPI 3.1, and ReDoc 2) through FastAPI's self-hosting recipe: docs_url and redoc_url off, these routes
and a static mount instead.
"""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
ASSETS_PATH = "/docs/assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
FAVICON = f"{ASSETS_PATH}/favicon.png"

# The home page runs no script and loads only its own inline style.
_HOME_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def install_pages(app: FastAPI, *, explorer: bool) -> None:
    """Add `/`, `/docs`, `/redoc` and their assets to an app created with docs_url=None, redoc_url=None."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    def url(request: Request, path: str) -> str:
        # Behind a proxy that serves the connector under a prefix, every URL the pages load carries it.
        return f"{request.scope.get('root_path', '')}{path}"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=url(request, str(app.openapi_url)),
            title=f"{app.title} - API docs",
            oauth2_redirect_url=url(request, f"{DOCS_PATH}/oauth2-redirect"),
            swagger_js_url=url(request, f"{ASSETS_PATH}/swagger-ui-bundle.js"),
            swagger_css_url=url(request, f"{ASSETS_PATH}/swagger-ui.css"),
            swagger_favicon_url=url(request, FAVICON),
        )

    @app.get(f"{DOCS_PATH}/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        script, favicon = url(request, f"{ASSETS_PATH}/redoc.standalone.js"), url(request, FAVICON)
        openapi = url(request, str(app.openapi_url))
        return get_redoc_html(
            openapi_url=openapi, title=f"{app.title} - ReDoc", redoc_js_url=script, redoc_favicon_url=favicon,
            with_google_fonts=False,
        )  # fmt: skip

    @app.get("/", include_in_schema=False)
    async def home() -> HTMLResponse:
        return HTMLResponse(home_page(app.title, app.version, explorer=explorer), headers=_HOME_HEADERS)


def home_page(title: str, version: str, *, explorer: bool) -> str:
    """A page of relative links (they work behind a proxy that serves the connector under a prefix)."""
    links = [("docs", "API docs", "the rerank API (Cohere v1/v2, TEI), tried from the browser")]
    if explorer:
        links.append(
            ("explore", "Explorer", "first-stage hits beside the Retro* reranking, with the reasoning")
        )
    links += [
        ("ready", "/ready", "is the model backend reachable, and who scores (backend, model, task)"),
        ("health", "/health", "is this server alive"),
        ("metrics", "/metrics", "Prometheus metrics"),
    ]
    items = "\n".join(
        f'    <li><a href="{href}">{html.escape(label)}</a>: {html.escape(what)}</li>'
        for href, label, what in links
    )
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{html.escape(title)}</title>
  <style>body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 3rem auto; }}</style>
</head>
<body>
  <h1>{html.escape(title)}</h1>
  <p>retrostar-search {html.escape(version)}. Rerank requests go to <code>POST /v1/rerank</code>.</p>
  <ul>
{items}
  </ul>
</body>
</html>
"""
