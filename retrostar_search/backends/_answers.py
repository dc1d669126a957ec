"""Reading generations out of model servers' answers: SGLang's output objects (native /generate and
sglang.Engine) and OpenAI-style chat choices (SGLang, vLLM). Shapes: docs/router-notes.md and
../shared/reference/model-servers.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from retrostar_search.backends.base import Generation
from retrostar_search.scoring import FinishReason

_FINISH_REASONS = {reason.value: reason for reason in FinishReason}


def finish_reason(value: Any) -> FinishReason:
    """`stop` and `length` as they are; `abort` and anything else a server invents for an answer it did
    not finish (vLLM's `error`, `content_filter`) is an abort. A server that reports none (None) is taken
    at its word that the answer is complete."""
    if value is None:
        return FinishReason.STOP
    return _FINISH_REASONS.get(str(value), FinishReason.ABORT)


def sglang_generation(output: Mapping[str, Any]) -> Generation:
    """One SGLang output object: `text` and `meta_info` (finish_reason {"type": ...}, token counts; an
    abort in the waiting queue reports no prompt or cached tokens)."""
    meta = output.get("meta_info") or {}
    reason = meta.get("finish_reason")
    return Generation(
        str(output["text"]),
        finish_reason(reason.get("type") if isinstance(reason, Mapping) else reason),
        _count(meta.get("prompt_tokens")),
        _count(meta.get("completion_tokens")),
        _count(meta.get("cached_tokens")),
    )


def sglang_generations(body: Any) -> list[Generation]:
    """One prompt with n == 1 answers an object; with n > 1, a list of n objects."""
    outputs = body if isinstance(body, list) else [body]
    return [sglang_generation(output) for output in outputs]


def chat_generations(body: Mapping[str, Any]) -> list[Generation]:
    """The choices of a chat completion. A server started with a reasoning parser puts the thinking part
    (or all of it) in `reasoning_content` (SGLang, older vLLM) or `reasoning` (vLLM 0.10+), so the text is
    reasoning + content: `<score>` is found wherever the server put it.

    Usage counts the whole request: the completion tokens of one choice are known only when n == 1."""
    choices = body["choices"]
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    completion_tokens = _count(usage.get("completion_tokens")) if len(choices) == 1 else None
    generations = []
    for choice in choices:
        message = choice["message"]
        reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
        generations.append(
            Generation(
                text=f"{reasoning}{message.get('content') or ''}",
                finish_reason=finish_reason(choice.get("finish_reason")),
                prompt_tokens=_count(usage.get("prompt_tokens")),
                completion_tokens=completion_tokens,
                cached_tokens=_count(details.get("cached_tokens")),
            )
        )
    return generations


def _count(value: Any) -> int | None:
    return value if type(value) is int else None
