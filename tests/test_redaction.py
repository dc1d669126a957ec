"""retrostar_search/redaction.py: the one place that masks credentials in messages, URLs and log records."""

from __future__ import annotations

import io
import logging

import pytest
from pydantic import SecretStr

from retrostar_search.redaction import RedactingFilter, public_url, redact


@pytest.mark.parametrize(
    ("url", "masked", "public"),
    [
        (
            "http://user:pass@gpu-host:30000/generate",
            "http://***@gpu-host:30000/generate",
            "http://gpu-host:30000/generate",
        ),
        ("https://elastic:p%40ss@search:9200", "https://***@search:9200", "https://search:9200"),
        (
            "https://user@[::1]:9200/path?q=1",
            "https://***@[::1]:9200/path?q=1",
            "https://[::1]:9200/path?q=1",
        ),
        ("http://[::1]:8000/v1/rerank", "http://[::1]:8000/v1/rerank", "http://[::1]:8000/v1/rerank"),
        ("http://host/path?by=a@b", "http://host/path?by=a@b", "http://host/path?by=a@b"),
        (
            "redis://cache:6379/0?db=1&password=pw&socket_timeout=1",
            "redis://cache:6379/0?db=1&password=***&socket_timeout=1",
            "redis://cache:6379/0?db=1&password=***&socket_timeout=1",
        ),
    ],
)
def test_credentials_written_into_a_url_are_masked_in_text_and_dropped_from_the_url(
    url: str, masked: str, public: str
) -> None:
    assert redact(f"POST {url} failed") == f"POST {masked} failed"
    assert public_url(url) == public


def test_redact_masks_known_secret_values_of_either_kind_and_leaves_other_text() -> None:
    message = "key sk-123 and password hunter2, mail someone@example.org"
    assert redact(message, [SecretStr("sk-123"), "hunter2", None, SecretStr("")]) == (
        "key *** and password ***, mail someone@example.org"
    )


def test_the_filter_masks_every_record_a_handler_writes_arguments_and_tracebacks_included() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([SecretStr("backend-key")]))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        # httpx's way: the URL is an argument, formatted only when the record is written.
        logger.warning('HTTP Request: %s %s "%s"', "POST", "http://u:secret@h:1/generate", "HTTP/1.1 200")
        try:
            raise ConnectionError("could not reach http://u:secret@h:1 with backend-key")
        except ConnectionError:
            logger.exception("backend failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    written = stream.getvalue()
    assert 'HTTP Request: POST http://***@h:1/generate "HTTP/1.1 200"' in written
    assert "could not reach http://***@h:1 with ***" in written
    assert "secret" not in written and "backend-key" not in written
