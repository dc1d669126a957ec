"""The rerank API's wire shapes: Cohere's (v1 and v2), Hugging Face TEI's, and Retro*'s optional extensions.

Requests ignore fields they do not know (clients of these APIs send `max_chunks_per_doc`, `priority`...),
except inside a task override, where a typo would silently change what "relevant" means.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from retrostar_search.reranker import Candidate, Unscored
from retrostar_search.scoring import FinishReason
from retrostar_search.tasks import PRESETS

# What the published schema states beyond the types, so that a client generated from it (or one that
# validates against it) sends nothing the server refuses with 422. The limits (maxLength, maxItems) are
# settings: connector/openapi.py adds them with the server's values.

# Whitespace both for Python (str.strip and `re`, which the server uses) and for ECMAScript (whose regular
# expressions JSON Schema's `pattern` uses), as the body of a character class: the same set in both.
WHITESPACE = r"\s\x1c-\x1f\x85\ufeff"
# A query must hold a character that is not whitespace.
NON_BLANK = rf"[^{WHITESPACE}]"


def _document_text(value: Any) -> Any:
    # Cohere accepts a document as a string or as an object with a `text` field (and, here, an `id`, which
    # `_ids_from_document_objects` has already collected for the rerank log); objects with `rank_fields`
    # are strings by now (`_documents_from_rank_fields`).
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return value["text"]
    raise PydanticCustomError(
        "document_type", "each document must be a string or an object with a string 'text' field"
    )


DocumentText = Annotated[
    str,
    BeforeValidator(_document_text),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "properties": {"text": {"type": "string"}, "id": {"type": ["string", "integer"]}},
                    "required": ["text"],
                },
            ],
            "description": "A document: its text, or an object with its `text` and an `id` for the rerank log.",
        }
    ),
]

# A task preset by name (what `resolve_task` knows); the server says which when the name is unknown.
TaskName = Annotated[str, WithJsonSchema({"type": "string", "enum": ["default", *PRESETS]})]


def _non_empty(schema: dict[str, Any]) -> None:
    """The published schema of a document list: at least one item (its `null` branch aside)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "array":
            branch["minItems"] = 1


def _require_documents(documents: list[str] | None, field: str) -> None:
    if documents is not None and not documents:
        raise PydanticCustomError("empty_documents", f"{field} must hold at least one document")


def _ids_from_document_objects(data: Any) -> Any:
    """`document_ids` filled in from `{"id", "text"}` documents when the request does not give it."""
    if not isinstance(data, dict) or data.get("document_ids") is not None:
        return data
    documents = data.get("documents")
    if not isinstance(documents, list) or not any(
        isinstance(document, dict) and document.get("id") is not None for document in documents
    ):
        return data
    return {**data, "document_ids": [_document_id(document) for document in documents]}


def _document_id(document: Any) -> str | None:
    doc_id = document.get("id") if isinstance(document, dict) else None
    if doc_id is None:
        return None
    # A JSON string or integer (bool is an int in Python, not in JSON).
    if isinstance(doc_id, str) or (isinstance(doc_id, int) and not isinstance(doc_id, bool)):
        return str(doc_id)
    raise PydanticCustomError("document_id_type", "a document's id must be a string or an integer")


def _field_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _documents_from_rank_fields(data: Any) -> Any:
    """Cohere's `rank_fields`: each object document becomes the listed fields as `key: value` lines, in the
    order given (the YAML-like form Cohere recommends for structured documents); a field the document
    lacks is left out. A document with none of them is ranked by its `text`, as without rank_fields, or
    as an empty document (what an engine sends for a hit without the field): the published schema cannot
    say which fields each document holds, so this is no reason to refuse the request. String documents
    stay as they are."""
    if not isinstance(data, dict) or not isinstance(data.get("rank_fields"), list):
        return data
    fields = data["rank_fields"]
    documents = data.get("documents")
    if not fields or not all(isinstance(name, str) for name in fields) or not isinstance(documents, list):
        return data  # the field validators say what is wrong
    ranked: list[Any] = []
    for document in documents:
        if not isinstance(document, dict):
            ranked.append(document)
            continue
        lines = [
            f"{name}: {_field_value(document[name])}" for name in fields if document.get(name) is not None
        ]
        text = document.get("text")
        ranked.append("\n".join(lines) if lines else text if isinstance(text, str) else "")
    return {**data, "documents": ranked}


def _require_one_id_per_document(document_ids: list[str | None] | None, documents: list[str]) -> None:
    if document_ids is not None and len(document_ids) != len(documents):
        raise PydanticCustomError(
            "document_ids_length",
            f"document_ids has {len(document_ids)} entries for {len(documents)} documents",
        )


class TaskOverride(BaseModel):
    """A task for this request only: a preset, optionally with its parts replaced (like the CLI flags)."""

    model_config = ConfigDict(extra="forbid")

    name: TaskName | None = Field(
        default=None, description="Preset to start from (default: the generic task)."
    )
    query_type: str | None = Field(default=None, min_length=1)
    doc_type: str | None = Field(default=None, min_length=1)
    relevance_definition: str | None = Field(default=None, min_length=1)


class RerankRequestBase(BaseModel):
    """Fields every request shape shares: the query, Cohere's options and Retro*'s extensions."""

    model: str | None = Field(
        default=None, description="Accepted for compatibility; the server's model ranks."
    )
    query: str = Field(
        description="What the documents are ranked for; must not be blank.",
        json_schema_extra={"pattern": NON_BLANK},
    )
    top_n: int | None = Field(
        default=None, ge=0, description="Return the best n (absent or 0: one result per document)."
    )
    return_documents: bool = Field(default=False, description="Echo each document's text in its result.")
    task: TaskName | TaskOverride | None = Field(
        default=None,
        description="Override the server's task for this request: a preset name, or an object with name / "
        "query_type / doc_type / relevance_definition.",
    )
    return_explanations: bool = Field(
        default=False,
        description="Add each document's explanation: the 0-100 score, every sample with its parsed "
        "score, and the reasoning text.",
    )
    deadline: float | None = Field(
        default=None, gt=0, description="Seconds this request may take; capped by the server's deadline."
    )
    strict: bool | None = Field(
        default=None,
        description="true: fail (502/504) instead of answering a degraded 200; default: the server setting.",
    )
    document_ids: list[str | None] | None = Field(
        default=None,
        description="The documents' ids, in request order (null for one without), for the rerank log; "
        '`{"id", "text"}` documents give them too. Without an id the log records a hash of the text.',
    )
    rank_fields: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Cohere's: for object documents, the fields to rank, in order; each document is ranked "
        "as `field: value` lines. Without it an object document needs a `text` field.",
    )

    @model_validator(mode="before")
    @classmethod
    def _documents_from_objects(cls, data: Any) -> Any:
        # Ids first: they are read from the objects that rank_fields turns into text.
        return _documents_from_rank_fields(_ids_from_document_objects(data))

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, query: str) -> str:
        if not query.strip():
            raise PydanticCustomError("empty_query", "query must not be empty")
        return query

    @property
    def document_texts(self) -> list[str]:
        raise NotImplementedError  # each request shape says where its documents are

    @property
    def candidates(self) -> list[Candidate]:
        """The documents with their ids, in request order: where the wire's two lists (the documents and
        `document_ids`) become one."""
        texts = self.document_texts
        ids = self.document_ids if self.document_ids is not None else [None] * len(texts)
        return [Candidate(text=text, id=doc_id) for text, doc_id in zip(texts, ids, strict=True)]


class CohereRerankRequest(RerankRequestBase):
    """Cohere's `/v1/rerank` and `/v2/rerank` request (what OpenSearch's and Elasticsearch's connectors send)."""

    documents: list[DocumentText] = Field(json_schema_extra=_non_empty)

    @field_validator("documents")
    @classmethod
    def _documents_not_empty(cls, documents: list[str]) -> list[str]:
        _require_documents(documents, "documents")
        return documents

    @model_validator(mode="after")
    def _ids_match_documents(self) -> CohereRerankRequest:
        _require_one_id_per_document(self.document_ids, self.documents)
        return self

    @property
    def document_texts(self) -> list[str]:
        return self.documents


class AnyRerankRequest(RerankRequestBase):
    """`POST /rerank`: Cohere's shape (`documents`) or Hugging Face TEI's (`texts`)."""

    # Exactly one of the two lists (the other absent or null).
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": [field], "properties": {field: {"type": "array"}}}
                for field in ("documents", "texts")
            ]
        }
    )

    documents: list[DocumentText] | None = Field(
        default=None, description="Cohere shape.", json_schema_extra=_non_empty
    )
    texts: list[str] | None = Field(
        default=None, description="TEI shape; the answer is TEI's bare array.", json_schema_extra=_non_empty
    )
    return_text: bool = Field(default=False, description="TEI: echo each text in its result.")
    truncate: bool = Field(default=False, description="TEI: accepted; truncation is a server setting.")
    raw_scores: bool = Field(default=False, description="TEI: accepted; scores are relevance_score's.")

    @model_validator(mode="after")
    def _one_document_list(self) -> AnyRerankRequest:
        if (self.documents is None) == (self.texts is None):
            raise PydanticCustomError(
                "documents_or_texts", "give either documents (Cohere shape) or texts (TEI shape)"
            )
        _require_documents(self.documents, "documents")
        _require_documents(self.texts, "texts")
        _require_one_id_per_document(self.document_ids, self.document_texts)
        return self

    @property
    def is_tei(self) -> bool:
        return self.texts is not None

    @property
    def document_texts(self) -> list[str]:
        texts = self.texts if self.texts is not None else self.documents
        assert texts is not None  # the validator requires one of the two
        return texts


class SampleExplanation(BaseModel):
    score: int | None = Field(
        description="The sample's <score>, clipped to 0..100; null when none parsed (always null unless "
        "finish_reason is stop)."
    )
    parsed: bool
    text: str = Field(description="The generated reasoning; empty when the cache no longer kept it.")
    finish_reason: FinishReason = Field(
        description="stop: the model ended its answer; length: cut at the token limit (counted per the "
        "unparsed policy); abort: stopped by the server (the pair is unscored after one retry)."
    )


class Explanation(BaseModel):
    score: float | None = Field(description="Retro* score on 0..100 (mean of the samples); null: unscored.")
    cached: bool = Field(description="Served from the score cache.")
    reasoning_kept: bool = Field(
        description="false: a cached pair whose reasoning text the score cache no longer holds (evicted from "
        "memory, and no --cache-path or --cache-url store has it); its samples keep their scores, their text "
        "is empty."
    )
    samples: list[SampleExplanation]
    truncated: bool = Field(description="The document was cut to fit the served context (or a set budget).")
    stage: int | None = Field(
        description="The cascade stage (1-based) whose samples gave the score; null when unscored."
    )
    unscored_reason: Unscored | None = Field(
        description="Why there is no score: deadline, backend_error, aborted (the server aborted the "
        "generation twice), not_planned (beyond the cascade's first stage) or no_parsed_sample."
    )


class ResultDocument(BaseModel):
    text: str


class CohereRerankResult(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    relevance_score: float = Field(
        description="Retro* score / 100 (with a cascade: (stage - 1 + score / 100) / stages, so promoted "
        "documents sort first); 0.0 for an unscored document."
    )
    retrostar_score: float | None = Field(
        default=None, description="The Retro* score on 0..100 (the mean of the samples); null: unscored."
    )
    scored: bool = Field(
        description="false: no score (backend failure, deadline, outside the cascade's first stage, or no "
        "parsed sample with --unparsed skip)."
    )
    document: ResultDocument | None = None
    explanation: Explanation | None = None


class ApiVersion(BaseModel):
    version: str


class RerankStats(BaseModel):
    pairs_scored: int = Field(description="(query, document) pairs the model scored for this request.")
    cache_hits: int
    unscored: int = Field(description="Documents left without a score.")
    backend_errors: int = Field(description="Pairs whose request failed or was aborted, once retried.")
    deadline_exceeded: bool
    model_seconds: float
    reason: str | None = Field(
        default=None,
        description="Why documents went unscored (the backend's error, the deadline); null when none did.",
    )
    retried_pairs: int = Field(description="Pairs sent a second time (a failed request or an abort).")
    unparsed_samples: int = Field(
        description="Samples without a score (cut at the token limit, or no <score>): counted per the "
        "unparsed policy, never cached."
    )
    truncated_documents: int = Field(description="Documents cut to fit the served context (or a set budget).")
    query_truncated: bool = Field(
        description="The query was cut (once, for every document) to leave the documents half the context."
    )


class RerankMeta(BaseModel):
    api_version: ApiVersion
    warnings: list[str] | None = None
    retrostar: RerankStats


class CohereRerankResponse(BaseModel):
    id: str = Field(description="Request id, also in the X-Request-ID header and the logs.")
    model: str = Field(description="The model that scored (the request's `model` is not used).")
    results: list[CohereRerankResult] = Field(
        description="Best first; unscored documents last, in request order."
    )
    degraded: bool = Field(description="true: some documents are unscored (backend failure or deadline).")
    meta: RerankMeta


class TEIRank(BaseModel):
    index: int
    score: float = Field(description="The same as Cohere's relevance_score.")
    scored: bool
    text: str | None = None
    explanation: Explanation | None = None


class ErrorBody(BaseModel):
    message: str
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="422 only: each invalid field's location and problem."
    )
