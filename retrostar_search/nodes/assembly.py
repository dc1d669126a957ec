"""Assembling a runnable distribution from Maven artifacts, once, into the cache.

The integ-test zip is a bare server. For OpenSearch the core modules it lacks (lang-painless for k-NN,
analysis-common for English analysis) are rebuilt as module folders from their jars, then the plugin
zips are installed with the distribution's own plugin CLI, which checks descriptors, extension order
and jar hell the way a real install does. The result is built in a staging folder and renamed into
place, so an interrupted build never looks finished.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from retrostar_search.nodes.errors import NodeError
from retrostar_search.nodes.locking import exclusive
from retrostar_search.nodes.maven import ResolvedArtifact, resolve
from retrostar_search.nodes.paths import distribution_dir
from retrostar_search.nodes.specs import EngineSpec, ModuleSpec

Reporter = Callable[[str], None]

MARKER = ".retrostar-assembled"
# Core jars already in lib/; a second copy in a module folder fails the node's jar-hell check.
_LIB_GROUPS = frozenset({"org.opensearch", "org.apache.lucene"})


def fingerprint(spec: EngineSpec) -> str:
    """Changes whenever the spec does, so an outdated cached build is rebuilt rather than reused."""
    return hashlib.sha256(repr(spec).encode()).hexdigest()[:16]


def ensure_distribution(spec: EngineSpec, java_home: Path, report: Reporter) -> Path:
    """The assembled distribution for `spec`, building it first if the cache lacks it."""
    target = distribution_dir(spec)
    with exclusive(target.parent / f".{target.name}.lock"):
        marker = target / MARKER
        if not (marker.exists() and marker.read_text() == fingerprint(spec)):
            _assemble(spec, target, java_home, report)
    return target


def _assemble(spec: EngineSpec, target: Path, java_home: Path, report: Reporter) -> None:
    report(f"fetching {spec.engine.value} {spec.version} from Maven Central with mvn")
    resolved = resolve([spec.distribution, *(m.jar for m in spec.modules), *spec.plugins], transitive=False)
    files = {(a.group, a.artifact): a.path for a in resolved}
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        report(f"assembling {spec.engine.value} {spec.version} in {target}")
        extract_zip(files[(spec.distribution.group, spec.distribution.artifact)], staging, spec.zip_root)
        for module in spec.modules:
            _assemble_module(spec, module, staging, files[(module.jar.group, module.jar.artifact)])
        for plugin in spec.plugins:
            report(f"installing plugin {plugin.artifact}")
            _install_plugin(spec, staging, files[(plugin.group, plugin.artifact)], java_home)
        (staging / MARKER).write_text(fingerprint(spec))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def extract_zip(archive: Path, dest: Path, root: str) -> None:
    """Unpack `root/` of the archive into `dest`, keeping Unix modes (zipfile drops them by default)."""
    dest_resolved = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            relative = info.filename.removeprefix(f"{root}/")
            if relative == info.filename or not relative:
                continue
            out = dest / relative
            if not out.resolve().is_relative_to(dest_resolved):
                raise NodeError(f"{archive.name} holds a path outside its root: {info.filename}")
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, out.open("wb") as sink:
                shutil.copyfileobj(src, sink)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                out.chmod(mode)


def _assemble_module(spec: EngineSpec, module: ModuleSpec, home: Path, jar: Path) -> None:
    folder = home / "modules" / module.name
    folder.mkdir(parents=True)
    shutil.copy2(jar, folder / jar.name)
    lib_jars = [p.name for p in (home / "lib").glob("*.jar")]
    for artifact in resolve([module.jar], transitive=True):
        if artifact.path.name != jar.name and not _in_lib(artifact, lib_jars):
            shutil.copy2(artifact.path, folder / artifact.path.name)
    (folder / "plugin-descriptor.properties").write_text(
        "\n".join(
            [
                f"description={module.description}",
                f"version={spec.version}",
                f"name={module.name}",
                f"classname={module.classname}",
                "java.version=11",
                f"opensearch.version={spec.version}",
                "custom.foldername=",
                f"extended.plugins={','.join(module.extended_plugins)}",
                "has.native.controller=false",
                "",
            ]
        )
    )
    if module.security_policy:
        (folder / "plugin-security.policy").write_text(module.security_policy)


def _in_lib(artifact: ResolvedArtifact, lib_jars: list[str]) -> bool:
    """Whether lib/ already holds this artifact, at any version (two versions would clash too)."""
    if artifact.group in _LIB_GROUPS:
        return True
    prefix = f"{artifact.artifact}-"
    return any(name.startswith(prefix) and name[len(prefix) : len(prefix) + 1].isdigit() for name in lib_jars)


def _install_plugin(spec: EngineSpec, home: Path, archive: Path, java_home: Path) -> None:
    env = {**os.environ, "JAVA_HOME": str(java_home), spec.env_var("JAVA_HOME"): str(java_home)}
    env.pop(spec.env_var("PATH_CONF"), None)
    result = subprocess.run(
        [str(home / spec.plugin_cli), "install", "--batch", archive.resolve().as_uri()],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise NodeError(f"installing {archive.name} failed: {reason}")
