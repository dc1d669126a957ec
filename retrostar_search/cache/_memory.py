"""The in-process layer: least-recently-used entries bounded in bytes, the reasoning text apart.

A pair's scores are what every rerank needs: two bytes a sample, a few hundred bytes an entry with its key.
Its reasoning text (about 1,600 characters a sample) is what only explanations show, and would be nine
tenths of the memory: it is kept in a second LRU with a bound of its own, and an entry whose text left it
comes back with `Sample.text` None (the persistent stores keep the text).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from retrostar_search.scoring import FinishReason, Sample

# What an OrderedDict slot costs beside its key and value: the hash table's entry and index and the
# ordering link (measured 60-120 bytes, depending on how full the table is).
ENTRY_OVERHEAD = 100

_FINISH_REASONS = tuple(FinishReason)
_FINISH_REASON_CODES = {reason: code for code, reason in enumerate(_FINISH_REASONS)}
_NO_SCORE = 255  # scores are 0..100 (parse_sample clips them)

ValueT = TypeVar("ValueT")
Texts = tuple[str | None, ...]


class _ByteBoundedLRU(Generic[ValueT]):
    """An LRU whose entries' sizes (key, value and slot, as `size_of` counts the value) add up to at most
    `max_bytes`, and whose count stays within `max_entries` when given."""

    def __init__(
        self,
        max_bytes: int,
        size_of: Callable[[ValueT], int],
        *,
        max_entries: int | None = None,
        on_evict: Callable[[str], None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.bytes_used = 0
        self._size_of = size_of
        self._on_evict = on_evict
        self._entries: OrderedDict[str, ValueT] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> ValueT | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: ValueT) -> bool:
        """Keep `value` under `key` (False: it is larger than the whole bound, and not kept)."""
        self.pop(key)
        size = self._entry_size(key, value)
        if size > self.max_bytes:
            return False  # keeping it would evict everything else
        self._entries[key] = value
        self.bytes_used += size
        while self.bytes_used > self.max_bytes or (
            self.max_entries is not None and len(self._entries) > self.max_entries
        ):
            evicted, evicted_value = self._entries.popitem(last=False)
            self.bytes_used -= self._entry_size(evicted, evicted_value)
            if self._on_evict is not None:
                self._on_evict(evicted)
        return True

    def pop(self, key: str) -> None:
        value = self._entries.pop(key, None)
        if value is not None:
            self.bytes_used -= self._entry_size(key, value)

    def _entry_size(self, key: str, value: ValueT) -> int:
        # Recomputed on eviction rather than stored: a stored size would cost an object per entry.
        return sys.getsizeof(key) + self._size_of(value) + ENTRY_OVERHEAD


class MemoryCache:
    """Every entry's scores within `max_bytes` (and `max_entries`, when given), and the reasoning text of
    the most recently used entries within `reasoning_bytes` (0: no text in memory). Both bounds count the
    entries' keys, values and slots as Python allocates them (`bench/cache_footprint.py` checks the count
    against tracemalloc)."""

    def __init__(
        self, max_bytes: int = 64 * 2**20, *, reasoning_bytes: int = 0, max_entries: int | None = None
    ) -> None:
        if max_bytes < 1 or (max_entries is not None and max_entries < 1):
            raise ValueError("the memory cache needs room for at least one entry")
        self._reasoning = _ByteBoundedLRU[Texts](reasoning_bytes, _texts_size)
        self._scores = _ByteBoundedLRU[bytes](
            max_bytes, sys.getsizeof, max_entries=max_entries, on_evict=self._reasoning.pop
        )

    def __len__(self) -> int:
        return len(self._scores)

    @property
    def bytes_used(self) -> int:
        """The scores' bytes, as the bound counts them."""
        return self._scores.bytes_used

    @property
    def reasoning_bytes_used(self) -> int:
        return self._reasoning.bytes_used

    @property
    def reasoning_entries(self) -> int:
        return len(self._reasoning)

    def get(self, key: str) -> tuple[Sample, ...] | None:
        packed = self._scores.get(key)
        if packed is None:
            return None
        return _unpack(packed, self._reasoning.get(key))

    def put(self, key: str, samples: Sequence[Sample]) -> None:
        kept = self._scores.put(key, _pack(samples))
        texts = tuple(sample.text for sample in samples)
        if kept and any(text is not None for text in texts):
            self._reasoning.put(key, texts)
        else:
            self._reasoning.pop(key)  # an older entry's text would no longer match


def _pack(samples: Sequence[Sample]) -> bytes:
    """Two bytes a sample: the score (255: none parsed) and the finish reason."""
    return bytes(
        byte
        for sample in samples
        for byte in (
            _NO_SCORE if sample.score is None else sample.score,
            _FINISH_REASON_CODES[sample.finish_reason],
        )
    )


def _unpack(packed: bytes, texts: Texts | None) -> tuple[Sample, ...]:
    return tuple(
        Sample(
            text=texts[number] if texts is not None else None,
            score=None if packed[2 * number] == _NO_SCORE else packed[2 * number],
            finish_reason=_FINISH_REASONS[packed[2 * number + 1]],
        )
        for number in range(len(packed) // 2)
    )


def _texts_size(texts: Texts) -> int:
    return sys.getsizeof(texts) + sum(sys.getsizeof(text) for text in texts if text is not None)
