"""The prompt must be the model's training input character for character; these strings are copied from
the Retro* reference (evaluation code / model card), not generated from our own template."""

from __future__ import annotations

import pytest

from retrostar_search.errors import InvalidInput
from retrostar_search.prompts import (
    CONTEXT_MARGIN_TOKENS,
    ChatFormat,
    RenderedPrompt,
    Truncation,
    apply_chat_template,
    render_prefix,
    render_prompt,
)
from retrostar_search.tasks import (
    DEFAULT_TASK,
    PRESETS,
    UnknownTaskError,
    load_task_file,
    resolve_task,
)

REFERENCE_BIOLOGY_PROMPT = """Here is the **relevance definition** in a retrieval task: Given a query (biology post) and a document (passage), the document is relevant to the query if the critical concepts or theories discussed in the document can provide references for domain experts to draft an answer to the query.

Now given a **query** (biology post) and a **document** (passage) in this retrieval task, your mission is to perform the following steps.

1. Query Analysis: Think to reason and describe what information would be most helpful in answering the query.
2. Document Analysis: Discuss how the information provided by the document fulfills or fails to fulfill the requirements implied by the query.
3. Relevance Annotation: Based on the relevance definition and the insights from the previous two steps, clearly justify your final relevance annotation result and annotate an integer score from a scale of 0 to 100. Please use the following guide:
    - **80-100 (Highly Relevant):** The document directly and comprehensively addresses the query's intent. It is a core and authoritative answer.
    - **60-80 (Relevant):** The document substantially addresses the query's intent, providing most of the key information, but might miss some minor details.
    - **40-60 (Moderately Relevant):** The document is on-topic and addresses a part of the query's intent, but it is not a comprehensive answer.
    - **20-40 (Slightly Relevant):** The document mentions keywords from the query, but its main topic is different. It offers very limited value.
    - **0-20 (Irrelevant):** The document does not address the query's intent at all and is off-topic.

After providing your detailed analysis and justification for all the steps above, conclude your entire response with the final relevance score. The score must be placed strictly between the <score> tags. There should be no other text or explanation inside the tags:
<score>
[From a scale of 0 to 100, annotate the degree of relevance between the query and the document.]
</score>

Query (biology post):
[Begin of Query]
Why do leaves change colour in autumn?
[End of Query]

Document (passage):
[Begin of Document]
  Chlorophyll breaks down as days shorten.

Carotenoids remain.
[End of Document]
"""

# Paper Table 11, as listed in the reference notes: (query_type, doc_type, relevance_definition).
_SE = (
    "Given a query ({q}) and a document (passage), the document is relevant to the query if the critical "
    "concepts or theories discussed in the document can provide references for domain experts to draft an "
    "answer to the query."
)
REFERENCE_PRESETS = {
    "biology": ("biology post", "passage", _SE.format(q="biology post")),
    "earth_science": ("earth science post", "passage", _SE.format(q="earth science post")),
    "economics": ("economics post", "passage", _SE.format(q="economics post")),
    "psychology": ("psychology post", "passage", _SE.format(q="psychology post")),
    "robotics": ("robotics post", "passage", _SE.format(q="robotics post")),
    "stackoverflow": ("Stack Overflow post", "passage", _SE.format(q="Stack Overflow post")),
    "sustainable_living": ("sustainable living post", "passage", _SE.format(q="sustainable living post")),
    "leetcode": (
        "LeetCode problem",
        "coding problem solution",
        "Given a query (LeetCode problem) and a document (coding problem solution), the document is relevant "
        "to the query if the underlying algorithms or data structures used in the document can provide "
        "helpful insights for solving the problem in the query.",
    ),
    "pony": (
        "Pony coding instruction",
        "Pony documentation passage",
        "Given a query (Pony coding instruction) and a document (Pony documentation passage), the document is "
        "relevant to the query if the Pony syntax described in the document is necessary for beginners with "
        "no prior knowledge of Pony to complete the coding instruction in the query.",
    ),
    "aops": (
        "math problem",
        "math problem solution",
        "Given a query (math problem) and a document (math problem solution), the document is relevant to the "
        "query if the theorems used in the document can provide helpful insights for solving the problem in "
        "the query.",
    ),
    "theoremqa_questions": (
        "math problem",
        "math problem solution",
        "Given a query (math problem) and a document (math problem solution), the document is relevant to the "
        "query if the theorems used in the document can provide helpful insights for solving the problem in "
        "the query.",
    ),
    "theoremqa_theorems": (
        "math problem",
        "math-related passage",
        "Given a query (math problem) and a document (math-related passage), the document is relevant to the "
        "query if the theorem described in the document can help solve the problem in the query.",
    ),
}


def test_biology_prompt_matches_reference_character_for_character() -> None:
    document = "  Chlorophyll breaks down as days shorten.\n\nCarotenoids remain."  # as given: no strip
    rendered = render_prompt(PRESETS["biology"], "Why do leaves change colour in autumn?", document)
    assert rendered.text == REFERENCE_BIOLOGY_PROMPT


@pytest.mark.parametrize("name", sorted(REFERENCE_PRESETS))
def test_presets_match_paper_table(name: str) -> None:
    task = PRESETS[name]
    assert (task.query_type, task.doc_type, task.relevance_definition) == REFERENCE_PRESETS[name]


def test_exactly_the_twelve_bright_tasks() -> None:
    assert set(PRESETS) == set(REFERENCE_PRESETS)


def test_default_task_is_the_reference_default() -> None:
    assert DEFAULT_TASK.query_type == "query"
    assert DEFAULT_TASK.doc_type == "document"
    assert DEFAULT_TASK.relevance_definition == (
        "Given a query (query) and a document (document), the document is relevant to the query if the "
        "document can help answer the query."
    )


def test_custom_types_rebuild_the_generic_definition() -> None:
    task = resolve_task(query_type="legal question", doc_type="statute")
    assert task.relevance_definition.startswith("Given a query (legal question) and a document (statute),")
    prompt = render_prompt(task, "q", "d").text
    assert "Query (legal question):" in prompt and "Document (statute):" in prompt


def test_preset_types_are_rewritten_into_its_definition() -> None:
    task = resolve_task("biology", query_type="chemistry post")
    assert task.relevance_definition == REFERENCE_PRESETS["biology"][2].replace(
        "(biology post)", "(chemistry post)"
    )
    task = resolve_task("leetcode", doc_type="code snippet")
    assert task.relevance_definition.startswith(
        "Given a query (LeetCode problem) and a document (code snippet), the document is relevant"
    )
    assert "underlying algorithms or data structures" in task.relevance_definition


def test_custom_definition_overrides_preset() -> None:
    task = resolve_task("biology", relevance_definition="Relevant if it cites a paper.")
    assert task.relevance_definition == "Relevant if it cites a paper."
    assert task.query_type == "biology post"


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(UnknownTaskError, match="theoremqa_theorems"):
        resolve_task("chemistry")


def test_braces_and_field_names_in_user_text_are_not_substituted() -> None:
    task = resolve_task(relevance_definition="Use {query_type} literally")
    rendered = render_prompt(task, "what is {doc}? {query}", "text with {relevance_definition}")
    assert "Use {query_type} literally" in rendered.text
    assert "what is {doc}? {query}\n[End of Query]" in rendered.text
    assert "text with {relevance_definition}\n[End of Document]" in rendered.text


def test_prefix_is_shared_by_all_documents_of_a_query() -> None:
    first = render_prompt(PRESETS["leetcode"], "two sum", "doc one")
    second = render_prompt(PRESETS["leetcode"], "two sum", "a very different document")
    assert first.prefix == second.prefix == render_prefix(PRESETS["leetcode"], "two sum")
    assert first.text.startswith(first.prefix) and second.text.startswith(first.prefix)
    assert first.prefix.endswith("Document (coding problem solution):\n[Begin of Document]\n")


def test_task_file_json_and_toml(tmp_path) -> None:
    json_file = tmp_path / "task.json"
    json_file.write_text('{"task": "pony", "relevance_definition": "custom def"}')
    assert load_task_file(json_file).query_type == "Pony coding instruction"
    assert load_task_file(json_file).relevance_definition == "custom def"
    toml_file = tmp_path / "task.toml"
    toml_file.write_text('query_type = "patent claim"\ndoc_type = "patent"\n')
    assert load_task_file(toml_file).relevance_definition.startswith("Given a query (patent claim)")
    bad = tmp_path / "bad.json"
    bad.write_text('{"querytype": "x"}')
    with pytest.raises(ValueError, match="unknown keys"):
        load_task_file(bad)


def test_qwen3_chat_template_has_empty_think_block() -> None:
    assert apply_chat_template("hello", ChatFormat.QWEN3) == (
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_qwen25_chat_template_has_default_system_message() -> None:
    text = apply_chat_template("hello", ChatFormat.QWEN2_5)
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    assert text.endswith("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")


class _WordTokenizer:
    """A whitespace tokenizer standing in for the model's: truncation only needs encode/decode."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        self.words = text.split(" ")
        return list(range(len(self.words)))

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.words[i] for i in ids)


def test_truncation_is_off_by_default_and_cuts_only_the_document() -> None:
    long_document = "x" * 50_000
    assert Truncation().apply(long_document) == long_document
    cut = Truncation(max_chars=100).apply(long_document)
    assert cut == "x" * 100
    assert Truncation(max_tokens=3, tokenizer=_WordTokenizer()).apply("a b c d e") == "a b c"
    assert Truncation(max_tokens=3, tokenizer=_WordTokenizer()).apply("a b") == "a b"


def test_rendered_prompt_text_is_prefix_document_suffix() -> None:
    rendered = RenderedPrompt(query="q", document="DOC", prefix="P:")
    assert rendered.text == "P:DOC\n[End of Document]\n"


# --- Fitting the served context ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["plain ascii words", "é" * 10, "日本語のテキスト", "emoji 🍂🍁", "lone \ud800 x"]
)
def test_the_token_bound_without_a_tokenizer_is_the_utf8_length(text: str) -> None:
    # Every token of a byte-level BPE (Qwen's) stands for one byte or more: bytes bound tokens from above.
    assert Truncation().count_tokens(text) == len(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("text", ["x" * 50, "é" * 50, "a🍂" * 20, "日本" * 30, "\ud800" * 40])
@pytest.mark.parametrize("limit", [1, 7, 33, 64])
def test_cutting_to_a_byte_budget_keeps_the_longest_beginning_that_fits(text: str, limit: int) -> None:
    truncation = Truncation()
    cut = truncation.cut_to_tokens(text, limit)
    assert text.startswith(cut)
    assert truncation.count_tokens(cut) <= limit
    if cut != text:
        assert truncation.count_tokens(text[: len(cut) + 1]) > limit


@pytest.mark.parametrize("context_length", [4_000, 8_192, 32_768])
@pytest.mark.parametrize("document", ["short", "word " * 20_000, "日本語 " * 9_000])
def test_a_fitted_prompt_and_the_new_tokens_always_fit_the_context(
    context_length: int, document: str
) -> None:
    truncation = Truncation()
    fit = truncation.fit(PRESETS["biology"], "a query", max_new_tokens=1024, context_length=context_length)
    fitted, cut = fit.document(document)
    wrapped = apply_chat_template(fit.prompt(fitted).text, ChatFormat.QWEN2_5)  # the longer wrapping
    assert truncation.count_tokens(wrapped) + 1024 + CONTEXT_MARGIN_TOKENS <= context_length
    assert cut == (fitted != document) and document.startswith(fitted)


def test_the_configured_context_applies_when_the_server_reports_none() -> None:
    small = Truncation(context_length=4_000).fit(DEFAULT_TASK, "q", max_new_tokens=256, context_length=None)
    served = Truncation(context_length=4_000).fit(DEFAULT_TASK, "q", max_new_tokens=256, context_length=8_000)
    assert served.document_tokens == small.document_tokens + 4_000


def test_a_query_that_would_crowd_out_the_documents_keeps_half_the_room() -> None:
    truncation = Truncation(context_length=8_000)
    fit = truncation.fit(DEFAULT_TASK, "why " * 5_000, max_new_tokens=1024, context_length=None)
    assert fit.query_truncated and ("why " * 5_000).startswith(fit.query)
    assert fit.document_tokens >= truncation.count_tokens(fit.query)
    assert fit.prefix == render_prefix(DEFAULT_TASK, fit.query)
    assert not truncation.fit(DEFAULT_TASK, "why", max_new_tokens=1024, context_length=None).query_truncated


def test_a_prompt_that_cannot_fit_at_all_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="max_new_tokens"):
        Truncation().fit(DEFAULT_TASK, "q", max_new_tokens=4096, context_length=4096)


def test_with_a_tokenizer_the_budget_counts_its_tokens() -> None:
    truncation = Truncation(tokenizer=_WordTokenizer(), context_length=4_000)
    fit = truncation.fit(DEFAULT_TASK, "q", max_new_tokens=1024, context_length=None)
    fitted, cut = fit.document("w " * 5_000)
    assert cut and len(fitted.split(" ")) == fit.document_tokens
    # Far more than the byte bound would keep for the same context.
    assert (
        fit.document_tokens
        > Truncation(context_length=4_000)
        .fit(DEFAULT_TASK, "q", max_new_tokens=1024, context_length=None)
        .document_tokens
    )
