"""One indexing run: prepare the index, stream the corpus through the policy into the bulk loader,
write every rejection down, then check the engine's count. The CLI and the benchmark both call this.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from index_tools.bulk import BulkLoader, BulkOptions
from index_tools.engine import EngineOps
from index_tools.mapping import DEFAULT_ANALYZER, prepare_index
from index_tools.policy import DEFAULT_MAX_DOC_BYTES, DocumentPolicy
from index_tools.readers import Corpus
from index_tools.records import Document, Rejected
from index_tools.rejects import DEFAULT_REJECTS_PATH, RejectsFile
from retrostar_search.errors import ExitCode


@dataclass(frozen=True)
class IndexSettings:
    index: str
    analyzer: str = DEFAULT_ANALYZER
    shards: int = 1
    replicas: int = 0
    recreate: bool = False
    force: bool = False
    max_errors: int | None = None
    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES
    truncate_huge: bool = False
    rejects_path: Path = DEFAULT_REJECTS_PATH
    bulk: BulkOptions = field(default_factory=BulkOptions)


@dataclass
class IndexReport:
    index: str
    index_created: bool
    read: int
    created: int
    updated: int
    duplicates: int
    # Documents with an id and no title or text: indexed (a collection counts them), found by id only.
    empty: int
    rejected: int
    truncated: int
    derived_ids: int
    retries: int
    seconds: float
    count_before: int
    count_after: int
    # Documents re-sent after a request went unanswered; see BulkStats.resent_unanswered.
    resent_unanswered: int
    stopped_early: bool
    rejects_path: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def indexed(self) -> int:
        return self.created + self.updated

    @property
    def docs_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    @property
    def expected_count(self) -> int:
        return self.count_before + self.created

    @property
    def count_ok(self) -> bool:
        # A re-sent document that the lost request had already created comes back "updated", so the
        # engine may hold up to that many more documents than `created` says; never fewer.
        return 0 <= self.count_after - self.expected_count <= self.resent_unanswered

    @property
    def exit_code(self) -> ExitCode:
        """FAILED when the count check fails (documents lost, or another writer), INCOMPLETE when records
        were rejected or the run stopped at --max-errors."""
        if not self.count_ok:
            return ExitCode.FAILED
        return ExitCode.INCOMPLETE if self.rejected or self.stopped_early else ExitCode.OK


def index_corpus(
    ops: EngineOps,
    corpus: Corpus,
    settings: IndexSettings,
    on_progress: Callable[[int], None] = lambda done: None,
    on_rejected: Callable[[Rejected], None] = lambda rejected: None,
) -> IndexReport:
    """Index ``corpus`` into ``settings.index``; raises IncompatibleIndexError or BulkAbort on failure.

    ``on_progress`` hears how many more records are done (indexed or rejected); ``on_rejected`` hears of
    each rejection once it is in the rejects file.
    """
    state = prepare_index(
        ops,
        settings.index,
        analyzer=settings.analyzer,
        shards=settings.shards,
        replicas=settings.replicas,
        recreate=settings.recreate,
        force=settings.force,
    )
    policy = DocumentPolicy(settings.max_doc_bytes, settings.truncate_huge)
    read = 0
    stopped_early = False

    with RejectsFile(settings.rejects_path) as rejects:

        def reject(rejected: Rejected) -> None:
            rejects.write(rejected)
            on_rejected(rejected)

        def over_limit() -> bool:
            return settings.max_errors is not None and rejects.count > settings.max_errors

        def accepted_documents() -> Iterator[Document]:
            nonlocal read, stopped_early
            for record in corpus.documents():
                # Checked before every record, not only after a policy rejection, so that the engine's
                # rejections (reported from the bulk threads) count towards --max-errors too.
                if over_limit():
                    stopped_early = True
                    return
                read += 1
                result = policy(record)
                if isinstance(result, Rejected):
                    reject(result)
                    on_progress(1)
                else:
                    yield result

        started = time.perf_counter()
        loader = BulkLoader(ops, settings.index, settings.bulk, reject, on_progress)
        stats = loader.load(accepted_documents())
        seconds = time.perf_counter() - started
        rejected = rejects.count

    ops.refresh(settings.index)
    warnings = [f"mapping problem ignored (--force): {problem}" for problem in state.problems_ignored]
    if policy.empty:
        shown = ", ".join(policy.empty_locations) + (
            ", …" if policy.empty > len(policy.empty_locations) else ""
        )
        warnings.append(
            f"{policy.empty:,} document(s) with an id but no title or text, indexed (found by id only): {shown}"
        )
    return IndexReport(
        index=settings.index,
        index_created=state.created,
        read=read,
        created=stats.created,
        updated=stats.updated,
        duplicates=stats.duplicates,
        empty=policy.empty,
        rejected=rejected,
        truncated=policy.truncated,
        derived_ids=policy.derived_ids,
        retries=stats.retries,
        seconds=seconds,
        count_before=state.count_before,
        count_after=ops.count(settings.index),
        resent_unanswered=stats.resent_unanswered,
        stopped_early=stopped_early,
        rejects_path=settings.rejects_path,
        warnings=warnings + corpus.warnings,
    )
