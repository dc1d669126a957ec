"""Metric computation against cases worked out by hand (log2 discounts written out in each test)."""

from __future__ import annotations

import math

import pytest

from retrostar_search.evaluation.metrics import (
    deepest_cutoff,
    mean_scores,
    parse_metric,
    parse_metrics,
    remove_excluded,
    score_run,
)

NDCG10, RECALL100, MRR10 = parse_metrics("ndcg@10,recall@100,mrr@10")


def log2(x: float) -> float:
    return math.log2(x)


def scores(run, qrels, *metrics, query_ids=None, excluded=None):
    query_ids = list(qrels) if query_ids is None else query_ids
    return score_run(run, qrels, metrics, query_ids, excluded)


def test_binary_ndcg_two_relevant_at_ranks_1_and_3():
    qrels = {"q": {"a": 1, "b": 1}}
    run = {"q": ["a", "x", "b", "y"]}
    dcg = 1 / log2(2) + 1 / log2(4)
    ideal = 1 / log2(2) + 1 / log2(3)
    assert scores(run, qrels, NDCG10)["q"]["ndcg@10"] == pytest.approx(dcg / ideal)


def test_graded_ndcg_uses_the_grade_as_gain():
    # Grades 3 and 1: the run puts the grade-1 document first, the ideal ranking puts the grade-3 first.
    qrels = {"q": {"high": 3, "low": 1, "judged_irrelevant": 0}}
    run = {"q": ["low", "judged_irrelevant", "high"]}
    dcg = 1 / log2(2) + 3 / log2(4)
    ideal = 3 / log2(2) + 1 / log2(3)
    assert scores(run, qrels, NDCG10)["q"]["ndcg@10"] == pytest.approx(dcg / ideal)
    # Swapping to the ideal order scores 1.
    assert scores({"q": ["high", "low"]}, qrels, NDCG10)["q"]["ndcg@10"] == pytest.approx(1.0)


def test_ndcg_cutoff_ignores_documents_below_it():
    qrels = {"q": {"a": 1}}
    run = {"q": [f"x{i}" for i in range(10)] + ["a"]}
    assert scores(run, qrels, NDCG10)["q"]["ndcg@10"] == 0.0
    ndcg11 = parse_metric("ndcg@11")
    assert scores(run, qrels, ndcg11)["q"]["ndcg@11"] == pytest.approx(1 / log2(12))


def test_recall_counts_every_positive_grade_and_respects_the_cutoff():
    qrels = {"q": {"a": 2, "b": 1, "c": 1, "not": 0}}
    run = {"q": ["a", "not", "x", "b"]}
    recall3 = parse_metric("recall@3")
    result = scores(run, qrels, RECALL100, recall3)["q"]
    assert result["recall@100"] == pytest.approx(2 / 3)
    assert result["recall@3"] == pytest.approx(1 / 3)


def test_mrr_is_the_reciprocal_rank_of_the_first_relevant_document_within_the_cutoff():
    qrels = {"q1": {"b": 1}, "q2": {"z": 1}}
    run = {"q1": ["a", "b", "c"], "q2": [f"x{i}" for i in range(10)] + ["z"]}
    result = scores(run, qrels, MRR10)
    assert result["q1"]["mrr@10"] == pytest.approx(0.5)
    # pytrec_eval's recip_rank has no cutoff and would give 1/11 here; mrr@10 must not.
    assert result["q2"]["mrr@10"] == 0.0
    assert mean_scores(result, [MRR10])["mrr@10"] == pytest.approx(0.25)


def test_rank_order_is_kept_whatever_the_ids():
    # Engines and Retro* produce ties; the metric must follow the ranking as given, not sort by id.
    qrels = {"q": {"a": 1}}
    assert scores({"q": ["z", "a"]}, qrels, MRR10)["q"]["mrr@10"] == pytest.approx(0.5)
    assert scores({"q": ["a", "z"]}, qrels, MRR10)["q"]["mrr@10"] == pytest.approx(1.0)


def test_excluded_ids_are_removed_before_scoring():
    qrels = {"q": {"gold": 1}}
    run = {"q": ["excluded1", "excluded2", "gold", "other"]}
    kept = scores(run, qrels, NDCG10, MRR10, excluded={"q": {"excluded1", "excluded2"}})["q"]
    assert kept["ndcg@10"] == pytest.approx(1.0)
    assert kept["mrr@10"] == pytest.approx(1.0)
    without = scores(run, qrels, MRR10)["q"]
    assert without["mrr@10"] == pytest.approx(1 / 3)
    assert remove_excluded(["a", "b", "c"], {"b"}) == ["a", "c"]


def test_a_query_without_results_counts_as_zero_in_the_mean():
    qrels = {"found": {"a": 1}, "missed": {"b": 1}, "empty": {"c": 1}}
    run = {"found": ["a"], "empty": []}
    result = scores(run, qrels, NDCG10, RECALL100)
    assert result["missed"] == {"ndcg@10": 0.0, "recall@100": 0.0}
    assert result["empty"] == {"ndcg@10": 0.0, "recall@100": 0.0}
    assert mean_scores(result, [NDCG10])["ndcg@10"] == pytest.approx(1 / 3)


def test_a_repeated_document_is_credited_once():
    qrels = {"q": {"a": 1, "b": 1}}
    result = scores({"q": ["a", "a", "b"]}, qrels, NDCG10)["q"]["ndcg@10"]
    assert result == pytest.approx(1.0)


def test_metric_names_parse_to_canonical_names():
    assert [m.name for m in parse_metrics("NDCG@10, R@100,rr@10,map,p@5,ndcg@10")] == [
        "ndcg@10",
        "recall@100",
        "mrr@10",
        "map",
        "p@5",
    ]
    assert deepest_cutoff(parse_metrics("ndcg@10,recall@1000")) == 1000
    for bad in ("recall", "bleu@10", "ndcg@0", "", "ndcg@ten"):
        with pytest.raises(ValueError):
            parse_metrics(bad)
