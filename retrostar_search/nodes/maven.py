"""Artifacts from Maven Central, through the ordinary `mvn` client and its local repository (~/.m2).

A throwaway POM lists the wanted artifacts and `dependency:list` resolves them, downloading what the
local repository lacks and reporting every file's absolute path: one client run for a whole set, with
Maven's own retry, proxy and mirror settings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from retrostar_search.nodes.errors import NodeError
from retrostar_search.nodes.specs import Coordinate

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GOAL_PREFIX = re.compile(r"^.*? on project [^:]+: ")
_PROJECT_PREFIX = re.compile(r"^Could not resolve dependencies for project [^:]+(?::[^:\s]+)*: ")


@dataclass(frozen=True, slots=True)
class ResolvedArtifact:
    group: str
    artifact: str
    version: str
    packaging: str
    path: Path


def resolve(coordinates: Sequence[Coordinate], *, transitive: bool) -> list[ResolvedArtifact]:
    """Resolve the artifacts (and, if `transitive`, their runtime dependencies) to local files."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise NodeError(
            "mvn (Apache Maven) is not on PATH; it fetches the node from Maven Central "
            "(Debian: apt-get install maven)"
        )
    with tempfile.TemporaryDirectory(prefix="retrostar-mvn-") as work:
        pom = Path(work) / "pom.xml"
        listing = Path(work) / "resolved.txt"
        pom.write_text(_pom(coordinates, transitive=transitive))
        result = subprocess.run(
            [
                mvn,
                "--batch-mode",
                "--quiet",
                "--file",
                str(pom),
                "dependency:list",
                f"-DoutputFile={listing}",
                "-DoutputAbsoluteArtifactFilename=true",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not listing.exists():
            wanted = ", ".join(str(c) for c in coordinates)
            raise NodeError(f"mvn could not fetch {wanted}: {failure_reason(result.stdout + result.stderr)}")
        return parse_listing(listing.read_text())


def _pom(coordinates: Sequence[Coordinate], *, transitive: bool) -> str:
    # Excluding `*:*` keeps a plugin zip or distribution from dragging in its build-time POM dependencies.
    exclusions = (
        ""
        if transitive
        else "<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>"
    )
    dependencies = "\n".join(
        f"<dependency><groupId>{escape(c.group)}</groupId><artifactId>{escape(c.artifact)}</artifactId>"
        f"<version>{escape(c.version)}</version><type>{escape(c.packaging)}</type>{exclusions}</dependency>"
        for c in coordinates
    )
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.retrostar-search</groupId>
  <artifactId>node-artifacts</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""


def parse_listing(text: str) -> list[ResolvedArtifact]:
    """Parse `dependency:list` lines: `group:artifact:type[:classifier]:version:scope:/abs/path`."""
    artifacts: list[ResolvedArtifact] = []
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.strip()
        head, sep, tail = line.partition(":/")
        if not sep:
            continue
        # Newer dependency plugins append " -- module <name>" after the path.
        path = "/" + tail.split(" -- ", 1)[0].strip()
        parts = head.split(":")
        if len(parts) < 5:
            continue
        group, artifact, packaging, version = parts[0], parts[1], parts[2], parts[-2]
        artifacts.append(ResolvedArtifact(group, artifact, version, packaging, Path(path)))
    return artifacts


def failure_reason(output: str) -> str:
    """Maven's own one-line reason, without the goal and project boilerplate around it."""
    for raw in _ANSI.sub("", output).splitlines():
        if not raw.startswith("[ERROR]"):
            continue
        line = raw.removeprefix("[ERROR]").strip()
        if not line:
            continue
        line = _PROJECT_PREFIX.sub("", _GOAL_PREFIX.sub("", line))
        return line.split(" -> [Help", 1)[0][:400]
    tail = _ANSI.sub("", output).strip().splitlines()
    return tail[-1][:400] if tail else "mvn failed without a message"
