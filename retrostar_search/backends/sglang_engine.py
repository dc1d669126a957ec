"""Retro* in this process through `sglang.Engine` (the `sglang` extra; GPU hosts only).

sglang is imported when the backend is built, never at module import, so the package works without it.
"""

from __future__ import annotations

from retrostar_search.backends.base import Backend, Generation, SamplingParams
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
        chat_format: ChatFormat = ChatFormat.QWEN3,
        tp_size: int = 1,
        context_length: int = 32768,
        random_seed: int = 42,
    ) -> None:
        sglang = import_extra("sglang", "sglang", IN_PROCESS_ENGINE)
        self.model = model_path
        self.chat_format = chat_format
        # The reference evaluation's settings: 32k context and a fixed seed.
        self._engine = sglang.Engine(
            model_path=model_path, tp_size=tp_size, context_length=context_length, random_seed=random_seed
        )

    async def generate(
        self,
        prompt: RenderedPrompt,
        n: int,
        params: SamplingParams,
        *,
        rid: str | None = None,
        routing_key: str | None = None,
    ) -> list[Generation]:
        try:
            output = await self._engine.async_generate(
                prompt=apply_chat_template(prompt.text, self.chat_format),
                sampling_params=params.for_sglang(n),
            )
        except Exception as exc:  # the engine raises plain exceptions; callers need BackendError
            raise BackendError(f"sglang engine failed: {type(exc).__name__}") from exc
        outputs = output if isinstance(output, list) else [output]
        return [Generation(str(item["text"])) for item in outputs]

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._engine.shutdown()
