"""Engine versions as the clusters report them, made comparable."""

from __future__ import annotations


def version_tuple(version: str) -> tuple[int, ...]:
    """`3.7.0` or `3.7.0-SNAPSHOT` as (3, 7, 0), for comparisons."""
    numbers = []
    for part in version.split("-", 1)[0].split("."):
        digits = "".join(char for char in part if char.isdigit())
        numbers.append(int(digits or 0))
    return tuple(numbers)
