"""Retro* served over HTTP: SGLang's native `/generate`, or the OpenAI-compatible chat API that SGLang and
vLLM both serve, directly or through the SGLang router.

Every pair of a request goes out at once (bounded by `max_concurrency`) over a keep-alive pool, so the
server batches them and its prefix cache reuses the query-side prompt. A pair's prompt is rendered only
once it holds one of those slots, so a rerank of thousands of documents never holds all its prompts.

At start-up, before the first request and on every readiness check, the backend asks the server what it
serves (`retrostar_search.backends._discovery`): the model sent and named in answers and cache keys is the
served one, the context length the server's (unless configured), the chat format follows from the model.

Cancelling a generation frees the server's work: the request's connection is closed (the router drops
its upstream request at once; SGLang notices within 4 s, vLLM at once), and on an SGLang worker a request
of one sample is also aborted by its rid (`POST /abort_request`), which stops it at once. SGLang gives the
samples of an n > 1 request fresh rids of its own, so those are freed by the closed connection alone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from abc import abstractmethod
from typing import Any, Unpack

from retrostar_search.backends._answers import chat_generations, sglang_generations
from retrostar_search.backends._client import PooledClient, RequestTimedOut
from retrostar_search.backends._discovery import ModelNotServed, ServedModel, ServerKind, discover
from retrostar_search.backends.base import DEFAULT_MODEL, Backend, GenerateOptions, Generation, SamplingParams
from retrostar_search.backends.routing import ROUTING_KEY_HEADER
from retrostar_search.errors import BackendError
from retrostar_search.prompts import ChatFormat, RenderedPrompt, apply_chat_template

logger = logging.getLogger(__name__)

# Request ids: unique per process (every backend of it draws from one count) and across processes (the
# prefix), and cheaper than a uuid4 per request.
_RID_PREFIX = f"retrostar-{uuid.uuid4().hex[:12]}"
_RIDS = (f"{_RID_PREFIX}-{number}" for number in itertools.count())
#: Readiness answers within this or counts as not ready (SGLang's /health_generate waits at least 1 s).
READINESS_TIMEOUT_SECONDS = 5.0


class _HTTPBackend(Backend):
    """A model server over HTTP: the request, its errors, discovery and readiness are the same for every
    API; each subclass says what to send and where the generations are."""

    # Each API: where to post, and what an answer lacks when it has no generations (for messages).
    path: str
    answer_field: str

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 256,
        request_timeout: float | None = 300.0,
        context_length: int | None = None,
    ) -> None:
        #: The model asked for; None: whatever the server serves.
        self.configured_model = model
        self.model = model or DEFAULT_MODEL  # until the server says what it serves
        self._configured_context_length = context_length
        self.context_length = context_length
        #: What the server said it serves, at the last discovery; None before one succeeded.
        self.served: ServedModel | None = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = PooledClient(
            base_url, headers=headers, max_connections=max_concurrency, request_timeout=request_timeout
        )
        self.base_url = self._client.display_url
        self._endpoint = f"{self.kind} backend at {self.base_url}{self.path}"
        self._generate_url = self._client.url(self.path)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._discovery_lock = asyncio.Lock()
        self._failed_discoveries = 0
        self._discovery_error: BackendError | None = None

    # -- what the server serves ------------------------------------------------------------------

    async def ask_served_model(self) -> BackendError | None:
        try:
            await self._discover()
        except ModelNotServed:
            raise
        except BackendError as exc:
            return exc
        return None

    async def _discover(self) -> None:
        try:
            served = await discover(self._client.get_json)
        except BackendError as exc:
            raise BackendError(f"{self.kind} backend at {self.base_url} {exc}") from None
        if self.configured_model is not None and not served.serves(self.configured_model):
            raise ModelNotServed(
                f"the {self.kind} backend at {self.base_url} serves {served.describe()}, not the configured "
                f"model {self.configured_model!r}: set --model to one of those, or leave it out to use "
                "what the server serves"
            )
        changed = self.served != served
        self.served = served
        self.model = served.identity or self.configured_model or DEFAULT_MODEL
        self.context_length = self._configured_context_length or served.context_length
        self._adopt(served, changed)
        if changed:
            logger.info(
                "the %s backend at %s (%s) serves %s; context length %s",
                self.kind,
                self.base_url,
                served.server.value,
                self.model,
                self.context_length or "unknown (set --context-length)",
            )

    def _adopt(self, served: ServedModel, changed: bool) -> None:
        """Derive what depends on the served model (the chat format); `changed`: not as last asked."""

    async def _discover_before_use(self) -> None:
        """The first request (or the first after the server went away) asks what the server serves. Cache
        keys computed before that named the model the backend assumed: if the server serves another, the
        pairs fail rather than have its scores kept under the wrong model."""
        assumed, failures = self.model, self._failed_discoveries
        async with self._discovery_lock:
            if self.served is None:
                if self._failed_discoveries != failures and self._discovery_error is not None:
                    raise self._discovery_error  # it failed while this pair waited: no better answer now
                try:
                    await self._discover()
                except BackendError as exc:
                    self._failed_discoveries += 1
                    self._discovery_error = exc
                    raise
        if self.model != assumed:
            raise BackendError(
                f"the {self.kind} backend at {self.base_url} serves {self.model}, not {assumed} as assumed "
                "when this request began; the next request uses it"
            )

    async def ready(self) -> bool:
        try:
            await self._discover()
        except BackendError as exc:
            self.not_ready_reason = str(exc) if isinstance(exc, ModelNotServed) else f"the {exc}"
            return False
        assert self.served is not None
        server, path = self.served.server, self.served.server.readiness_path
        try:
            status, _ = await self._client.get_json(path, timeout=READINESS_TIMEOUT_SECONDS)
        except BackendError as exc:
            self.not_ready_reason = f"the {self.kind} backend at {self.base_url}{path} {exc}"
            return False
        # An OpenAI-compatible server without /health has just answered /v1/models: that is all it offers.
        if status == 200 or (status == 404 and server is ServerKind.OPENAI):
            self.not_ready_reason = None
            return True
        self.not_ready_reason = f"the {self.kind} backend at {self.base_url} answered HTTP {status} to {path}"
        return False

    # -- generation ------------------------------------------------------------------------------

    async def generate(
        self, prompt: RenderedPrompt, n: int, params: SamplingParams, **options: Unpack[GenerateOptions]
    ) -> list[Generation]:
        if self.served is None:
            await self._discover_before_use()
        rid = options.get("rid") or next(_RIDS)
        routing_key = options.get("routing_key")
        headers = {ROUTING_KEY_HEADER: routing_key} if routing_key else None
        async with self._slots:
            # Rendered only now: the prompts of a large rerank are not all held at once.
            body = json.dumps(self._payload(prompt, n, params, rid)).encode()
            try:
                status, raw = await self._client.post(self._generate_url, body, headers)
            except asyncio.CancelledError:
                self._abort(rid, n)
                raise
            except RequestTimedOut as exc:
                self._abort(rid, n)
                raise RequestTimedOut(f"{self._endpoint} {exc}") from None
            except BackendError as exc:
                # Gone: it may come back serving another model, so it is asked again before the next use.
                self.served = None
                raise BackendError(f"{self._endpoint} {exc}") from None
        if status >= 400:
            if status == 404:
                self.served = None  # the model or the route is gone: ask again what the server serves
            raise BackendError(
                f"{self._endpoint} answered HTTP {status}{_error_message(raw)}",
                transient=status >= 500 or status in _TRANSIENT_4XX,
            )
        try:
            answer = json.loads(raw)
        except ValueError:
            raise BackendError(f"{self._endpoint} answered non-JSON") from None
        try:
            generations = self._generations(answer)
        except (KeyError, TypeError, AttributeError):
            raise BackendError(f"{self._endpoint} answered without {self.answer_field}") from None
        if len(generations) != n:
            raise BackendError(f"{self._endpoint} returned {len(generations)} samples, expected {n}")
        return generations

    @abstractmethod
    def _payload(
        self, prompt: RenderedPrompt, n: int, params: SamplingParams, rid: str
    ) -> dict[str, Any]: ...

    @abstractmethod
    def _generations(self, answer: Any) -> list[Generation]:
        """The generations of an answer; KeyError, TypeError or AttributeError when it has none."""

    def _abort(self, rid: str, n: int) -> None:
        """Free the server's work on a request given up on, beyond closing its connection."""

    async def aclose(self) -> None:
        await self._client.aclose()


class SGLangGenerateBackend(_HTTPBackend):
    """SGLang's native API: the chat template is applied here, the samples come from `n`."""

    kind = "sglang"
    path = "/generate"
    answer_field = "'text'"

    def __init__(self, base_url: str, *, chat_format: ChatFormat | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._configured_chat_format = chat_format
        self.chat_format = chat_format or ChatFormat.QWEN3

    def _adopt(self, served: ServedModel, changed: bool) -> None:
        if self._configured_chat_format is not None:
            return
        derived = served.chat_format()
        if derived is None and changed:
            logger.warning(
                "the chat format of %s is not known; using %s (set --chat-format)",
                self.model,
                ChatFormat.QWEN3,
            )
        self.chat_format = derived or ChatFormat.QWEN3

    def _payload(self, prompt: RenderedPrompt, n: int, params: SamplingParams, rid: str) -> dict[str, Any]:
        return {
            "text": apply_chat_template(prompt.text, self.chat_format),
            "sampling_params": params.for_sglang(n),
            "rid": rid,
        }

    def _generations(self, answer: Any) -> list[Generation]:
        return sglang_generations(answer)

    def _abort(self, rid: str, n: int) -> None:
        # The router has no /abort_request (and cannot say which worker holds a rid); the samples of an
        # n > 1 request run under rids SGLang made up. Both are freed by the closed connection.
        if n == 1 and (self.served is None or self.served.server is not ServerKind.ROUTER):
            self._client.post_in_background("/abort_request", {"rid": rid})


class OpenAIChatBackend(_HTTPBackend):
    """The OpenAI-compatible chat API (SGLang, vLLM): the server applies the chat template."""

    kind = "openai"
    path = "/v1/chat/completions"
    answer_field = "choices"

    def _payload(self, prompt: RenderedPrompt, n: int, params: SamplingParams, rid: str) -> dict[str, Any]:
        served = self.served
        payload: dict[str, Any] = {
            "model": (served.request_name(self.configured_model) if served else None) or self.model,
            "messages": [{"role": "user", "content": prompt.text}],
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "min_p": params.min_p,
            "repetition_penalty": params.repetition_penalty,
            "max_tokens": params.max_new_tokens,
            "skip_special_tokens": False,
            "chat_template_kwargs": {"enable_thinking": False},
        }
        if served is not None and served.server in (ServerKind.SGLANG, ServerKind.ROUTER):
            # One text, as trained: SGLang's reasoning parser would otherwise split it (vLLM has no such
            # field and logs every unknown one, so it is not sent there; its split is joined back).
            payload["separate_reasoning"] = False
        return payload

    def _generations(self, answer: Any) -> list[Generation]:
        return chat_generations(answer)


# Refusals worth one more try: a request timeout, and a router or server shedding load.
_TRANSIENT_4XX = frozenset({408, 429})


def _error_message(raw: bytes) -> str:
    """The server's own error message (SGLang: "message" or "error.message"; OpenAI-style: "error.message"),
    cut short.

    Only that field is kept, never the raw body: some servers echo the request, which holds documents."""
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if message is None and isinstance(body, dict):
        message = body.get("message") or (error if isinstance(error, str) else None)
    return f": {str(message)[:200]}" if message else ""
