"""Asking a running node over HTTP whether it is ready, and what it is.

Plain HTTP rather than the official clients: this runs before anyone configured a client, and
Elasticsearch's integ-test zip does not even serve `GET /` (the clients' `info()`), so version and
plugins come from `_nodes/_local`, which both engines answer the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from retrostar_search.nodes.errors import NodeError


@dataclass(frozen=True, slots=True)
class NodeFacts:
    version: str
    plugins: tuple[str, ...]
    health: str


def wait_ready(url: str, alive: Callable[[], bool], timeout_s: float) -> None:
    """Return once the cluster is at least yellow; fail early if the node's processes are gone."""
    import httpx  # here, not at the top: `retrosearch node --help` need not load an HTTP client

    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=10.0) as client:
        while True:
            if not alive():
                raise NodeError("the node exited while starting")
            try:
                reply = client.get(
                    f"{url}/_cluster/health", params={"wait_for_status": "yellow", "timeout": "2s"}
                )
                if reply.status_code == 200 and reply.json().get("status") in ("yellow", "green"):
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise NodeError(f"the node was not healthy after {timeout_s:.0f} s")
            time.sleep(1.0)


def facts(url: str) -> NodeFacts:
    import httpx

    try:
        with httpx.Client(timeout=10.0) as client:
            nodes = client.get(
                f"{url}/_nodes/_local", params={"filter_path": "nodes.*.version,nodes.*.plugins.name"}
            )
            nodes.raise_for_status()
            health = client.get(f"{url}/_cluster/health")
            health.raise_for_status()
    except httpx.HTTPError as exc:
        raise NodeError(f"{url} did not answer: {exc}") from exc
    (node,) = nodes.json()["nodes"].values()
    plugins = tuple(sorted(plugin["name"] for plugin in node.get("plugins", [])))
    return NodeFacts(version=node["version"], plugins=plugins, health=health.json()["status"])
