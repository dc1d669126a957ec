"""Searching an index with and without Retro* reranking: the one API the CLI, the evaluation and the
explorer page share.

Three ways to get a list of `Hit`s, two of them reranked:

- ``search_through_pipeline``: OpenSearch reranks inside the search, through the search pipeline that
  ``retrosearch setup opensearch`` created (``?search_pipeline=`` plus ``ext.rerank.query_context``).
- ``rerank_client_side``: the first-stage hits are sent to the connector from here and reordered here.
  This is the path for Elasticsearch on a Basic licence (no inference API), and for OpenSearch when asked.
- ``search_first_stage`` alone is the baseline: BM25 over title and text, as BEIR runs it.

Both rerank paths send the connector the same document text (``document_text``: the fields concatenated
with no separator, which is what OpenSearch's rerank processor builds), so a document gets the same
Retro* score, served from the connector's cache, whichever path asked.
"""

from retrostar_search.engines._explanations import Explanation, SampleReasoning, reasoning_text
from retrostar_search.engines._hits import RELEVANCE_SCALE, TEXT_FIELD, TITLE_FIELD, Hit, document_text
from retrostar_search.engines._queries import DEFAULT_FIELDS, first_stage_body, pipeline_search_body
from retrostar_search.engines._rerank import (
    RerankedSearch,
    attach_explanations,
    attach_first_stage,
    rerank_client_side,
    search_and_rerank,
    search_first_stage,
    search_through_pipeline,
    verify_pipeline_rerank,
)
from retrostar_search.engines._status import RerankState, RerankStatus, degradation_reason
from retrostar_search.engines.connector_client import (
    ConnectorClient,
    ConnectorReadiness,
    RerankAnswer,
    RerankOutcome,
    RerankScore,
)
from retrostar_search.errors import SearchError
from retrostar_search.reranker import Candidate

__all__ = [
    "DEFAULT_FIELDS",
    "RELEVANCE_SCALE",
    "TEXT_FIELD",
    "TITLE_FIELD",
    "Candidate",
    "ConnectorClient",
    "ConnectorReadiness",
    "Explanation",
    "Hit",
    "RerankAnswer",
    "RerankOutcome",
    "RerankScore",
    "RerankState",
    "RerankStatus",
    "RerankedSearch",
    "SampleReasoning",
    "SearchError",
    "attach_explanations",
    "attach_first_stage",
    "degradation_reason",
    "document_text",
    "first_stage_body",
    "pipeline_search_body",
    "reasoning_text",
    "rerank_client_side",
    "search_and_rerank",
    "search_first_stage",
    "search_through_pipeline",
    "verify_pipeline_rerank",
]
