"""A folder of text files (``.txt``, ``.md``, ``.html``): one document per file.

The id is the path relative to the folder (with ``/`` separators, so it is the same on every OS and
stable across re-runs); the title is the first heading, or the file name when there is none. HTML is
reduced to its visible text with the standard library's parser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from index_tools.records import Document, ReadResult, Rejected, lone_surrogate, raw_text

TEXT_SUFFIXES = frozenset({".txt", ".text"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES

MARKDOWN_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def visible_files(folder: Path) -> Iterator[Path]:
    """Every file under ``folder`` in a stable (sorted) order, hidden files and folders left out."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield from (Path(root, name) for name in sorted(names) if not name.startswith("."))


class FilesCorpus:
    """Every supported file under a folder, in a stable (sorted) order; hidden files are left out."""

    format_name = "files"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.warnings: list[str] = []

    def documents(self) -> Iterator[ReadResult]:
        skipped = 0
        for path in visible_files(self.folder):
            if path.suffix.lower() in SUPPORTED_SUFFIXES:
                yield read_text_file(path, self.folder)
            else:
                skipped += 1
        if skipped:
            # Not rejects (they are not malformed documents), but never dropped without a word either.
            self.warnings.append(f"skipped {skipped} file(s) that are not .txt, .md or .html")

    def size_hint(self) -> int | None:
        return sum(1 for path in visible_files(self.folder) if path.suffix.lower() in SUPPORTED_SUFFIXES)

    def estimated_total(self) -> int | None:
        return None  # size_hint is exact


def read_text_file(path: Path, root: Path) -> ReadResult:
    source = str(path)
    doc_id = path.relative_to(root).as_posix()
    # Python decodes a file name that is not UTF-8 with surrogateescape; such a name cannot be an id.
    if lone_surrogate(doc_id, "the file name"):
        return Rejected(
            source, None, "the file name is not valid UTF-8 (it would be the document id): rename it"
        )
    try:
        raw = path.read_bytes()
    except OSError as error:  # unreadable (permissions, a broken link): that file only, not the run
        return Rejected(source, None, f"cannot read the file: {error.strerror or error}")
    try:
        content = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        bad_line = raw[raw.rfind(b"\n", 0, error.start) + 1 :].split(b"\n", 1)[0]
        return Rejected(source, line, f"invalid UTF-8 at byte {error.start} of the file", raw_text(bad_line))
    suffix = path.suffix.lower()
    if suffix in HTML_SUFFIXES:
        title, text = html_to_text(content)
    elif suffix in MARKDOWN_SUFFIXES:
        heading = MARKDOWN_HEADING.search(content)
        title, text = (heading.group(1) if heading else ""), content
    else:
        title, text = "", content
    return Document(doc_id, title or path.stem, text, source, None, {"path": doc_id})


# Elements whose content is never shown as text.
_INVISIBLE = frozenset({"script", "style", "template", "noscript", "head"})
_HEADINGS = frozenset(f"h{level}" for level in range(1, 7))
# Elements that start a new line, so that words of adjacent blocks do not run together.
_BLOCKS = _HEADINGS | {
    "p", "div", "br", "li", "ul", "ol", "tr", "td", "th", "table", "section", "article", "header",
    "footer", "pre", "blockquote", "title", "dt", "dd", "hr",
}  # fmt: skip


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.first_heading: list[str] | None = None
        self.title: list[str] = []
        self._invisible_depth = 0
        self._in_title = False
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _INVISIBLE:
            self._invisible_depth += 1
        if tag in _HEADINGS and self.first_heading is None:
            self.first_heading = []
            self._in_heading = True
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _INVISIBLE and self._invisible_depth:
            self._invisible_depth -= 1
        if tag in _HEADINGS:
            self._in_heading = False
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
            return
        if self._invisible_depth:
            return
        self.parts.append(data)
        if self._in_heading and self.first_heading is not None:
            self.first_heading.append(data)


def _squeeze(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def html_to_text(html: str) -> tuple[str, str]:
    """(title, visible text): the title is the first h1-h6, else ``<title>``, else empty."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    heading = _squeeze("".join(parser.first_heading or ()))
    return heading or _squeeze("".join(parser.title)), _squeeze("".join(parser.parts))
