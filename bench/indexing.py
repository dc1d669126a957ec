"""Indexing throughput: `retrosearch index`'s code path against a bare `helpers.streaming_bulk` loop.

    python bench/indexing.py                      # 100k documents of ~1 KB into both local test nodes
    python bench/indexing.py --docs 20000 --engines opensearch --opensearch-url http://127.0.0.1:9200

One deterministic JSONL corpus is generated, then each engine gets, alternately, the bare loop (read the
file, json.loads, streaming_bulk) and the CLI's path (readers, policy, rejects, parallel bulk with
retries, progress bar, count check: `index_tools.run.index_corpus`), each into a fresh index with the
same mapping. Every run is a child process so that its peak memory (max RSS) is its own. Both timings
cover loading plus the final refresh and count. The best of ``--repeat`` runs per path is reported,
with the ratio CLI / bare (target: at least 0.9).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from index_tools.bulk import BulkOptions
from index_tools.engine import EngineOps
from index_tools.mapping import index_body
from index_tools.progress import indexing_progress
from index_tools.readers import open_corpus
from index_tools.run import IndexSettings, index_corpus
from retrostar_search.engines.connection import Engine, EngineConnection

TARGET_RATIO = 0.9
DOC_BYTES = 1000


def generate_corpus(path: Path, docs: int, seed: int = 13) -> None:
    """``docs`` documents of about DOC_BYTES bytes of text from a fixed vocabulary, the same every time."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "sto", "vel", "qua", "tri", "don", "phe", "ar", "is", "um", "ex"]
    vocabulary = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(20_000)]
    with path.open("w", encoding="utf-8") as stream:
        for n in range(docs):
            words: list[str] = []
            size = 0
            while size < DOC_BYTES:
                word = rng.choice(vocabulary)
                words.append(word)
                size += len(word) + 1
            title = " ".join(rng.choice(vocabulary) for _ in range(5))
            row = {"id": f"doc-{n:07d}", "title": title, "text": " ".join(words), "source": "bench"}
            stream.write(json.dumps(row) + "\n")


def fresh_index(connection: EngineConnection, index: str, analyzer: str) -> EngineOps:
    ops = EngineOps.connect(connection)
    if ops.exists(index):
        ops.delete(index)
    ops.create(index, index_body(analyzer))
    return ops


def run_bare(connection: EngineConnection, corpus: Path, index: str, analyzer: str, chunk_size: int) -> int:
    """The baseline: the plainest correct loop over the client's own streaming_bulk."""
    ops = fresh_index(connection, index, analyzer)

    def actions() -> Any:
        with corpus.open("rb") as stream:
            for line in stream:
                row = json.loads(line)
                source = {
                    "id": row["id"],
                    "title": row["title"],
                    "text": row["text"],
                    "metadata": {"source": row["source"]},
                }
                yield {"_index": index, "_id": row["id"], "_source": source}

    indexed = sum(ok for ok, _item in ops.streaming_bulk(actions(), chunk_size=chunk_size))
    ops.refresh(index)
    assert ops.count(index) == indexed
    return indexed


def run_cli_path(
    connection: EngineConnection, corpus: Path, index: str, analyzer: str, chunk_size: int, threads: int
) -> int:
    ops = fresh_index(connection, index, analyzer)
    settings = IndexSettings(
        index=index,
        analyzer=analyzer,
        rejects_path=Path(tempfile.gettempdir()) / "bench-indexing-rejects.jsonl",
        bulk=BulkOptions(chunk_size=chunk_size, threads=threads),
    )
    reader = open_corpus(corpus)
    with indexing_progress(Console(stderr=True), reader) as advance:
        report = index_corpus(ops, reader, settings, advance)
    assert report.count_ok and report.rejected == 0
    return report.indexed


def worker(args: argparse.Namespace) -> None:
    """One timed run in this (child) process; prints its figures as JSON on the last line."""
    connection = EngineConnection(engine=Engine(args.engine), url=args.url)
    index = f"bench-indexing-{args.worker}"
    rss_before = current_rss_mib()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    if args.worker == "bare":
        indexed = run_bare(connection, args.corpus, index, args.analyzer, args.chunk_size)
    else:
        indexed = run_cli_path(connection, args.corpus, index, args.analyzer, args.chunk_size, args.threads)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    EngineOps.connect(connection).delete(index)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "indexed": indexed,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mib": peak_mib,
        # Growth over the size after imports: what loading costs, whatever the libraries weigh.
        "growth_mib": peak_mib - rss_before,
    }
    print(json.dumps(figures))


def cpu_seconds() -> float:
    """This process's CPU time: the client's own cost, which the engine's speed and other load do not blur."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def child(args: argparse.Namespace, path_name: str, engine: str, url: str, corpus: Path) -> dict[str, float]:
    command = [
        sys.executable, __file__, "--worker", path_name, "--engine", engine, "--url", url, "--corpus", str(corpus),
        "--chunk-size", str(args.chunk_size), "--threads", str(args.threads), "--analyzer", args.analyzer,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{path_name} run on {engine} at {url} failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {**figures, "rate": figures["indexed"] / figures["seconds"]}


def describe(figures: dict[str, float]) -> str:
    return (
        f"{figures['indexed']:,.0f} docs in {figures['seconds']:.1f} s = {figures['rate']:,.0f} docs/s, "
        f"client CPU {figures['cpu_seconds']:.1f} s, peak RSS {figures['peak_rss_mib']:.0f} MiB "
        f"(+{figures['growth_mib']:.0f} MiB while loading)"
    )


def main(args: argparse.Namespace) -> None:
    urls = {"opensearch": args.opensearch_url, "elasticsearch": args.elasticsearch_url}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "bench.jsonl"
        generate_corpus(corpus, args.docs)
        size_mib = corpus.stat().st_size / 2**20
        print(
            f"corpus: {args.docs:,} documents, {size_mib:,.1f} MiB; chunk {args.chunk_size}, threads {args.threads}"
        )
        for engine in args.engines.split(","):
            runs: dict[str, list[dict[str, float]]] = {"bare": [], "cli": []}
            # Alternating the two paths spreads the engine's warm-up and any outside load over both.
            for round_no in range(1, args.repeat + 1):
                for path_name, figures_so_far in runs.items():
                    figures = child(args, path_name, engine, urls[engine], corpus)
                    figures_so_far.append(figures)
                    print(f"  {engine:13} {path_name:4} run {round_no}: {describe(figures)}", flush=True)
            best = {path_name: max(figures, key=lambda f: f["rate"]) for path_name, figures in runs.items()}
            ratio = best["cli"]["rate"] / best["bare"]["rate"]
            verdict = "OK" if ratio >= TARGET_RATIO else f"below the {TARGET_RATIO} target"
            print(
                f"{engine}: best bare {best['bare']['rate']:,.0f} docs/s, best cli {best['cli']['rate']:,.0f} docs/s, "
                f"ratio {ratio:.2f} {verdict}",
                flush=True,
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--engines", default="opensearch,elasticsearch")
    parser.add_argument("--opensearch-url", default="http://127.0.0.1:9250")
    parser.add_argument("--elasticsearch-url", default="http://127.0.0.1:9251")
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    # The Elasticsearch test node has no analysis-common module, hence no "english": both paths use the
    # same analyzer anyway, so the comparison does not depend on it.
    parser.add_argument("--analyzer", default="standard")
    parser.add_argument("--repeat", type=int, default=3, help="runs per path; the best one counts")
    # Internal: one timed run in a child process.
    parser.add_argument("--worker", choices=["bare", "cli"], help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        worker(arguments)
    else:
        main(arguments)
