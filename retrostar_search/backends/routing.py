"""Query affinity behind the SGLang router: every request of one rerank carries the same routing key.

With `--policy manual` the router keeps the requests of one `X-SMG-Routing-Key` on one worker, so the
worker that computed a query's prompt prefix (everything before the document: the task and the query)
serves every pair of it, both cascade stages and repeats of the query, from its prefix cache; different
queries get different keys and spread over the workers. A single SGLang worker ignores the header.
"""

from __future__ import annotations

import hashlib
import json

from retrostar_search.tasks import TaskDefinition

ROUTING_KEY_HEADER = "X-SMG-Routing-Key"


def routing_key(model: str, task: TaskDefinition, query: str) -> str:
    """A key that is the same for every request of one (model, task, query) and differs otherwise; it
    reveals nothing of the query (the router logs and forwards it)."""
    material = json.dumps([model, task.fingerprint, query], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:32]
