"""The files an evaluation leaves in ``--out``: summary and per-query results (JSON and CSV), the runs in
TREC format (to re-score with any tool), and the plot."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from retrostar_search.evaluation.runner import QueryRun
from retrostar_search.evaluation.summary import EvalSummary
from retrostar_search.extras import require_extra

SUMMARY_FILE = "summary.json"
PER_QUERY_JSON = "per_query.json"
PER_QUERY_CSV = "per_query.csv"
PLOT_FILE = "eval.png"
FIRST_STAGE_RUN = "run.first_stage.trec"
RERANKED_RUN = "run.reranked.trec"


def write_report(summary: EvalSummary, runs: Sequence[QueryRun], out: Path) -> dict[str, str]:
    """Write every output file under ``out``; returns {kind: path} (also recorded in the summary)."""
    # matplotlib (the `eval` extra) costs a quarter second to import: only the report pays it.
    require_extra("eval", "the evaluation report's plot")
    from retrostar_search.evaluation.plot import plot_summary

    out.mkdir(parents=True, exist_ok=True)
    outputs = {
        "per_query_json": _write_per_query_json(summary, out / PER_QUERY_JSON),
        "per_query_csv": _write_per_query_csv(summary, out / PER_QUERY_CSV),
        "first_stage_run": _write_trec_run(
            {run.query_id: run.first_stage for run in runs}, "first-stage", out / FIRST_STAGE_RUN
        ),
        "plot": str(plot_summary(summary, out / PLOT_FILE)),
    }
    if summary.reranked is not None:
        outputs["reranked_run"] = _write_trec_run(
            {run.query_id: run.reranked for run in runs if run.reranked is not None},
            "reranked",
            out / RERANKED_RUN,
        )
    outputs["summary"] = str(out / SUMMARY_FILE)
    summary.outputs.update(outputs)
    (out / SUMMARY_FILE).write_text(json.dumps(summary.as_json(), indent=2, ensure_ascii=False) + "\n")
    return outputs


def _write_per_query_json(summary: EvalSummary, path: Path) -> str:
    rows = [result.as_json() for result in summary.per_query]
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    return str(path)


def _write_per_query_csv(summary: EvalSummary, path: Path) -> str:
    legs = ["first_stage"] if summary.reranked is None else ["first_stage", "reranked", "delta"]
    header = ["query_id", "relevant", *(f"{name}:{leg}" for name in summary.metrics for leg in legs)]
    if summary.reranked is not None:
        header += ["pairs_scored", "cache_hits", "degraded"]
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for result in summary.per_query:
            values = {"first_stage": result.first_stage, "reranked": result.reranked, "delta": result.delta}
            row: list[object] = [result.query_id, result.relevant]
            row += [f"{(values[leg] or {})[name]:.6f}" for name in summary.metrics for leg in legs]
            if summary.reranked is not None:
                row += [result.pairs_scored, result.cache_hits, int(result.degraded)]
            writer.writerow(row)
    return str(path)


def _write_trec_run(rankings: dict[str, list[str]], tag: str, path: Path) -> str:
    # Scores fall with rank so that any trec_eval re-scores exactly the order the system produced.
    with path.open("w", encoding="utf-8") as stream:
        for query_id, ranking in rankings.items():
            for rank, doc_id in enumerate(ranking, start=1):
                stream.write(f"{query_id} Q0 {doc_id} {rank} {len(ranking) - rank + 1} {tag}\n")
    return str(path)
