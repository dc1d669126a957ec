"""A node's own folder: the distribution, its config, data and logs.

Read-only parts (bin, lib, modules, plugins) are hard links into the cached distribution, so a node
costs no extra disk and appears in a second; config is copied because the engine writes its keystore
there. Only config, data and logs (and the folder itself) belong to the node's account.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from retrostar_search.nodes.assembly import MARKER, fingerprint
from retrostar_search.nodes.runas import Account, chown_tree
from retrostar_search.nodes.specs import TRANSPORT_PORT_OFFSET, EngineSpec

_WRITABLE = ("config", "data", "logs")
_PLAIN_SCALAR = re.compile(r"[\w./-]+")


def prepare_home(spec: EngineSpec, distribution: Path, home: Path, port: int, account: Account) -> None:
    """Create or refresh the node folder, then (re)write its settings for `port`."""
    home.mkdir(parents=True, exist_ok=True)
    marker = home / MARKER
    if not (marker.exists() and marker.read_text() == fingerprint(spec)):
        _populate(distribution, home)
        shutil.copy2(distribution / MARKER, marker)
    (home / "config" / spec.config_file).write_text(render_settings(spec, home, port))
    for name in _WRITABLE:
        (home / name).mkdir(exist_ok=True)
        chown_tree(home / name, account)
    if not account.is_caller:
        os.chown(home, account.uid, account.gid)


def _populate(distribution: Path, home: Path) -> None:
    for entry in distribution.iterdir():
        if entry.name in _WRITABLE or entry.name == MARKER:
            continue
        target = home / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        if entry.is_dir():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(target))
    # Overwrites the shipped files (jvm.options, log4j2) but keeps what the engine added (keystore).
    shutil.copytree(distribution / "config", home / "config", dirs_exist_ok=True)


def _link_or_copy(src: str, dst: str) -> None:
    if os.path.lexists(dst):
        os.unlink(dst)
    try:
        os.link(src, dst)
    except OSError:
        # Another filesystem, or hard links not allowed: fall back to a real copy.
        shutil.copy2(src, dst)


def render_settings(spec: EngineSpec, home: Path, port: int) -> str:
    settings: list[tuple[str, str]] = [
        ("cluster.name", f"retrostar-{spec.engine.value}-{port}"),
        ("node.name", f"{spec.engine.value}-{port}"),
        # Single node on loopback: no discovery, and the production bootstrap checks do not apply.
        ("discovery.type", "single-node"),
        ("network.host", "127.0.0.1"),
        ("http.port", str(port)),
        ("transport.port", str(port + TRANSPORT_PORT_OFFSET)),
        ("path.data", str(home / "data")),
        ("path.logs", str(home / "logs")),
        # Dev machines often have full-ish disks; the watermarks would make indices read-only.
        ("cluster.routing.allocation.disk.threshold_enabled", "false"),
        *spec.extra_settings,
    ]
    lines = ["# Written by `retrosearch node start` at every start: edits here are overwritten."]
    lines += [f"{key}: {_scalar(value)}" for key, value in settings]
    return "\n".join(lines) + "\n"


def _scalar(value: str) -> str:
    # A JSON string is valid YAML, so anything unusual (spaces, colons) is quoted that way.
    return value if _PLAIN_SCALAR.fullmatch(value) else json.dumps(value)
