"""What a model server serves, asked of the server itself: the model's names, its checkpoint, the context
length, and what kind of server it is (an SGLang worker, vLLM, the SGLang router, another OpenAI-compatible
server). docs/router-notes.md has what each answers; the router answers /v1/models itself, without a
context length, and forwards /get_model_info to a worker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from retrostar_search.errors import BackendError
from retrostar_search.prompts import ChatFormat

#: `get(path)` -> (HTTP status, the parsed JSON body or None); raises BackendError when unreachable.
GetJSON = Callable[[str], Awaitable[tuple[int, Any]]]


class ModelNotServed(BackendError):
    """The configured model is not among those the server serves: asking again repeats the answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class ServerKind(StrEnum):
    SGLANG = "sglang"  # an SGLang worker
    VLLM = "vllm"
    ROUTER = "router"  # sglang-router (sgl-model-gateway) in front of SGLang workers
    OPENAI = "openai"  # another OpenAI-compatible server: only /v1/models is known

    @property
    def readiness_path(self) -> str:
        """Where readiness is asked: the router's /readiness (a healthy worker exists; its /health is
        liveness only), an SGLang worker's /health_generate (it generates a token), /health elsewhere."""
        return {ServerKind.ROUTER: "/readiness", ServerKind.SGLANG: "/health_generate"}.get(self, "/health")


@dataclass(frozen=True, slots=True)
class ServedModel:
    server: ServerKind
    #: The names a request may carry, the served name first (SGLang's served_model_name, /v1/models ids).
    names: tuple[str, ...]
    #: The checkpoints behind them (SGLang's model_path, vLLM's root).
    checkpoints: tuple[str, ...]
    context_length: int | None
    #: SGLang's model_type ("qwen3", "qwen2"), when reported.
    model_type: str | None = None

    @property
    def identity(self) -> str | None:
        """The served model for answers and cache keys: the checkpoint, so that a server moved to another
        checkpoint under the same served name does not reuse the old one's scores."""
        return next(iter(self.checkpoints + self.names), None)

    def serves(self, model: str) -> bool:
        # A server that reports no model at all cannot be checked.
        return not (self.names or self.checkpoints) or model in self.names or model in self.checkpoints

    def request_name(self, configured: str | None) -> str | None:
        """The model name a chat request carries: the configured one if the server knows it by that name,
        else its served name (vLLM answers 404 for any other)."""
        if configured is not None and configured in self.names:
            return configured
        return self.names[0] if self.names else configured

    def describe(self) -> str:
        names = sorted(set(self.names + self.checkpoints))
        return ", ".join(repr(name) for name in names) or "no model it names"

    def chat_format(self) -> ChatFormat | None:
        return chat_format_for(self.checkpoints + self.names, self.model_type)


def chat_format_for(names: Iterable[str], model_type: str | None = None) -> ChatFormat | None:
    """Retro*'s chat format for a model: qwen3 for the *-0928 checkpoints (Qwen3), qwen2.5 for the *-0923
    ones (Qwen2.5); None when neither the model type (SGLang's) nor the names tell."""
    if model_type == "qwen3":
        return ChatFormat.QWEN3
    if model_type == "qwen2":
        return ChatFormat.QWEN2_5
    for name in (name.lower() for name in names):
        if "0923" in name or "qwen2.5" in name or "qwen2_5" in name:
            return ChatFormat.QWEN2_5
        if "0928" in name or "qwen3" in name:
            return ChatFormat.QWEN3
    return None


async def discover(get: GetJSON) -> ServedModel:
    """Ask the server at most five GETs: /v1/models (every kind), /readiness (only the router has it),
    SGLang's /model_info and /server_info (the deprecated /get_* names on older SGLang and the router)."""
    status, models = await get("/v1/models")
    if status in (401, 403):
        raise BackendError(f"answered HTTP {status} to /v1/models: check the backend API key")
    cards = [card for card in _list(models, "data") if isinstance(card.get("id"), str)]
    owners = {card.get("owned_by") for card in cards}
    readiness_status, readiness = await get("/readiness")
    is_router = readiness_status in (200, 503) and isinstance(readiness, Mapping) and "status" in readiness
    model_info = None if "vllm" in owners else await _first_found(get, "/model_info", "/get_model_info")
    if is_router:
        server = ServerKind.ROUTER
    elif model_info is not None or "sglang" in owners:
        server = ServerKind.SGLANG
    else:
        server = ServerKind.VLLM if "vllm" in owners else ServerKind.OPENAI

    names = [card["id"] for card in cards]
    checkpoints = [card["root"] for card in cards if isinstance(card.get("root"), str)]
    model_type = None
    if model_info is not None:
        names.insert(0, model_info.get("served_model_name"))
        checkpoints.insert(0, model_info.get("model_path"))
        model_type = model_info.get("model_type")
    if server is ServerKind.SGLANG:
        # SGLang's /v1/models root is the served name, not a path: model_info has the checkpoint.
        checkpoints = checkpoints[:1] if model_info is not None else []
    context_length = None
    if server is ServerKind.SGLANG:
        server_info = await _first_found(get, "/server_info", "/get_server_info")
        context_length = _positive(server_info.get("context_length")) if server_info else None
    if context_length is None:
        context_length = next(
            (_positive(card.get("max_model_len")) for card in cards if card.get("max_model_len")), None
        )
    return ServedModel(
        server=server,
        names=_unique(names),
        checkpoints=_unique(checkpoints),
        context_length=context_length,
        model_type=model_type if isinstance(model_type, str) else None,
    )


async def _first_found(get: GetJSON, *paths: str) -> Mapping[str, Any] | None:
    """The first of `paths` that answers 200 with a JSON object (SGLang renamed its info routes)."""
    for path in paths:
        status, body = await get(path)
        if status == 200 and isinstance(body, Mapping):
            return body
        if status != 404:
            return None  # there, but not answering (the router without a worker): the alias is no better
    return None


def _list(body: Any, field: str) -> list[Mapping[str, Any]]:
    items = body.get(field) if isinstance(body, Mapping) else None
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def _unique(values: list[Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value for value in values if isinstance(value, str) and value))


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
