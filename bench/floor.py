"""The floor for the connector's overhead: the least a Retro* rerank pass-through can do, and nothing more.

An aiohttp server with one pooled aiohttp client. For a Cohere-shaped `POST /v1/rerank` `{query,
documents}` it renders the same Retro* prompt as the connector (`retrostar_search.prompts`: the generic task,
Qwen3's chat template), sends one SGLang `POST /generate` per document with the sampling parameters the
connector sends by default (one sample), all at once, parses `<score>` with the connector's pattern, sorts,
and answers `{"results": [{"index", "relevance_score"}]}` (score / 100). No validation beyond what the
reply needs, no cache, no deadline, no metrics, no logging: whatever the connector spends above this is its
own overhead.

The client pool is bounded like the connector's (256 pairs in flight by default) and keeps idle connections
4 s, under SGLang's 5 s idle close. The event loop is uvloop when installed, as under uvicorn's defaults.

    python bench/floor.py --port 8100 --backend-url http://127.0.0.1:30000

bench/connector_overhead.py starts it in a process of its own next to the connector.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from retrostar_search.backends.base import SamplingParams
from retrostar_search.prompts import ChatFormat, RenderedPrompt, apply_chat_template, render_prefix
from retrostar_search.scoring import SCORE_PATTERN
from retrostar_search.tasks import DEFAULT_TASK

SAMPLING = SamplingParams().for_sglang(1)  # what the connector sends with its default settings
KEEPALIVE_SECONDS = 4.0  # under SGLang's (uvicorn's) 5 s idle close


def create_app(backend_url: str, max_concurrency: int) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    generate_url = f"{backend_url.rstrip('/')}/generate"

    async def open_client(app: web.Application) -> Any:
        connector = aiohttp.TCPConnector(limit=max_concurrency, keepalive_timeout=KEEPALIVE_SECONDS)
        app["client"] = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300))
        yield
        await app["client"].close()

    async def score(client: aiohttp.ClientSession, text: str) -> float:
        async with client.post(generate_url, json={"text": text, "sampling_params": SAMPLING}) as response:
            response.raise_for_status()
            body = await response.json()
        match = SCORE_PATTERN.search(body["text"])
        return min(100, int(match.group(1))) if match else 0

    async def rerank(request: web.Request) -> web.Response:
        body = await request.json()
        prefix = render_prefix(DEFAULT_TASK, body["query"])
        query = body["query"]
        texts = [
            apply_chat_template(RenderedPrompt(query, document, prefix).text, ChatFormat.QWEN3)
            for document in body["documents"]
        ]
        scores = await asyncio.gather(*(score(app["client"], text) for text in texts))
        order = sorted(range(len(scores)), key=lambda index: (-scores[index], index))
        return web.json_response(
            {"results": [{"index": index, "relevance_score": scores[index] / 100} for index in order]}
        )

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.cleanup_ctx.append(open_client)
    app.router.add_post("/v1/rerank", rerank)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--backend-url", default="http://127.0.0.1:30000")
    parser.add_argument("--max-concurrency", type=int, default=256, help="pairs in flight to the backend")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    web.run_app(
        create_app(args.backend_url, args.max_concurrency),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=loop,
    )


if __name__ == "__main__":
    main()
