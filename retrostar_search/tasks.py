"""Task presets: the relevance definition, query type and document type Retro* reasons under.

The twelve presets are BRIGHT's tasks exactly as Retro* was trained and evaluated on them (paper Table 11);
users may define their own task with flags, a file, or per request.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from retrostar_search.errors import InvalidInput

_STACKEXCHANGE_DEFINITION = (
    "Given a query ({query_type}) and a document ({doc_type}), the document is relevant to the query if the "
    "critical concepts or theories discussed in the document can provide references for domain experts to "
    "draft an answer to the query."
)
_DEFAULT_DEFINITION = (
    "Given a query ({query_type}) and a document ({doc_type}), the document is relevant to the query if the "
    "document can help answer the query."
)


class TaskDefinition(BaseModel):
    """What "relevant" means for one retrieval task."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(default="default", description="Preset name, or 'custom' for a user-defined task.")
    query_type: str = Field(default="query", min_length=1)
    doc_type: str = Field(default="document", min_length=1)
    relevance_definition: str = Field(
        default=_DEFAULT_DEFINITION.format(query_type="query", doc_type="document"), min_length=1
    )

    def describe(self) -> str:
        """One line for a person: what Retro* judges relevance under."""
        return f"task {self.name}: {self.relevance_definition}"

    @property
    def fingerprint(self) -> str:
        """The parts that change the prompt (the name does not), for cache keys."""
        return json.dumps([self.query_type, self.doc_type, self.relevance_definition], ensure_ascii=False)


def _stackexchange(name: str, query_type: str) -> TaskDefinition:
    return TaskDefinition(
        name=name,
        query_type=query_type,
        doc_type="passage",
        relevance_definition=_STACKEXCHANGE_DEFINITION.format(query_type=query_type, doc_type="passage"),
    )


_MATH_SOLUTIONS_DEFINITION = (
    "Given a query (math problem) and a document (math problem solution), the document is relevant to the "
    "query if the theorems used in the document can provide helpful insights for solving the problem in the "
    "query."
)

PRESETS: dict[str, TaskDefinition] = {
    "biology": _stackexchange("biology", "biology post"),
    "earth_science": _stackexchange("earth_science", "earth science post"),
    "economics": _stackexchange("economics", "economics post"),
    "psychology": _stackexchange("psychology", "psychology post"),
    "robotics": _stackexchange("robotics", "robotics post"),
    "stackoverflow": _stackexchange("stackoverflow", "Stack Overflow post"),
    "sustainable_living": _stackexchange("sustainable_living", "sustainable living post"),
    "leetcode": TaskDefinition(
        name="leetcode",
        query_type="LeetCode problem",
        doc_type="coding problem solution",
        relevance_definition=(
            "Given a query (LeetCode problem) and a document (coding problem solution), the document is "
            "relevant to the query if the underlying algorithms or data structures used in the document can "
            "provide helpful insights for solving the problem in the query."
        ),
    ),
    "pony": TaskDefinition(
        name="pony",
        query_type="Pony coding instruction",
        doc_type="Pony documentation passage",
        relevance_definition=(
            "Given a query (Pony coding instruction) and a document (Pony documentation passage), the "
            "document is relevant to the query if the Pony syntax described in the document is necessary for "
            "beginners with no prior knowledge of Pony to complete the coding instruction in the query."
        ),
    ),
    "aops": TaskDefinition(
        name="aops",
        query_type="math problem",
        doc_type="math problem solution",
        relevance_definition=_MATH_SOLUTIONS_DEFINITION,
    ),
    "theoremqa_questions": TaskDefinition(
        name="theoremqa_questions",
        query_type="math problem",
        doc_type="math problem solution",
        relevance_definition=_MATH_SOLUTIONS_DEFINITION,
    ),
    "theoremqa_theorems": TaskDefinition(
        name="theoremqa_theorems",
        query_type="math problem",
        doc_type="math-related passage",
        relevance_definition=(
            "Given a query (math problem) and a document (math-related passage), the document is relevant to "
            "the query if the theorem described in the document can help solve the problem in the query."
        ),
    ),
}

DEFAULT_TASK = TaskDefinition()


class UnknownTaskError(InvalidInput):
    """A task name that is neither a preset nor "default"."""


def resolve_task(
    name: str | None = None,
    *,
    query_type: str | None = None,
    doc_type: str | None = None,
    relevance_definition: str | None = None,
) -> TaskDefinition:
    """A preset (or the default), with any of its three parts overridden.

    Types given without a definition are written into the base definition in place of the base's types
    (every definition opens "Given a query (<query type>) and a document (<doc type>)"), so the definition
    never names types the prompt does not use; on the default task that is the reference's generic
    definition built from the new types.
    """
    if name in (None, "", "default"):
        base = DEFAULT_TASK
    elif name in PRESETS:
        base = PRESETS[name]
    else:
        known = ", ".join(["default", *PRESETS])
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {known}")
    if query_type is None and doc_type is None and relevance_definition is None:
        return base
    new_query_type = query_type or base.query_type
    new_doc_type = doc_type or base.doc_type
    if relevance_definition is None:
        relevance_definition = base.relevance_definition.replace(
            f"a query ({base.query_type})", f"a query ({new_query_type})", 1
        ).replace(f"a document ({base.doc_type})", f"a document ({new_doc_type})", 1)
    return TaskDefinition(
        name="custom",
        query_type=new_query_type,
        doc_type=new_doc_type,
        relevance_definition=relevance_definition,
    )


def load_task_file(path: Path) -> TaskDefinition:
    """A task from a JSON or TOML file with keys `task` (a preset to start from), `query_type`,
    `doc_type` and `relevance_definition`."""
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object with query_type, doc_type, relevance_definition")
    allowed = {"task", "query_type", "doc_type", "relevance_definition"}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return resolve_task(
        data.get("task"),
        query_type=data.get("query_type"),
        doc_type=data.get("doc_type"),
        relevance_definition=data.get("relevance_definition"),
    )
