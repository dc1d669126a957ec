"""What reranking through the OpenSearch search pipeline costs on top of its parts.

For 10, 50 and 100 hits it times, against a zero-latency scripted SGLang backend (so the model's own time
is out of the picture) and a connector with its score cache off (every pair goes to the backend):

- plain:     the BM25 search alone (`search_first_stage`);
- pipeline:  the same search through the rerank pipeline (`search_through_pipeline`);
- connector: the connector called directly with the same hits' text (`ConnectorClient.rerank`);

and prints medians and the ratios pipeline/plain and pipeline/(plain + connector): the second is what
OpenSearch's plumbing (ML Commons, the connector's HTTP call, re-sorting) adds beyond doing both parts.

    python bench/pipeline_overhead.py --url http://127.0.0.1:9200

The scripted server and the connector run as subprocesses so they do not share this process's GIL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from opensearchpy import OpenSearch, helpers

from connector.background import free_port
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.engines.opensearch_ml import MLCommons
from retrostar_search.engines.opensearch_setup import (
    OpenSearchRerankSetup,
    RerankWiring,
    timeout_for_deadline,
)
from retrostar_search.engines.search import (
    Candidate,
    ConnectorClient,
    document_text,
    search_first_stage,
    search_through_pipeline,
)

REPO = Path(__file__).resolve().parent.parent
QUERY = "why do leaves change colour in autumn"
CORPUS_SIZE = 200
FILLER = (
    "Deciduous trees prepare for winter by withdrawing nutrients from their leaves; the green chlorophyll "
    "breaks down and other pigments show. "
)


def corpus(index: str) -> Iterator[dict[str, object]]:
    for i in range(CORPUS_SIZE):
        yield {
            "_index": index,
            "_id": f"doc-{i}",
            "_source": {
                "title": f"Autumn note {i}",
                "text": f"Why leaves change colour in autumn, note {i}. " + FILLER * (1 + i % 3),
            },
        }


@contextmanager
def subprocess_server(args: list[str], health_url: str) -> Iterator[None]:
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        give_up_at = time.monotonic() + 30
        while True:
            try:
                if httpx.get(health_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > give_up_at:
                raise RuntimeError(
                    f"{' '.join(args)} did not start: {process.stderr.read().decode()[-2000:]}"
                )
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def interleaved(calls: list[Callable[[], object]], repeats: int, warmup: int = 5) -> list[list[float]]:
    """Seconds per call for each of `calls`, run in turn within each repeat so that a change in the
    machine's load (other processes share its cores) affects all of them alike."""
    for _ in range(warmup):
        for call in calls:
            call()
    seconds: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, samples in zip(calls, seconds, strict=True):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("RETROSEARCH_ENGINE_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--sizes", default="10,50,100")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    client: OpenSearch = EngineConnection(engine=Engine.OPENSEARCH, url=args.url).opensearch_client()
    sglang_port, connector_port = free_port(), free_port()
    sglang_url, connector_url = f"http://127.0.0.1:{sglang_port}", f"http://127.0.0.1:{connector_port}"
    name = f"bench-{os.getpid()}"
    index = name
    sglang = [sys.executable, "-m", "tests.scripted_sglang", "--port", str(sglang_port), "--latency", "0"]
    connector = [
        sys.executable, "-c", "from retrostar_search.cli import main; main()", "serve", "--backend-url", sglang_url,
        "--port", str(connector_port), "--cache-size", "0", "--log-level", "warning",
    ]  # fmt: skip

    with (
        subprocess_server(sglang, f"{sglang_url}/health"),
        subprocess_server(connector, f"{connector_url}/health"),
    ):
        helpers.bulk(client, corpus(index), refresh="wait_for")
        setup = OpenSearchRerankSetup(MLCommons(client))
        timeout = timeout_for_deadline(25)
        try:
            setup.apply(RerankWiring(connector_url, timeout, timeout, name=name, pipeline=name))
            rows = []
            with ConnectorClient(connector_url) as rerank:
                for size in sizes:
                    candidates = [
                        Candidate(document_text(hit.source))
                        for hit in search_first_stage(client, index, QUERY, size)
                    ]
                    samples = interleaved(
                        [
                            lambda size=size: search_first_stage(client, index, QUERY, size),
                            lambda size=size: search_through_pipeline(client, index, QUERY, size, name),
                            lambda candidates=candidates: rerank.rerank(QUERY, candidates),
                        ],
                        args.repeats,
                    )
                    rows.append((size, *(statistics.median(s) * 1000 for s in samples)))
        finally:
            setup.teardown(name=name, pipeline=name)
            client.indices.delete(index=index, ignore_unavailable=True)

    print(
        f"OpenSearch {client.info()['version']['number']} at {args.url}; medians of {args.repeats} runs, ms"
    )
    print(
        f"{'hits':>5} {'plain':>8} {'pipeline':>9} {'connector':>10} {'pipe/plain':>11} {'pipe/(plain+conn)':>18}"
    )
    for size, plain_ms, pipeline_ms, connector_ms in rows:
        print(
            f"{size:>5} {plain_ms:>8.1f} {pipeline_ms:>9.1f} {connector_ms:>10.1f} "
            f"{pipeline_ms / plain_ms:>11.1f} {pipeline_ms / (plain_ms + connector_ms):>18.2f}"
        )


if __name__ == "__main__":
    main()
