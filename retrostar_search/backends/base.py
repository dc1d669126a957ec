"""The one small interface every model backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from retrostar_search.prompts import RenderedPrompt
from retrostar_search.scoring import FinishReason


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """The reference's sampling: temperature 0.6 even for one sample, top_k 40, no top_p."""

    temperature: float = 0.6
    top_k: int = 40
    repetition_penalty: float = 1.0
    max_new_tokens: int = 1024

    def for_sglang(self, n: int) -> dict[str, object]:
        """SGLang's `sampling_params` (native /generate and sglang.Engine alike) for `n` samples."""
        return {
            "n": n,
            "temperature": self.temperature,
            "top_k": self.top_k,
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


class Backend(ABC):
    """Generates `n` sampled Retro* trajectories for one prompt."""

    #: Short identifier for /ready, error messages and the rerank log ("sglang", "openai", "engine", "cpu").
    kind: str
    #: The model name as the backend reports it; part of every cache key.
    model: str
    #: The served context length in tokens, when known (asked of the server at start-up): the prompt plus
    #: max_new_tokens must fit in it.
    context_length: int | None = None

    @abstractmethod
    async def generate(
        self,
        prompt: RenderedPrompt,
        n: int,
        params: SamplingParams,
        *,
        rid: str | None = None,
        routing_key: str | None = None,
    ) -> list[Generation]:
        """Return exactly `n` generations, or raise `retrostar_search.errors.BackendError`.

        `rid` names the request on the server (SGLang's request id) so that it can be aborted; `routing_key`
        keeps every request of one query on one worker behind a router. Cancelling the call must free the
        server's work on it."""

    @abstractmethod
    async def ready(self) -> bool:
        """Whether the backend answers now (for the connector's /ready)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing
        """Release connections or engines."""
