"""The PNG a user looks at first: metric bars for both legs, and what reranking did query by query."""

from __future__ import annotations

from pathlib import Path

# The Agg canvas directly, not pyplot: no display needed (servers, CI) and no global backend switched
# under a caller that uses matplotlib itself.
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from retrostar_search.evaluation.summary import EvalSummary

FIRST_STAGE_COLOR = "#8c8c8c"
RERANKED_COLOR = "#1f77b4"
BETTER_COLOR = "#2ca02c"
WORSE_COLOR = "#d62728"


def plot_summary(summary: EvalSummary, path: Path) -> Path:
    """Left: each metric's mean for the first stage (and reranked). Right: the per-query change in the
    first metric, sorted (or, without reranking, the per-query first-stage values)."""
    primary = summary.metrics[0]
    figure = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    bars_axis, query_axis = figure.subplots(1, 2, gridspec_kw={"width_ratios": [2, 3]})
    _metric_bars(bars_axis, summary)
    if summary.reranked is None:
        values = sorted((result.first_stage[primary] for result in summary.per_query), reverse=True)
        query_axis.bar(range(len(values)), values, width=1.0, color=FIRST_STAGE_COLOR)
        query_axis.set_ylabel(primary)
        query_axis.set_title(f"per-query first-stage {primary} (n={len(values)})", fontsize=10)
    else:
        deltas = sorted(
            ((result.delta or {})[primary] for result in summary.per_query),
            reverse=True,
        )
        colors = [BETTER_COLOR if d > 0 else WORSE_COLOR if d < 0 else FIRST_STAGE_COLOR for d in deltas]
        query_axis.bar(range(len(deltas)), deltas, width=1.0, color=colors)
        query_axis.axhline(0, color="black", linewidth=0.6)
        better, worse = sum(d > 0 for d in deltas), sum(d < 0 for d in deltas)
        query_axis.set_ylabel(f"Δ {primary}")
        query_axis.set_title(
            f"per-query Δ {primary}: {better} better, {worse} worse, {len(deltas) - better - worse} same",
            fontsize=10,
        )
    query_axis.set_xlabel("queries (sorted)")
    query_axis.set_xticks([])
    figure.suptitle(_title(summary), fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def _title(summary: EvalSummary) -> str:
    title = f"{summary.collection} · {summary.engine} index {summary.index} · BM25"
    rerank = summary.settings.get("rerank")
    if not rerank:
        return title
    if rerank.get("backend") == "cpu":
        # A figure travels without its terminal output: the warning must be in the image itself.
        return f"{title} → cpu fallback (NOT Retro*)"
    reranker = rerank.get("model") or rerank.get("connector_url", "connector")
    cascade = f", {rerank['cascade']}" if rerank.get("cascade") else ""
    return f"{title} → {reranker}{cascade}"


def _metric_bars(axis: Axes, summary: EvalSummary) -> None:
    positions = range(len(summary.metrics))
    legs = [("first stage", summary.first_stage, FIRST_STAGE_COLOR)]
    if summary.reranked is not None:
        legs.append(("reranked", summary.reranked, RERANKED_COLOR))
    width = 0.8 / len(legs)
    for offset, (label, means, color) in enumerate(legs):
        xs = [p + (offset - (len(legs) - 1) / 2) * width for p in positions]
        values = [means[name] for name in summary.metrics]
        drawn = axis.bar(xs, values, width=width, label=label, color=color)
        axis.bar_label(drawn, fmt="%.3f", fontsize=7, padding=1)
    axis.set_xticks(list(positions), summary.metrics)
    axis.set_ylim(0, 1.2)
    axis.set_title(f"mean over {len(summary.per_query)} queries", fontsize=10)
    axis.legend(fontsize=8, loc="upper center", ncols=2, frameon=False)
