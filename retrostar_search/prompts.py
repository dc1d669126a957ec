"""The Retro* prompt, character for character as the model was trained on it, and its chat wrapping.

Everything before the document depends only on the task and the query. Keeping it first (and never
touching it when a document is truncated) lets SGLang's prefix cache reuse it across a query's documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from retrostar_search.errors import InvalidInput
from retrostar_search.extras import import_extra
from retrostar_search.tasks import TaskDefinition

# Bump when anything that changes the model's input changes: it is part of every score-cache key.
PROMPT_VERSION = "retrostar-prompt-1"

# The reference evaluation's budget: a 32,768-token context (assumed when the server does not say), and
# 128 tokens kept free besides the new tokens (its prompts are cut to 32768 - 4096 - 128 tokens).
DEFAULT_CONTEXT_LENGTH = 32_768
CONTEXT_MARGIN_TOKENS = 128

RETROSTAR_TEMPLATE = """Here is the **relevance definition** in a retrieval task: {relevance_definition}

Now given a **query** ({query_type}) and a **document** ({doc_type}) in this retrieval task, your mission is to perform the following steps.

1. Query Analysis: Think to reason and describe what information would be most helpful in answering the query.
2. Document Analysis: Discuss how the information provided by the document fulfills or fails to fulfill the requirements implied by the query.
3. Relevance Annotation: Based on the relevance definition and the insights from the previous two steps, clearly justify your final relevance annotation result and annotate an integer score from a scale of 0 to 100. Please use the following guide:
    - **80-100 (Highly Relevant):** The document directly and comprehensively addresses the query's intent. It is a core and authoritative answer.
    - **60-80 (Relevant):** The document substantially addresses the query's intent, providing most of the key information, but might miss some minor details.
    - **40-60 (Moderately Relevant):** The document is on-topic and addresses a part of the query's intent, but it is not a comprehensive answer.
    - **20-40 (Slightly Relevant):** The document mentions keywords from the query, but its main topic is different. It offers very limited value.
    - **0-20 (Irrelevant):** The document does not address the query's intent at all and is off-topic.

After providing your detailed analysis and justification for all the steps above, conclude your entire response with the final relevance score. The score must be placed strictly between the <score> tags. There should be no other text or explanation inside the tags:
<score>
[From a scale of 0 to 100, annotate the degree of relevance between the query and the document.]
</score>

Query ({query_type}):
[Begin of Query]
{query}
[End of Query]

Document ({doc_type}):
[Begin of Document]
{doc}
[End of Document]
"""  # the model's input: lines stay as trained

_PREFIX_TEMPLATE, _SUFFIX_TEMPLATE = RETROSTAR_TEMPLATE.split("{doc}")  # the suffix has no fields
_FIELD = re.compile(r"\{(relevance_definition|query_type|doc_type|query)\}")


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """One (query, document) prompt: the user message, and the parts backends may need on their own."""

    query: str
    document: str
    prefix: str  # everything up to the document: shared by all documents of one query

    @property
    def text(self) -> str:
        return f"{self.prefix}{self.document}{_SUFFIX_TEMPLATE}"


def render_prefix(task: TaskDefinition, query: str) -> str:
    # One pass over the template, like str.format: text inside the values (braces included) is never
    # substituted again.
    values = {
        "relevance_definition": task.relevance_definition,
        "query_type": task.query_type,
        "doc_type": task.doc_type,
        "query": query,
    }
    return _FIELD.sub(lambda match: values[match.group(1)], _PREFIX_TEMPLATE)


def render_prompt(task: TaskDefinition, query: str, document: str) -> RenderedPrompt:
    return RenderedPrompt(query=query, document=document, prefix=render_prefix(task, query))


class ChatFormat(StrEnum):
    """How the user message is wrapped for backends that take raw text (SGLang's native /generate)."""

    QWEN3 = "qwen3"  # Retro* qwen3-*-0928, with enable_thinking=False: an empty think block
    QWEN2_5 = "qwen2.5"  # Retro* qwen2.5-*-0923: Qwen2.5's template adds its default system message


_QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def apply_chat_template(user_message: str, chat_format: ChatFormat) -> str:
    """What the model's chat template yields for one user message with add_generation_prompt=True."""
    if chat_format is ChatFormat.QWEN3:
        return f"<|im_start|>user\n{user_message}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    return (
        f"<|im_start|>system\n{_QWEN25_DEFAULT_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{user_message}<|im_end|>\n<|im_start|>assistant\n"
    )


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


@dataclass(frozen=True, slots=True)
class Truncation:
    """How documents are cut: to fit the served context always (`fit`), and to an explicit per-document
    budget when one is set (`max_tokens` with a tokenizer, `max_chars`; off by default, like the reference).

    Tokens are counted with the model's tokenizer when there is one, and bounded from above otherwise
    (`count_tokens`). Only the document is cut, and the query once for all documents when it alone would
    crowd them out, so the query-side prefix, and with it SGLang's prefix cache, stays the same for every
    document.
    """

    max_tokens: int | None = None
    max_chars: int | None = None
    tokenizer: Tokenizer | None = None
    #: The context to fit when the server does not report its own.
    context_length: int = DEFAULT_CONTEXT_LENGTH

    def count_tokens(self, text: str) -> int:
        """The tokens `text` takes: exact with the model's tokenizer; without one, its UTF-8 bytes. That
        bound never under-counts for a byte-level BPE tokenizer (Qwen's): each token stands for one byte
        or more. It over-counts English about four times, so documents are cut shorter than they need to
        be: give the tokenizer for exact cuts."""
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        return _utf8_length(text)

    def cut_to_tokens(self, text: str, limit: int) -> str:
        """The beginning of `text` that takes at most `limit` tokens as `count_tokens` counts them."""
        # No more bytes than `limit` means no more tokens either: only longer texts need the tokenizer.
        if self.tokenizer is not None and _utf8_length(text) > limit:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            return text if len(ids) <= limit else self.tokenizer.decode(ids[:limit])
        return _cut_to_bytes(text, limit)

    def fit(
        self, task: TaskDefinition, query: str, *, max_new_tokens: int, context_length: int | None
    ) -> PromptFit:
        """How one query's prompts fit the served context (`context_length`, or `self.context_length`
        when the server does not say): the chat template, the prompt and `max_new_tokens` within it with
        `CONTEXT_MARGIN_TOKENS` to spare. The query keeps at most half of the room, the documents the rest.

        InvalidInput when not even an empty query and document fit (a huge relevance definition, or
        max_new_tokens as large as the context)."""
        context = context_length or self.context_length
        fixed = sum(
            self.count_tokens(part) for part in (render_prefix(task, ""), _SUFFIX_TEMPLATE, _CHAT_WRAPPING)
        )
        room = context - max_new_tokens - CONTEXT_MARGIN_TOKENS - fixed
        if room < 2:
            raise InvalidInput(
                f"no room for a query and a document in the served context of {context} tokens: the task's "
                f"prompt takes {fixed} tokens and max_new_tokens {max_new_tokens} (shorten the relevance "
                "definition or lower max_new_tokens)"
            )
        query_tokens = self.count_tokens(query)
        query_truncated = query_tokens > room // 2
        if query_truncated:
            query = self.cut_to_tokens(query, room // 2)
            query_tokens = self.count_tokens(query)
        return PromptFit(
            query=query,
            prefix=render_prefix(task, query),
            document_tokens=room - query_tokens,
            query_truncated=query_truncated,
            truncation=self,
        )

    def apply(self, document: str) -> str:
        if self.max_tokens is not None and self.tokenizer is not None:
            ids = self.tokenizer.encode(document, add_special_tokens=False)
            if len(ids) > self.max_tokens:
                return self.tokenizer.decode(ids[: self.max_tokens])
            return document
        if self.max_chars is not None and len(document) > self.max_chars:
            return document[: self.max_chars]
        return document


@dataclass(frozen=True, slots=True)
class PromptFit:
    """One query's prompts, fitted to the served context: the query as the model sees it, the prefix all
    its documents share, and the tokens each document may take."""

    query: str
    prefix: str
    document_tokens: int
    query_truncated: bool
    truncation: Truncation

    def document(self, text: str) -> tuple[str, bool]:
        """The document as the model sees it (the explicit limits, then the fit), and whether it was cut."""
        fitted = self.truncation.cut_to_tokens(self.truncation.apply(text), self.document_tokens)
        return fitted, fitted != text

    def prompt(self, document: str) -> RenderedPrompt:
        return RenderedPrompt(query=self.query, document=document, prefix=self.prefix)


# The longer of the chat wrappings around a user message (qwen2.5's, with its system message): whichever
# one the backend or the server applies, its tokens are counted.
_CHAT_WRAPPING = max((apply_chat_template("", chat_format) for chat_format in ChatFormat), key=len)


def _utf8_length(text: str) -> int:
    # isascii() is a flag lookup: ASCII text (most of it) is counted without an encoded copy.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _cut_to_bytes(text: str, limit: int) -> str:
    """The longest beginning of `text` of at most `limit` UTF-8 bytes."""
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes
        return text
    cut = text[:limit]
    while (excess := _utf8_length(cut) - limit) > 0:
        # Dropping excess // 4 characters drops at most `excess` bytes: never more than needed.
        cut = cut[: len(cut) - max(1, excess // 4)]
    return cut


# What needs the `tokenizer` extra, as `MissingExtra` names it.
TOKEN_TRUNCATION = "counting tokens with the model's tokenizer (--tokenizer)"


def load_tokenizer(path: str) -> Tokenizer:
    """The model's tokenizer from a local folder (the `tokenizer` extra); hubs are not contacted."""
    transformers = import_extra("transformers", "tokenizer", TOKEN_TRUNCATION)
    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
