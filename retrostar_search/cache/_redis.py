"""The shared store: Redis or Valkey (`--cache-url redis://...`), one score cache for every replica and worker.

A rerank's lookups are one MGET and its new scores one pipeline of SETs, each with the TTL. Entries are
bounded by that TTL and by the server's own eviction (its `maxmemory-policy`). Short timeouts and one
retry: a server that is gone costs a rerank one failed round trip, after which `ScoreCache` leaves the
store alone for a moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from retrostar_search.cache._keys import decode_samples, encode_samples
from retrostar_search.redaction import public_url
from retrostar_search.scoring import Sample

if TYPE_CHECKING:
    from redis.asyncio import Redis

REDIS_KEY_PREFIX = "retrostar:score:"
# Long enough for a loaded server on the same network, short enough that a dead one is noticed within a
# rerank's deadline.
_TIMEOUT_SECONDS = 0.5


class RedisStore:
    name = "redis"

    def __init__(self, url: str, *, ttl_seconds: int) -> None:
        # Imported here: only a connector with --cache-url needs the client.
        from redis.asyncio import from_url
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.description = f"Redis at {public_url(url)}"
        self.ttl_seconds = ttl_seconds
        # No connection yet: the first command opens one, in the event loop that uses it.
        self._client: Redis = from_url(
            url,
            socket_timeout=_TIMEOUT_SECONDS,
            socket_connect_timeout=_TIMEOUT_SECONDS,
            # Once, at once: a pooled connection the server closed (a restart) is replaced; a server that
            # is down fails the command quickly.
            retry=Retry(NoBackoff(), 1),
        )

    async def get_many(self, keys: Iterable[str]) -> dict[str, tuple[Sample, ...]]:
        keys = list(keys)
        values = await self._client.mget([REDIS_KEY_PREFIX + key for key in keys])
        return {
            key: decode_samples(value) for key, value in zip(keys, values, strict=True) if value is not None
        }

    async def put_many(self, entries: Mapping[str, tuple[Sample, ...]]) -> None:
        async with self._client.pipeline(transaction=False) as pipeline:
            for key, samples in entries.items():
                pipeline.set(REDIS_KEY_PREFIX + key, encode_samples(samples), ex=self.ttl_seconds)
            await pipeline.execute()

    async def aclose(self) -> None:
        await self._client.aclose()

    def close(self) -> None:
        """Nothing to release without the event loop: connections open on the first command, inside the
        loop, and `aclose` closes them."""
