"""Finding a JDK the engine version runs on: the integ-test zips bundle none.

Hosts often carry several JDKs (here OpenJDK 17 and Temurin 25); OpenSearch 2.x needs the
SecurityManager that Java 24 removed while OpenSearch 3.x and Elasticsearch 9.x need Java 21+, so each
version takes the first JDK in its own range rather than the first on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from retrostar_search.nodes.errors import NodeError

JAVA_HOME_ENV = "RETROSEARCH_JAVA_HOME"
#: Folders whose children are JDKs: Debian/Ubuntu and Fedora packages, Temurin's and Oracle's tarball
#: conventions, SDKMAN and IntelliJ downloads.
JVM_DIRS = (
    Path("/usr/lib/jvm"),
    Path("/usr/java"),
    Path("/opt/java"),
    Path("/usr/local/lib/jvm"),
    Path.home() / ".sdkman" / "candidates" / "java",
    Path.home() / ".jdks",
)
_RELEASE_VERSION = re.compile(r'^JAVA_VERSION="([^"]+)"', re.MULTILINE)
_CLI_VERSION = re.compile(r'version "([^"]+)"')


def find_java_home(majors: tuple[int, int]) -> Path:
    """The first JDK whose major version lies in `majors` (inclusive); RETROSEARCH_JAVA_HOME is binding."""
    low, high = majors
    forced = os.environ.get(JAVA_HOME_ENV)
    if forced:
        major = java_major(Path(forced))
        if major is None or not low <= major <= high:
            found = "no JDK there" if major is None else f"Java {major} there"
            raise NodeError(f"{JAVA_HOME_ENV}={forced} must be a Java {low}-{high} JDK ({found})")
        return Path(forced)
    seen: list[str] = []
    for home in _candidates():
        major = java_major(home)
        if major is not None:
            if low <= major <= high:
                return home
            seen.append(f"{home} (Java {major})")
    found = "; found only " + ", ".join(seen) if seen else ""
    raise NodeError(f"no Java {low}-{high} found{found}: {install_hint(majors)} or set {JAVA_HOME_ENV}")


def install_hint(majors: tuple[int, int]) -> str:
    """What to install for a range: Debian 12 packages OpenJDK 17 only; 21 comes with Debian 13."""
    low, high = majors
    if low <= 17 <= high:
        return "install a JDK 17 (Debian: apt-get install openjdk-17-jre-headless)"
    debian = "Debian 13: apt-get install openjdk-21-jre-headless; " if low <= 21 <= high else ""
    return (
        f"install a JDK {low} to {high}, e.g. Eclipse Temurin {low} under /usr/lib/jvm "
        f"({debian}Debian 12 packages only OpenJDK 17)"
    )


def _candidates() -> Iterator[Path]:
    seen: set[Path] = set()
    for home in _unsorted_candidates():
        resolved = home.resolve()
        if resolved not in seen:
            seen.add(resolved)
            yield home


def _unsorted_candidates() -> Iterator[Path]:
    if os.environ.get("JAVA_HOME"):
        yield Path(os.environ["JAVA_HOME"])
    on_path = shutil.which("java")
    if on_path:
        yield Path(on_path).resolve().parent.parent
    for folder in JVM_DIRS:
        if folder.is_dir():
            yield from sorted(p for p in folder.iterdir() if (p / "bin" / "java").exists())


def java_major(home: Path) -> int | None:
    """The JDK's major version, from its `release` file or, failing that, from `java -version`."""
    java = home / "bin" / "java"
    if not java.exists():
        return None
    release = home / "release"
    text = release.read_text(errors="replace") if release.exists() else ""
    match = _RELEASE_VERSION.search(text)
    if match is None:
        result = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False)
        match = _CLI_VERSION.search(result.stderr)
    if match is None:
        return None
    parts = match.group(1).split(".")
    # Java 8 and older report "1.8.0_x".
    return int(parts[1]) if parts[0] == "1" and len(parts) > 1 else int(re.sub(r"\D.*", "", parts[0]) or 0)
