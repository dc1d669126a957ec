"""The rejects file: one JSON object per rejected record (file, line, reason, raw excerpt).

The file is created on the first rejection only, so a clean run leaves nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from index_tools.records import Rejected

DEFAULT_REJECTS_PATH = Path("retrosearch-rejects.jsonl")


class RejectsFile:
    def __init__(self, path: Path = DEFAULT_REJECTS_PATH) -> None:
        self.path = path
        self.count = 0
        self._stream: IO[str] | None = None

    def write(self, rejected: Rejected) -> None:
        if self._stream is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = self.path.open("w", encoding="utf-8", errors="backslashreplace")
        self._stream.write(json.dumps(rejected.as_json(), ensure_ascii=False) + "\n")
        # Flushed line by line so that the file is complete even when the run is interrupted.
        self._stream.flush()
        self.count += 1

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> RejectsFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
