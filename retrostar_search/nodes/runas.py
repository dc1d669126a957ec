"""The account a node runs as: both engines refuse to start as root.

Under root a system user (default `retrosearch`) is created when missing and owns the node folders;
as anyone else the node simply runs as the caller.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from retrostar_search.nodes.errors import NodeError
from retrostar_search.nodes.paths import node_user, nodes_dir, running_as_root


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    uid: int
    gid: int

    @property
    def is_caller(self) -> bool:
        return self.uid == os.geteuid()


def node_account() -> Account:
    """The account to run nodes as, creating the unprivileged user if root calls and it is missing."""
    if not running_as_root():
        entry = pwd.getpwuid(os.geteuid())
        return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)
    name = node_user()
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create_user(name)
    if entry.pw_uid == 0:
        raise NodeError(f"node user {name} is root; the engines refuse to run as root")
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _create_user(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd")
    if useradd is None:
        raise NodeError(f"running as root and user {name} does not exist; useradd is missing to create it")
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            str(nodes_dir()),
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise NodeError(f"could not create user {name}: {result.stderr.strip() or result.returncode}")
    return pwd.getpwnam(name)


def chown_tree(path: Path, account: Account) -> None:
    """Give `path` and everything below it to the node's account (a no-op for the caller's own)."""
    if account.is_caller:
        return
    os.chown(path, account.uid, account.gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), account.uid, account.gid, follow_symlinks=False)
