"""Access to the public test vectors copied from the shared spec folder.

C{tests/vectors.json} is a verbatim copy of C{shared/specs/vectors.json}, so
the project tests itself without the shared folder.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_PATH = Path(__file__).with_name("vectors.json")


@cache
def load() -> dict[str, Any]:
    """All vectors, keyed by section."""
    with _PATH.open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def section(name: str) -> Any:
    """One section of the vectors (e.g. C{"smpp34"})."""
    return load()[name]


def by_name(section_name: str, name: str) -> dict[str, Any]:
    """The vector called C{name} in C{section_name}."""
    for v in section(section_name):
        if v["name"] == name:
            return dict(v)
    raise KeyError(name)
