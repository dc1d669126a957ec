"""One Elasticsearch client range (`elasticsearch>=8.19,<10`) for 8.x and 9.x servers.

Every request of the official client asks for REST API compatibility with the client's own major
(`Accept`/`Content-Type: application/vnd.elasticsearch+json; compatible-with=<client major>`). A server
accepts its own major and the one before: Elasticsearch 9 answers `compatible-with=8` and `=9`, but 8.x
refuses `=9` with a 400 ("Accept version must be either version 8 or 7, but found 9"). So the 8.x client
reaches both server majors as it is, and the 9.x client reaches 8.x only when it asks for 8.

`RestCompatibleTransport` is the client's documented `transport_class` hook: it lowers the requested
compatibility to `OLDEST_SERVER_MAJOR`, the oldest server major this project supports, which every
supported server accepts. With the 8.x client it changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from elastic_transport import HttpHeaders, Transport

#: Elasticsearch 8.19 is the oldest server with everything the project uses (the `custom` inference
#: service); 8 is also the newest major an 8.x server accepts.
OLDEST_SERVER_MAJOR = 8
_COMPATIBLE_WITH = re.compile(r"compatible-with=(\d+)")
_MIMETYPE_HEADERS = ("accept", "content-type")


def compatible_headers(headers: Mapping[str, str]) -> HttpHeaders:
    """A copy of the request headers asking for `OLDEST_SERVER_MAJOR` where they ask for a newer one."""
    lowered = HttpHeaders(headers)
    for name in _MIMETYPE_HEADERS:
        value = lowered.get(name)
        if value:
            lowered[name] = _COMPATIBLE_WITH.sub(_lower_major, value)
    return lowered


def _lower_major(match: re.Match[str]) -> str:
    return f"compatible-with={min(int(match.group(1)), OLDEST_SERVER_MAJOR)}"


class RestCompatibleTransport(Transport):
    """The client's transport, asking every server for the REST API of `OLDEST_SERVER_MAJOR`."""

    def perform_request(self, method: str, target: str, **kwargs: Any) -> Any:
        headers = kwargs.get("headers")
        if isinstance(headers, Mapping):
            kwargs["headers"] = compatible_headers(headers)
        return super().perform_request(method, target, **kwargs)
