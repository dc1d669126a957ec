"""A scripted stand-in for an SGLang server: the only test double in this project.

It speaks SGLang's real HTTP API (`POST /generate`, `POST /v1/chat/completions`, `GET /health`,
`GET /get_model_info`, `GET /v1/models`), reads the query and the document back out of the Retro* prompt,
and answers a Retro*-style trajectory ending in `<score>N</score>` with a deterministic score:

- a document containing `[[retrostar:N]]` scores N; `[[retrostar:70,80,90]]` gives the samples in turn;
- otherwise `expected_score(query, document)`, a stable hash of the pair on 0..100.

Scripted failure modes, chosen by markers in the document (or `--latency` for every request):
`[[slow:SECONDS]]` sleeps before answering, `[[error:STATUS]]` answers that HTTP status,
`[[malformed]]` answers a body that is not JSON, `[[noscore]]` answers a trajectory without a score.

Run it on its own for demos and benchmarks: `python -m tests.scripted_sglang --port 30000 --latency 0.05`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

MODEL = "ljw13/retro-star-qwen3-14b-0928"
_QUERY = re.compile(r"\[Begin of Query\]\n(.*?)\n\[End of Query\]", re.DOTALL)
_DOCUMENT = re.compile(r"\[Begin of Document\]\n(.*)\n\[End of Document\]\n", re.DOTALL)
_SCORES = re.compile(r"\[\[retrostar:([0-9, ]+)\]\]")
_SLOW = re.compile(r"\[\[slow:([0-9.]+)\]\]")
_ERROR = re.compile(r"\[\[error:([0-9]{3})\]\]")


def expected_score(query: str, document: str) -> int:
    """The score the server gives a pair without a `[[retrostar:N]]` marker."""
    return hashlib.sha256(f"{query}\x00{document}".encode()).digest()[0] * 100 // 255


def sample_scores(query: str, document: str, n: int) -> list[int]:
    marker = _SCORES.search(document)
    if marker is None:
        return [expected_score(query, document)] * n
    scripted = [int(part) for part in marker.group(1).replace(" ", "").split(",") if part]
    return [scripted[i % len(scripted)] for i in range(n)]


def trajectory(query: str, document: str, score: int | None) -> str:
    analysis = (
        f"1. Query Analysis: the query asks about {query[:40]!r}.\n"
        f"2. Document Analysis: the document ({len(document)} characters) is compared with it.\n"
        "3. Relevance Annotation: scripted judgement.\n"
    )
    return analysis if score is None else f"{analysis}<score>\n{score}\n</score>"


@dataclass
class Stats:
    """What the server saw, for tests: every prompt, and the most requests it held at once."""

    prompts: list[str] = field(default_factory=list)
    sampling: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def reset(self) -> None:
        self.prompts.clear()
        self.sampling.clear()
        self.max_in_flight = 0


def create_app(latency: float = 0.0, stats: Stats | None = None) -> FastAPI:
    app = FastAPI(title="scripted SGLang")
    app.state.stats = stats or Stats()
    app.state.latency = latency

    async def answer(prompt: str, n: int, sampling: dict[str, Any]) -> list[str] | Response:
        stats: Stats = app.state.stats
        stats.prompts.append(prompt)
        stats.sampling.append(sampling)
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            query_match, document_match = _QUERY.search(prompt), _DOCUMENT.search(prompt)
            if query_match is None or document_match is None:
                return JSONResponse({"error": "prompt is not a Retro* prompt"}, status_code=400)
            query, document = query_match.group(1), document_match.group(1)
            slow = _SLOW.search(document)
            delay = app.state.latency + (float(slow.group(1)) if slow else 0.0)
            if delay:
                await asyncio.sleep(delay)
            error = _ERROR.search(document)
            if error:
                return JSONResponse({"error": "scripted failure"}, status_code=int(error.group(1)))
            if "[[malformed]]" in document:
                return PlainTextResponse("<html>not json", status_code=200)
            if "[[noscore]]" in document:
                return [trajectory(query, document, None)] * n
            return [trajectory(query, document, s) for s in sample_scores(query, document, n)]
        finally:
            stats.in_flight -= 1

    @app.post("/generate")
    async def generate(request: Request) -> Any:
        body = await request.json()
        sampling = body.get("sampling_params") or {}
        n = int(sampling.get("n", 1))
        texts = await answer(body["text"], n, sampling)
        if isinstance(texts, Response):
            return texts
        outputs = [
            {"text": text, "meta_info": {"id": f"scripted-{i}", "finish_reason": {"type": "stop"}}}
            for i, text in enumerate(texts)
        ]
        return outputs if n > 1 else outputs[0]

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        n = int(body.get("n", 1))
        messages = body.get("messages") or []
        sampling = {k: v for k, v in body.items() if k not in ("messages", "model")}
        texts = await answer(messages[-1]["content"] if messages else "", n, sampling)
        if isinstance(texts, Response):
            return texts
        return {
            "id": "scripted",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", MODEL),
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                for i, t in enumerate(texts)
            ],
        }

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/get_model_info")
    async def model_info() -> dict[str, Any]:
        return {"model_path": MODEL, "is_generation": True}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ScriptedSGLangServer:
    """The scripted server on a real uvicorn in a background thread: `with ScriptedSGLangServer() as s:`."""

    def __init__(self, latency: float = 0.0, port: int | None = None) -> None:
        self.stats = Stats()
        self.app = create_app(latency=latency, stats=self.stats)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def latency(self) -> float:
        return self.app.state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.app.state.latency = seconds

    def __enter__(self) -> ScriptedSGLangServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("scripted SGLang server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    args = parser.parse_args()
    uvicorn.run(create_app(latency=args.latency), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
