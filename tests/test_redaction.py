"""retrostar_search/redaction.py: the one place that masks credentials in messages, URLs and log records."""

from __future__ import annotations

import io
import logging

import pytest
from pydantic import SecretStr

from retrostar_search.redaction import RedactingFilter, public_url, redact


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("POST http://user:pass@127.0.0.1:30000/generate", "POST http://***@127.0.0.1:30000/generate"),
        ("https://elastic:p%40ss@search:9200 and http://k@h/x", "https://***@search:9200 and http://***@h/x"),
        ("http://[::1]:8000/v1/rerank", "http://[::1]:8000/v1/rerank"),
        ("mail me at someone@example.org", "mail me at someone@example.org"),
        ("http://host/path?by=a@b", "http://host/path?by=a@b"),
    ],
)
def test_redact_masks_credentials_written_into_urls(text: str, masked: str) -> None:
    assert redact(text) == masked


def test_redact_masks_known_secret_values_of_either_kind() -> None:
    message = "key sk-123 and password hunter2 and nothing else"
    assert redact(message, [SecretStr("sk-123"), "hunter2", None, SecretStr("")]) == (
        "key *** and password *** and nothing else"
    )


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("http://user:pass@gpu-host:30000", "http://gpu-host:30000"),
        ("https://user@[::1]:9200/path?q=1", "https://[::1]:9200/path?q=1"),
        ("http://gpu-host:30000/", "http://gpu-host:30000/"),
    ],
)
def test_public_url_drops_the_userinfo(url: str, public: str) -> None:
    assert public_url(url) == public


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
