"""The one small interface every model backend implements."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, TypedDict, Unpack

from retrostar_search.errors import BackendError
from retrostar_search.prompts import RenderedPrompt
from retrostar_search.scoring import FinishReason

logger = logging.getLogger(__name__)

#: The checkpoint a backend names until the server says what it serves (and the engine backend loads).
DEFAULT_MODEL = "ljw13/retro-star-qwen3-14b-0928"


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """The reference evaluation's sampling: temperature 0.6 even for one sample, top_k 40, top_p 1.0 and
    min_p 0 (SGLang's own defaults, which the reference relies on), at most 4096 new tokens.

    Every field is sent explicitly: a server fills what a request leaves out from the checkpoint's
    generation_config.json (top_p 0.95, top_k 20 for Qwen3), not from the reference."""

    temperature: float = 0.6
    top_k: int = 40
    repetition_penalty: float = 1.0
    max_new_tokens: int = 4096
    """The reference evaluation's budget (the model card says 1024)."""
    #: Nucleus and min-p sampling off, as the reference has them (it sends neither and gets SGLang's
    #: defaults): not settings, but always sent.
    top_p: ClassVar[float] = 1.0
    min_p: ClassVar[float] = 0.0

    def for_sglang(self, n: int) -> dict[str, object]:
        """SGLang's `sampling_params` (native /generate and sglang.Engine alike) for `n` samples."""
        return {
            "n": n,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "repetition_penalty": self.repetition_penalty,
            "max_new_tokens": self.max_new_tokens,
            "skip_special_tokens": False,
        }


@dataclass(frozen=True, slots=True)
class Generation:
    """One generated sample as the server answered it: the text (for a server with a reasoning parser, the
    reasoning and the answer joined back together), why it ended, and the server's token counts where it
    reports them."""

    text: str
    finish_reason: FinishReason = FinishReason.STOP
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None


class GenerateOptions(TypedDict, total=False):
    """What a request may say about itself besides the prompt, for the server and what routes to it."""

    rid: str
    """The request's id on the server (SGLang's `rid`), by which it can be aborted; the backend makes one
    up when none is given."""
    routing_key: str
    """Keeps every request of one query on one worker behind a router (`backends.routing`)."""


class Backend(ABC):
    """Generates `n` sampled Retro* trajectories for one prompt."""

    #: Short identifier for /ready, error messages and the rerank log ("sglang", "openai", "engine", "cpu").
    kind: str
    #: The model as the server serves it (its checkpoint where the server reports one): the name in
    #: answers, and part of every cache key.
    model: str
    #: The served context length in tokens, when known (asked of the server at start-up): the prompt plus
    #: max_new_tokens must fit in it.
    context_length: int | None = None
    #: Why the last `ready()` said no, for /ready and error messages (never a secret); None when ready.
    not_ready_reason: str | None = None

    @abstractmethod
    async def generate(
        self, prompt: RenderedPrompt, n: int, params: SamplingParams, **options: Unpack[GenerateOptions]
    ) -> list[Generation]:
        """Return exactly `n` generations, or raise `retrostar_search.errors.BackendError`. Cancelling the
        call must free the server's work on it."""

    async def start(self) -> None:
        """Before the first request: `ask_served_model`, with a server that does not answer yet only
        logged (it is asked again by `ready()` and before the first generation)."""
        unanswered = await self.ask_served_model()
        if unanswered is not None:
            logger.warning("the %s; it is asked again before the first request and by /ready", unanswered)

    async def ask_served_model(self) -> BackendError | None:
        """Ask the server what it serves (model, context length). Raises `ModelNotServed` when a configured
        model is not served; returns the error when the server does not answer (yet), its message naming
        the backend ("sglang backend at http://gpu:30000 is unreachable ..."); None when it answered, or
        when there is no server to ask (most backends)."""
        return None

    @abstractmethod
    async def ready(self) -> bool:
        """Whether the backend can serve now (for the connector's /ready); sets `not_ready_reason`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing
        """Release connections or engines."""
