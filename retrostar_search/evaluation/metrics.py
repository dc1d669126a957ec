"""Retrieval metrics: user-facing names (``ndcg@10``) on top of ir-measures, which runs pytrec_eval.

Rankings go in as ordered lists of document ids, not as engine scores: pytrec_eval re-sorts by score and
breaks ties by document id, which would silently reorder tied BM25 scores or integer Retro* scores. Giving
each document a score from its rank makes the metrics see exactly the order the system produced.

ir-measures (the `eval` extra) is imported when metrics are computed, not when they are named: the rest of
the package, and `retrosearch eval --help`, work without it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from retrostar_search.extras import import_extra

if TYPE_CHECKING:
    import ir_measures

Qrels = Mapping[str, Mapping[str, int]]
# Query id → document ids, best first.
Run = Mapping[str, Sequence[str]]
# Query id → metric name → value.
PerQueryScores = dict[str, dict[str, float]]

DEFAULT_METRICS = "ndcg@10,recall@100,mrr@10"

# User-facing family → (ir-measures' name of the measure, whether a cutoff is required).
_FAMILIES = {
    "ndcg": ("nDCG", False),
    "recall": ("R", True),
    "mrr": ("RR", False),
    "map": ("AP", False),
    "p": ("P", True),
}
_ALIASES = {"r": "recall", "rr": "mrr", "ap": "map", "precision": "p"}
_METRIC = re.compile(r"^(?P<family>[a-z]+)(?:@(?P<cutoff>\d+))?$")


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric: its canonical name (``ndcg@10``, ``recall@100``, ``mrr@10``) and the measure behind it.

    Graded judgements count as gains in nDCG (pytrec_eval's linear gain, as BEIR reports); the other
    metrics count any grade of 1 or more as relevant.
    """

    name: str
    measure_name: str  # ir-measures' name: nDCG, R, RR, AP, P
    cutoff: int | None = None

    @property
    def measure(self) -> ir_measures.Measure:
        measure = getattr(_ir_measures(), self.measure_name)
        return measure if self.cutoff is None else measure @ self.cutoff


def _ir_measures() -> ModuleType:
    return import_extra("ir_measures", "eval", "computing retrieval metrics (`retrosearch eval`)")


def parse_metric(text: str) -> Metric:
    match = _METRIC.match(text.strip().lower())
    family = _ALIASES.get(match["family"], match["family"]) if match else None
    if match is None or family not in _FAMILIES:
        known = ", ".join(f"{name}@K" for name in _FAMILIES)
        raise ValueError(f"unknown metric {text!r}; known: {known} (e.g. ndcg@10,recall@100,mrr@10)")
    measure_name, needs_cutoff = _FAMILIES[family]
    cutoff = match["cutoff"]
    if cutoff is None:
        if needs_cutoff:
            raise ValueError(f"metric {text!r} needs a cutoff, e.g. {family}@100")
        return Metric(name=family, measure_name=measure_name)
    if int(cutoff) < 1:
        raise ValueError(f"metric {text!r}: the cutoff must be positive")
    return Metric(name=f"{family}@{int(cutoff)}", measure_name=measure_name, cutoff=int(cutoff))


def parse_metrics(spec: str) -> list[Metric]:
    """``"ndcg@10,recall@100,mrr@10"`` → metrics in the order given, duplicates dropped."""
    metrics: dict[str, Metric] = {}
    for part in spec.split(","):
        if part.strip():
            metric = parse_metric(part)
            metrics.setdefault(metric.name, metric)
    if not metrics:
        raise ValueError(f"no metric in {spec!r}; e.g. {DEFAULT_METRICS}")
    return list(metrics.values())


def deepest_cutoff(metrics: Iterable[Metric]) -> int | None:
    """The largest cutoff asked for (None if some metric has none): how deep a ranking must go."""
    cutoffs: list[int] = []
    for metric in metrics:
        if metric.cutoff is None:
            return None
        cutoffs.append(metric.cutoff)
    return max(cutoffs, default=None)


def has_relevant(judgements: Mapping[str, int]) -> bool:
    return any(grade > 0 for grade in judgements.values())


def remove_excluded(ranking: Sequence[str], excluded: Iterable[str]) -> list[str]:
    """The ranking without the excluded ids (BRIGHT's per-query exclusions), order kept."""
    excluded = set(excluded)
    return [doc_id for doc_id in ranking if doc_id not in excluded]


def _rank_scores(ranking: Sequence[str]) -> dict[str, float]:
    # A repeated id keeps its best rank: a system cannot be credited twice for one document.
    scores: dict[str, float] = {}
    for rank, doc_id in enumerate(ranking):
        scores.setdefault(doc_id, float(len(ranking) - rank))
    return scores


def score_run(
    run: Run,
    qrels: Qrels,
    metrics: Sequence[Metric],
    query_ids: Iterable[str],
    excluded: Mapping[str, Iterable[str]] | None = None,
) -> PerQueryScores:
    """Every metric for every query in ``query_ids``.

    Excluded ids are removed from a query's ranking before scoring. A query without a ranking, or whose
    ranking found nothing, scores 0 on every metric (trec_eval's ``-c``): leaving it out would inflate the
    mean.
    """
    query_ids = list(query_ids)
    excluded = excluded or {}
    scored_run = {
        query_id: _rank_scores(remove_excluded(run.get(query_id, ()), excluded.get(query_id, ())))
        for query_id in query_ids
    }
    scored_qrels = {query_id: dict(qrels.get(query_id, {})) for query_id in query_ids}
    by_measure = {metric.measure: metric.name for metric in metrics}
    scores: PerQueryScores = {query_id: dict.fromkeys(by_measure.values(), 0.0) for query_id in query_ids}
    # ir-measures picks the provider per measure: pytrec_eval for nDCG, recall, MAP and P; its MS MARCO
    # implementation for MRR@k, because pytrec_eval's recip_rank ignores cutoffs.
    non_empty_run = {query_id: docs for query_id, docs in scored_run.items() if docs}
    for result in _ir_measures().iter_calc(list(by_measure), scored_qrels, non_empty_run):
        if result.query_id in scores:
            scores[result.query_id][by_measure[result.measure]] = float(result.value)
    return scores


def mean_scores(per_query: PerQueryScores, metrics: Sequence[Metric]) -> dict[str, float]:
    """The mean of each metric over the queries (0.0 for an empty set)."""
    count = len(per_query)
    return {
        metric.name: (sum(values[metric.name] for values in per_query.values()) / count if count else 0.0)
        for metric in metrics
    }
