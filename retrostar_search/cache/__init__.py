"""Score cache: a (query, document) pair scored once is never sent to the model again.

Keys cover everything that changes the model's answer: the model, the prompt version, the task definition,
the query, the document (hashed) and the number of samples K. Values are the samples themselves, so the
integration policy can change without invalidating anything.

Layers, looked up in this order and all written on every put::

    MemoryCache   this process: every entry's scores within a byte bound, and the reasoning text of the
                  most recently used entries within a second, smaller one
    SqliteStore   --cache-path: a file that survives restarts (and is shared by the processes of one host)
    RedisStore    --cache-url: Redis or Valkey, shared by replicas and workers, entries bounded by a TTL

`ScoreCache` puts them together behind the two calls the reranker makes per cascade stage, `get_many`
and `put_many`. A store that fails costs a rerank nothing but the store: the failure is counted, logged
once per outage, and the rerank goes on with what the other layers know.
"""

from retrostar_search.cache._keys import cache_key, query_cache_keys
from retrostar_search.cache._memory import MemoryCache
from retrostar_search.cache._redis import REDIS_KEY_PREFIX, RedisStore
from retrostar_search.cache._score_cache import RETRY_AFTER_SECONDS, CacheObserver, ScoreCache, ScoreStore
from retrostar_search.cache._sqlite import SqliteStore

__all__ = [
    "REDIS_KEY_PREFIX",
    "RETRY_AFTER_SECONDS",
    "CacheObserver",
    "MemoryCache",
    "RedisStore",
    "ScoreCache",
    "ScoreStore",
    "SqliteStore",
    "cache_key",
    "query_cache_keys",
]
