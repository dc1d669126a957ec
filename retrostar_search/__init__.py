"""retrostar-search: Retro* LLM reranking for OpenSearch and Elasticsearch."""

__version__ = "0.1.0"
