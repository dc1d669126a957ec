"""Peak memory of one rerank with a huge query (issue 10: a 4 MB query with 250 documents took the connector
from 92 MB to 2 GB, the query copied into every pair's prompt before any bound applied).

Every measurement is a fresh process: a `Reranker` over `SGLangGenerateBackend`, against the scripted
SGLang server (in this process, lean: it keeps no prompts), reranks N documents once. The child reports
the peak of Python's allocations during the rerank (tracemalloc, started after the query and documents
exist, so the request's own input is not counted) and its peak resident set. The baseline, in the same run
and the same processes' setup: the same rerank with a short query. The ratio huge / short is what the
query's size costs; 1.0 means nothing.

    python bench/rerank_memory.py                                  # 4 MB x 250 documents, 3 repeats
    python bench/rerank_memory.py --src /tmp/main-checkout         # also another tree (e.g. main), same run
    python bench/rerank_memory.py --query-mb 1 --documents 100 --repeats 1 --json memory.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHORT_QUERY_BYTES = 40
MIB = 1024 * 1024


async def measure(url: str, query_bytes: int, documents: int) -> dict[str, Any]:
    """One rerank in this process (the child): run with the tree to measure first on sys.path."""
    from retrostar_search.backends.sglang_http import SGLangGenerateBackend
    from retrostar_search.reranker import Candidate, Reranker

    query = "x" * query_bytes  # one long word: the scripted server tokenizes it cheaply
    candidates = [
        Candidate(f"document {i} [[retrostar:{i % 100}]] " + "text " * 100) for i in range(documents)
    ]
    reranker = Reranker(SGLangGenerateBackend(url, model="retro-star-bench"))
    tracemalloc.start()
    result = await reranker.rerank(query, candidates)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await reranker.aclose()
    return {
        "tracemalloc_peak": peak,
        "rss_peak": peak_rss(),
        "scored": sum(1 for document in result.ranking if document.score is not None),
    }


def peak_rss() -> int:
    """This process's peak resident set in bytes: VmHWM, which starts afresh at exec (ru_maxrss keeps the
    parent's peak across fork and exec, and the parent here holds the scripted server)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_child(src: Path, url: str, query_bytes: int, documents: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", url, str(query_bytes), str(documents)]
    environment = {**os.environ, "PYTHONPATH": str(src)}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=src)
    if completed.returncode != 0:
        raise SystemExit(f"the measurement in {src} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, query_bytes, documents = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(asyncio.run(measure(url, query_bytes, documents))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--query-mb", type=float, default=4.0)
    parser.add_argument("--documents", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--src", type=Path, action="append", default=[], help="another tree to measure too")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.scripted_sglang import ScriptedSGLangServer

    trees = [ROOT, *args.src]
    sizes = {"short": SHORT_QUERY_BYTES, "huge": int(args.query_mb * MIB)}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        str(tree): {name: [] for name in sizes} for tree in trees
    }
    with ScriptedSGLangServer(lean=True) as server:
        for _ in range(args.repeats):
            for tree in trees:
                for name, query_bytes in sizes.items():
                    runs[str(tree)][name].append(run_child(tree, server.url, query_bytes, args.documents))

    print(
        f"one rerank of {args.documents} documents, query {args.query_mb:g} MB vs {SHORT_QUERY_BYTES} bytes, ",
        end="",
    )
    print(f"median of {args.repeats} fresh processes each\n")
    print("| tree | query | tracemalloc peak | RSS peak | documents scored | peak ratio huge/short |")
    print("|---|---|---|---|---|---|")
    for tree, by_size in runs.items():
        peaks = {
            name: statistics.median(run["tracemalloc_peak"] for run in measured)
            for name, measured in by_size.items()
        }
        for name, measured in by_size.items():
            rss = statistics.median(run["rss_peak"] for run in measured)
            scored = min(run["scored"] for run in measured)
            ratio = f"{peaks['huge'] / peaks['short']:.1f}" if name == "huge" else ""
            print(
                f"| {tree} | {name} | {peaks[name] / MIB:.1f} MiB | {rss / MIB:.0f} MiB | {scored} | {ratio} |"
            )
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=1)
        )


if __name__ == "__main__":
    main()
