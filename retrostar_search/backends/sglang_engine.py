"""Retro* in this process through `sglang.Engine` (the `sglang` extra; GPU hosts only).

sglang is imported when the backend is built, never at module import, so the package works without it.
"""

from __future__ import annotations

from typing import Unpack

from retrostar_search.backends._answers import sglang_generations
from retrostar_search.backends._discovery import chat_format_for
from retrostar_search.backends.base import Backend, GenerateOptions, Generation, SamplingParams
from retrostar_search.errors import BackendError
from retrostar_search.extras import import_extra
from retrostar_search.prompts import ChatFormat, RenderedPrompt, apply_chat_template

# What needs the `sglang` extra, as `MissingExtra` names it.
IN_PROCESS_ENGINE = "the in-process engine (--backend engine, GPU hosts)"


class SGLangEngineBackend(Backend):
    kind = "engine"

    def __init__(
        self,
        model_path: str,
        *,
        chat_format: ChatFormat | None = None,
        tp_size: int = 1,
        context_length: int = 32768,
        random_seed: int = 42,
    ) -> None:
        sglang = import_extra("sglang", "sglang", IN_PROCESS_ENGINE)
        self.model = model_path
        self.chat_format = chat_format or chat_format_for([model_path]) or ChatFormat.QWEN3
        self.context_length = context_length
        # The reference evaluation's settings: 32k context and a fixed seed.
        self._engine = sglang.Engine(
            model_path=model_path, tp_size=tp_size, context_length=context_length, random_seed=random_seed
        )

    async def generate(
        self, prompt: RenderedPrompt, n: int, params: SamplingParams, **options: Unpack[GenerateOptions]
    ) -> list[Generation]:
        try:
            output = await self._engine.async_generate(
                prompt=apply_chat_template(prompt.text, self.chat_format),
                sampling_params=params.for_sglang(n),
            )
        except Exception as exc:  # the engine raises plain exceptions; callers need BackendError
            raise BackendError(f"sglang engine failed: {type(exc).__name__}") from exc
        try:
            return sglang_generations(output)
        except (KeyError, TypeError, AttributeError):
            raise BackendError("sglang engine answered without 'text'") from None

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._engine.shutdown()
