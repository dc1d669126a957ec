"""Where the assembled distributions and the node folders live (all outside the repository).

Distributions are built once into a per-user cache and reused, so a second start needs no network.
Node folders hold a node's config, data, logs, pid file and console log; under root they default to
/var/lib because the unprivileged user the node runs as cannot traverse /root.
"""

from __future__ import annotations

import os
from pathlib import Path

from retrostar_search.nodes.specs import EngineSpec

CACHE_DIR_ENV = "RETROSEARCH_CACHE_DIR"
NODES_DIR_ENV = "RETROSEARCH_NODES_DIR"
NODE_USER_ENV = "RETROSEARCH_NODE_USER"
DEFAULT_NODE_USER = "retrosearch"


def running_as_root() -> bool:
    return os.geteuid() == 0


def cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "retrostar-search"


def distribution_dir(spec: EngineSpec) -> Path:
    return cache_dir() / "distributions" / f"{spec.engine.value}-{spec.version}"


def nodes_dir() -> Path:
    if os.environ.get(NODES_DIR_ENV):
        return Path(os.environ[NODES_DIR_ENV])
    if running_as_root():
        return Path("/var/lib/retrostar-search/nodes")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "retrostar-search" / "nodes"


def node_home(spec: EngineSpec, port: int) -> Path:
    return nodes_dir() / f"{spec.engine.value}-{spec.version}-{port}"


def node_lock_file(spec: EngineSpec, port: int) -> Path:
    """Serialises start and stop of one node; beside its folder, which may not exist yet."""
    home = node_home(spec, port)
    return home.parent / f".{home.name}.lock"


def node_user() -> str:
    return os.environ.get(NODE_USER_ENV) or DEFAULT_NODE_USER
