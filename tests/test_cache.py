from __future__ import annotations

import pytest

from retrostar_search.cache import ScoreCache, cache_key
from retrostar_search.scoring import Sample
from retrostar_search.tasks import PRESETS, resolve_task

SAMPLES = (Sample("reasoning <score>80</score>", 80), Sample("no score", None))


def test_key_changes_with_every_component() -> None:
    base = cache_key("model-a", PRESETS["biology"], "query", "document", 1)
    variants = [
        cache_key("model-b", PRESETS["biology"], "query", "document", 1),
        cache_key("model-a", PRESETS["economics"], "query", "document", 1),
        cache_key("model-a", resolve_task("biology", relevance_definition="other"), "query", "document", 1),
        cache_key("model-a", PRESETS["biology"], "query2", "document", 1),
        cache_key("model-a", PRESETS["biology"], "query", "document2", 1),
        cache_key("model-a", PRESETS["biology"], "query", "document", 16),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    # The preset's name is not part of the prompt, so it is not part of the key either.
    assert cache_key("model-a", PRESETS["aops"], "q", "d", 1) == cache_key(
        "model-a", PRESETS["theoremqa_questions"], "q", "d", 1
    )


def test_memory_cache_is_bounded_lru() -> None:
    cache = ScoreCache(max_entries=2)
    cache.put("a", SAMPLES)
    cache.put("b", SAMPLES)
    assert cache.get("a") == SAMPLES  # a is now the most recent
    cache.put("c", SAMPLES)
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") == SAMPLES and cache.get("c") == SAMPLES


def test_sqlite_cache_survives_a_restart(tmp_path) -> None:
    path = tmp_path / "scores.sqlite"
    first = ScoreCache(max_entries=10, path=path)
    first.put("k", SAMPLES)
    first.close()
    second = ScoreCache(max_entries=10, path=path)
    assert len(second) == 0  # nothing in memory yet: the hit comes from the file
    assert second.get("k") == SAMPLES
    assert second.get("missing") is None
    second.close()


def test_cache_needs_room() -> None:
    with pytest.raises(ValueError):
        ScoreCache(max_entries=0)
