"""Query affinity behind the SGLang router: every request of one query carries the same routing key.

With `--policy manual` the router keeps the requests of one `X-SMG-Routing-Key` on one worker, so the
worker that computed a query's prompt prefix (everything before the document: the task and the query)
serves every pair of it, both cascade stages and repeats of the query, from its prefix cache; different
queries get different keys and spread over the workers. A single SGLang worker ignores the header.
"""

from __future__ import annotations

import functools
import hashlib

ROUTING_KEY_HEADER = "X-SMG-Routing-Key"


@functools.lru_cache(maxsize=1024)
def routing_key(model: str, prefix: str) -> str:
    """The key of one query's prompts: the model and the prompt prefix they share (the task and the query,
    rendered; `retrostar_search.prompts.render_prefix`). It reveals nothing of the query (the router logs
    and forwards it). Cached: every pair of a query asks for it with the same prefix."""
    material = f"{model}\\x00{prefix}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).hexdigest()[:32]
