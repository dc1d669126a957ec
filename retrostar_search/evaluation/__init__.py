"""`retrosearch eval`: first-stage against reranked quality on BEIR and BRIGHT collections.

collection (queries, qrels, excluded ids) → runner (first stage, then the rerank leg from legs) →
summary (metrics) → report and plot (files), display (terminal).
"""
