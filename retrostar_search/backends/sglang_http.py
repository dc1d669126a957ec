"""Retro* served over HTTP: SGLang's native `/generate`, or the OpenAI-compatible chat API that SGLang and
vLLM both serve.

Every pair of a request goes out at once (bounded by `max_concurrency`, one connection each) so the
server batches them and its prefix cache reuses the query-side prompt.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from typing import Any

import httpx

from retrostar_search.backends.base import Backend, Generation, SamplingParams
from retrostar_search.errors import BackendError
from retrostar_search.prompts import ChatFormat, RenderedPrompt, apply_chat_template
from retrostar_search.redaction import public_url
from retrostar_search.scoring import FinishReason


class _HTTPBackend(Backend):
    """A model server over HTTP: the request, its errors and the check of the answer are the same for every
    API; each subclass says what to send and where the texts are."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        max_concurrency: int = 256,
        request_timeout: float = 300.0,
    ) -> None:
        # What messages name (they reach logs and strict 502 answers): never the URL's user:password,
        # which httpx still sends as basic auth.
        self.base_url = public_url(base_url).rstrip("/")
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(request_timeout, connect=10.0),
            # A fresh connection per pair, not a keep-alive pool: with idle pooled connections, httpcore 1.0
            # hands one to every request of a burst, and the losers wait for a later completion (httpcore
            # PR 1035), so a warm 100-pair burst took two backend latencies and five times the CPU. It also
            # avoids reusing a connection SGLang closes after 5 s idle. A connect is negligible next to a
            # generation.
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=0),
        )
        self._slots = asyncio.Semaphore(max_concurrency)

    async def _post(self, path: str, payload: dict[str, Any]) -> Any:
        endpoint = f"{self.kind} backend at {self.base_url}{path}"
        async with self._slots:
            try:
                response = await self._client.post(path, json=payload)
            except httpx.TimeoutException:
                raise BackendError(f"{endpoint} timed out") from None
            except httpx.HTTPError as exc:
                raise BackendError(f"{endpoint} unreachable: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise BackendError(
                f"{endpoint} answered HTTP {response.status_code}{_error_message(response)}",
                transient=response.status_code >= 500 or response.status_code in _TRANSIENT_4XX,
            )
        try:
            return response.json()
        except ValueError:
            raise BackendError(f"{endpoint} answered non-JSON") from None

    # Each API: where to post, what to send, and where the texts are in the answer.
    path: str
    answer_field: str  # named when an answer lacks it

    async def generate(
        self,
        prompt: RenderedPrompt,
        n: int,
        params: SamplingParams,
        *,
        rid: str | None = None,
        routing_key: str | None = None,
    ) -> list[Generation]:
        body = await self._post(self.path, self._payload(prompt, n, params))
        try:
            texts = [Generation(text, _finish_reason(finish)) for text, finish in self._texts(body)]
        except (KeyError, TypeError):
            raise BackendError(
                f"{self.kind} backend at {self.base_url}{self.path} answered without {self.answer_field}"
            ) from None
        if len(texts) != n:
            raise BackendError(f"{self.kind} backend returned {len(texts)} samples, expected {n}")
        return texts

    @abstractmethod
    def _payload(self, prompt: RenderedPrompt, n: int, params: SamplingParams) -> dict[str, Any]: ...

    @abstractmethod
    def _texts(self, body: Any) -> list[tuple[str, str | None]]:
        """The generated texts of an answer with their finish reasons; KeyError or TypeError when it has
        none."""

    async def ready(self) -> bool:
        try:
            response = await self._client.get("/health", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()


class SGLangGenerateBackend(_HTTPBackend):
    """SGLang's native API: the chat template is applied here, the samples come from `n`."""

    kind = "sglang"
    path = "/generate"
    answer_field = "'text'"

    def __init__(self, base_url: str, *, chat_format: ChatFormat = ChatFormat.QWEN3, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.chat_format = chat_format

    def _payload(self, prompt: RenderedPrompt, n: int, params: SamplingParams) -> dict[str, Any]:
        return {
            "text": apply_chat_template(prompt.text, self.chat_format),
            "sampling_params": params.for_sglang(n),
        }

    def _texts(self, body: Any) -> list[tuple[str, str | None]]:
        # One prompt with n == 1 answers an object; with n > 1, a list of n objects.
        outputs = body if isinstance(body, list) else [body]
        return [
            (str(output["text"]), ((output.get("meta_info") or {}).get("finish_reason") or {}).get("type"))
            for output in outputs
        ]


class OpenAIChatBackend(_HTTPBackend):
    """The OpenAI-compatible chat API (SGLang, vLLM): the server applies the chat template."""

    kind = "openai"
    path = "/v1/chat/completions"
    answer_field = "choices"

    def _payload(self, prompt: RenderedPrompt, n: int, params: SamplingParams) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt.text}],
            "n": n,
            "temperature": params.temperature,
            "top_k": params.top_k,
            "repetition_penalty": params.repetition_penalty,
            "max_tokens": params.max_new_tokens,
            "skip_special_tokens": False,
            "chat_template_kwargs": {"enable_thinking": False},
        }

    def _texts(self, body: Any) -> list[tuple[str, str | None]]:
        return [
            (str(choice["message"]["content"] or ""), choice.get("finish_reason"))
            for choice in body["choices"]
        ]


# Refusals worth one more try: a request timeout, and a router or server shedding load.
_TRANSIENT_4XX = frozenset({408, 429})


def _finish_reason(reported: str | None) -> FinishReason:
    """SGLang's `meta_info.finish_reason.type` or the OpenAI API's `finish_reason`; a server that says
    nothing, or something else (`tool_calls`), finished its answer."""
    try:
        return FinishReason(reported) if reported else FinishReason.STOP
    except ValueError:
        return FinishReason.STOP


def _error_message(response: httpx.Response) -> str:
    """The server's own error message (SGLang: "message"; OpenAI-style: "error.message"), cut short.

    Only that field is kept, never the raw body: some servers echo the request, which holds documents."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if message is None and isinstance(body, dict):
        message = body.get("message") or (error if isinstance(error, str) else None)
    return f": {str(message)[:200]}" if message else ""
