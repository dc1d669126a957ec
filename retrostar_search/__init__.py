"""retrostar-search: Retro* LLM reranking for OpenSearch and Elasticsearch.

The exception hierarchy is importable from here (``retrostar_search.RetrostarError`` and its kinds);
the reranker from ``retrostar_search.reranker``, its settings from ``retrostar_search.settings``.
"""

from retrostar_search.errors import (
    BackendError,
    DeadlineExceeded,
    EngineError,
    InputTooLarge,
    InvalidInput,
    MissingExtra,
    Overloaded,
    RetrostarError,
    SearchError,
    Unavailable,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "DeadlineExceeded",
    "EngineError",
    "InputTooLarge",
    "InvalidInput",
    "MissingExtra",
    "Overloaded",
    "RetrostarError",
    "SearchError",
    "Unavailable",
    "__version__",
]
