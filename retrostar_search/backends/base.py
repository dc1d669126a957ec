"""The one small interface every model backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from retrostar_search.prompts import RenderedPrompt


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


class Backend(ABC):
    """Generates `n` sampled Retro* trajectories for one prompt."""

    #: Short identifier for /ready, error messages and the rerank log ("sglang", "openai", "engine", "cpu").
    kind: str
    #: The model name as the backend reports it; part of every cache key.
    model: str

    @abstractmethod
    async def generate(self, prompt: RenderedPrompt, n: int, params: SamplingParams) -> list[str]:
        """Return exactly `n` generated texts, or raise `retrostar_search.errors.BackendError`."""

    @abstractmethod
    async def ready(self) -> bool:
        """Whether the backend answers now (for the connector's /ready)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing
        """Release connections or engines."""
