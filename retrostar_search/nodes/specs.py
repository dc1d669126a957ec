"""What a local node is made of, per engine and version: Maven coordinates, assembled modules, launch
details.

Every artifact comes from Maven Central (the only download source some hosts reach). The coordinates
below were checked against Central; the reference's `opensearch-neural-search` is not served there, the
plugin is published as `org.opensearch.plugin:neural-search`. Central serves no 3.x ML Commons,
neural-search, k-NN or job-scheduler plugin zip (3.0 to 3.9 tried), so an OpenSearch 3.x node is the
bare integ-test zip: indexing, BM25 search and client-side reranking, but no search pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from retrostar_search.engines.connection import Engine
from retrostar_search.nodes.errors import NodeError


@dataclass(frozen=True, slots=True)
class Coordinate:
    group: str
    artifact: str
    version: str
    packaging: str = "jar"

    def __str__(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}:{self.packaging}"


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    """A core module the integ-test-zip leaves out, rebuilt as `modules/<name>/` from its Maven jar.

    The class name must be the one in *this* version's jar (checked by listing it): OpenSearch renamed
    these plugin classes after 2.19, so its current sources name different ones."""

    name: str
    jar: Coordinate
    classname: str
    description: str
    extended_plugins: tuple[str, ...] = ()
    security_policy: str | None = None


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """One release of an engine. Its integ-test zip is named after the engine (`opensearch`,
    `elasticsearch`), and so are the folder inside it, the scripts under `bin/` and the config file."""

    engine: Engine
    distribution: Coordinate
    modules: tuple[ModuleSpec, ...]
    #: Installed in this order: each may extend the ones before it.
    plugins: tuple[Coordinate, ...]
    #: Of the launch scripts' environment variables: OPENSEARCH_JAVA_HOME, ES_JAVA_HOME (see `env_var`).
    env_prefix: str
    #: Java majors this release runs on (both ends inclusive, the upper one as verified here); 2.x
    #: OpenSearch needs the SecurityManager, gone in Java 24; OpenSearch 3.x and Elasticsearch 9.x need 21+.
    java_majors: tuple[int, int]
    default_port: int
    extra_settings: tuple[tuple[str, str], ...] = ()

    @property
    def version(self) -> str:
        return self.distribution.version

    @property
    def zip_root(self) -> str:
        """Folder name inside the distribution zip."""
        return f"{self.distribution.artifact}-{self.version}"

    @property
    def launcher(self) -> str:
        """The start script, relative to the node's home."""
        return f"bin/{self.distribution.artifact}"

    @property
    def plugin_cli(self) -> str:
        """The plugin installer, relative to the node's home."""
        return f"bin/{self.distribution.artifact}-plugin"

    @property
    def config_file(self) -> str:
        """The settings file's name in the node's `config/` folder."""
        return f"{self.distribution.artifact}.yml"

    def env_var(self, name: str) -> str:
        """The launch scripts' variable `name` (JAVA_HOME, JAVA_OPTS, PATH_CONF): ES_JAVA_HOME, ..."""
        return f"{self.env_prefix}_{name}"

    @property
    def search_pipeline(self) -> bool:
        """Whether the node carries ML Commons and neural-search: the in-engine rerank pipeline."""
        return any(plugin.artifact == "opensearch-ml-plugin" for plugin in self.plugins)


_OPENSEARCH_VERSION = "2.19.1"
_OPENSEARCH_PLUGIN_VERSION = f"{_OPENSEARCH_VERSION}.0"

_PAINLESS_POLICY = """grant {
  // Painless compiles scripts into classes it loads itself
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
"""

OPENSEARCH = EngineSpec(
    engine=Engine.OPENSEARCH,
    distribution=Coordinate(
        "org.opensearch.distribution.integ-test-zip", "opensearch", _OPENSEARCH_VERSION, "zip"
    ),
    modules=(
        ModuleSpec(
            name="lang-painless",
            jar=Coordinate("org.opensearch.plugin", "lang-painless", _OPENSEARCH_VERSION),
            classname="org.opensearch.painless.PainlessPlugin",
            description="An easy, safe and fast scripting language for OpenSearch",
            security_policy=_PAINLESS_POLICY,
        ),
        ModuleSpec(
            name="analysis-common",
            jar=Coordinate("org.opensearch.plugin", "analysis-common", _OPENSEARCH_VERSION),
            classname="org.opensearch.analysis.common.CommonAnalysisPlugin",
            description='Adds "built in" analyzers to OpenSearch.',
            extended_plugins=("lang-painless",),
        ),
    ),
    plugins=tuple(
        Coordinate("org.opensearch.plugin", name, _OPENSEARCH_PLUGIN_VERSION, "zip")
        for name in ("opensearch-job-scheduler", "opensearch-knn", "opensearch-ml-plugin", "neural-search")
    ),
    env_prefix="OPENSEARCH",
    java_majors=(11, 21),
    default_port=9200,
    # Harmless on one node and saves `setup` a step; remote models then deploy on this data node.
    extra_settings=(("plugins.ml_commons.only_run_on_ml_node", "false"),),
)

_ELASTICSEARCH_VERSION = "8.19.7"

ELASTICSEARCH = EngineSpec(
    engine=Engine.ELASTICSEARCH,
    distribution=Coordinate(
        "org.elasticsearch.distribution.integ-test-zip", "elasticsearch", _ELASTICSEARCH_VERSION, "zip"
    ),
    # Central serves no 8.x module jars (`org.elasticsearch.plugin:analysis-common:8.19.7` is not
    # there), so this node has only the analyzers built into the server: see docs/nodes.md.
    modules=(),
    plugins=(),
    env_prefix="ES",
    java_majors=(17, 24),
    default_port=9201,
    # A local test node: the zip ships x-pack security, which would demand TLS and passwords.
    extra_settings=(("xpack.security.enabled", "false"),),
)


def _other_version(base: EngineSpec, version: str, **changes: Any) -> EngineSpec:
    """`base` for another release of the same integ-test zip, with `changes` where that release differs."""
    return replace(base, distribution=replace(base.distribution, version=version), **changes)


def _bare_opensearch(version: str) -> EngineSpec:
    """An OpenSearch 3.x integ-test zip as it comes: it ships lang-painless, analysis-common and 20 more
    modules itself, and there are no plugin zips on Central to add (so no ML settings either: the node
    refuses settings of plugins it does not have)."""
    return _other_version(
        OPENSEARCH, version, modules=(), plugins=(), java_majors=(21, 25), extra_settings=()
    )


def _elasticsearch_9(version: str, java_majors: tuple[int, int] = (21, 25)) -> EngineSpec:
    """An Elasticsearch 9.x integ-test zip: like 8.19.7 (apm, transport-netty4, x-pack core and security;
    no `english` analyzer, no `GET /`), on Java 21+."""
    return _other_version(ELASTICSEARCH, version, java_majors=java_majors)


#: Every version `retrosearch node start --version` provisions, per engine, oldest first. The defaults
#: are the versions whose whole path (for OpenSearch: the ML Commons rerank pipeline) runs locally.
VERSIONS: dict[Engine, dict[str, EngineSpec]] = {
    Engine.OPENSEARCH: {spec.version: spec for spec in (OPENSEARCH, _bare_opensearch("3.5.0"))},
    Engine.ELASTICSEARCH: {
        spec.version: spec
        for spec in (
            ELASTICSEARCH,
            # 9.0.0 on Java 25 dies in its entitlement self-test ("Failed entitlement protection
            # self-test", seen here): it knows the JDKs up to its bundled 24. 9.1.0 and 9.2.0 run on 25.
            _elasticsearch_9("9.0.0", java_majors=(21, 24)),
            _elasticsearch_9("9.1.0"),
            _elasticsearch_9("9.2.0"),
        )
    },
}
DEFAULT_SPECS: dict[Engine, EngineSpec] = {Engine.OPENSEARCH: OPENSEARCH, Engine.ELASTICSEARCH: ELASTICSEARCH}


def spec_for(engine: Engine | str, version: str | None = None) -> EngineSpec:
    """The spec of `version` (the engine's default when None); an unknown version names the known ones."""
    engine = Engine(engine)
    if version is None:
        return DEFAULT_SPECS[engine]
    try:
        return VERSIONS[engine][version]
    except KeyError:
        known = ", ".join(VERSIONS[engine])
        raise NodeError(
            f"{engine.value} {version} is not one retrosearch provisions (Maven Central serves these, "
            f"checked): {known}"
        ) from None


#: The transport port sits this far above the HTTP port, so both engines' default nodes coexist.
TRANSPORT_PORT_OFFSET = 100
