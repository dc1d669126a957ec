"""Keeping credentials out of what people and machines read: messages, log records, API answers.

A URL may carry its credentials (`http://user:password@host`, which the HTTP clients turn into basic
auth); a key or password may also be known by value. Everything shown goes through `redact` (messages),
`public_url` (a URL to name) or `RedactingFilter` (every log record of `retrosearch serve`, the HTTP
and engine clients' own lines and captured warnings included).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

# The `user:password@` of a URL anywhere in a text. userinfo holds no '/' or whitespace (RFC 3986 §3.2.1).
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
# A password given as a query parameter (`redis://cache:6379/0?password=...`: redis-py reads it there).
_QUERY_PASSWORD = re.compile(r"(?<=[?&]password=)[^&#\s]+", re.IGNORECASE)
MASK = "***"

Secret = str | SecretStr | None


def redact(text: str, secrets: Iterable[Secret] = ()) -> str:
    """`text` with the given secret values and any credentials written into a URL (its user and password,
    a `password` query parameter) masked."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value:
            text = text.replace(value, MASK)
    return _QUERY_PASSWORD.sub(MASK, _URL_CREDENTIALS.sub(f"{MASK}@", text))


def public_url(url: str) -> str:
    """`url` without the `user:password@` written into it, and a `password` query parameter masked: what
    messages name."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return _QUERY_PASSWORD.sub(MASK, url)


class RedactingFilter(logging.Filter):
    """Masks secrets in every record a handler emits, whichever library logged it. Installed on handlers
    (a logger's filters do not see records propagated from its children)."""

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        super().__init__()
        self.secrets = [secret for secret in secrets if secret is not None]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # An exception's text can quote a URL too; the formatter uses exc_text once it is set.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
        return True
