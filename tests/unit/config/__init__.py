"""Tests for bipgw.config: the gateway's TOML configuration."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

#: The checkout, for the example file and the documentation.
ROOT = Path(__file__).resolve().parents[3]

#: The smallest valid configuration: every required key, nothing else.
MINIMAL = """\
[smpp]
endpoint = "tcp:host=127.0.0.1:port=2775"
system_id = "bipgw"
password = "pw"
source_address = "12345"

[admin]
public_host = "192.0.2.10"

[services.isd]
"""


def private_directory(case: SynchronousTestCase) -> Path:
    """A new empty directory for one test, removed when the test ends."""
    path = tempfile.mkdtemp(prefix="bipgw-config-test-")
    case.addCleanup(shutil.rmtree, path, True)
    return Path(path)


def with_keys(text: str, table: str, **values: str) -> str:
    """C{text} with C{[table]} keys set to raw TOML values.

    A key already in the table is replaced, others are added at the top of
    the table, and the table is appended if C{text} has none.
    """
    lines = text.splitlines()
    header = f"[{table}]"
    if header not in lines:
        lines += ["", header]
    start = lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    for key, value in values.items():
        for i in range(start, end):
            if lines[i].split("=", 1)[0].strip() == key:
                lines[i] = f"{key} = {value}"
                break
        else:
            lines.insert(start, f"{key} = {value}")
            end += 1
    return "\n".join(lines) + "\n"


def write(directory: Path, name: str, data: str | bytes, mode: int = 0o600) -> Path:
    """Write a file in C{directory} and return its path."""
    path = directory / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)
    return path
