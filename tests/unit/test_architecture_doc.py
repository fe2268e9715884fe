"""docs/architecture.md walks the code file by file: every file and name it cites exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"

# `core/_push.py` or `scp81/_service.py::AdminServer` (relative to bipgw/ or the repository).
_CITED = re.compile(r"`((?:[a-z0-9_]+/)+[a-z0-9_]+\.py)(?:::([A-Za-z_][A-Za-z0-9_.]*))?`")


def _locate(relative: str) -> Path | None:
    for base in (ROOT / "bipgw", ROOT):
        if (base / relative).is_file():
            return base / relative
    return None


def _defines(path: Path, dotted: str) -> bool:
    """Whether C{path} defines C{dotted} (C{Class} or C{Class.method}) at top level."""
    body: list[ast.stmt] = ast.parse(path.read_text()).body
    for part in dotted.split("."):
        found = next(
            (
                node
                for node in body
                if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and node.name == part
            ),
            None,
        )
        if found is None:
            return False
        body = found.body
    return True


class ArchitectureDocTests(SynchronousTestCase):
    """The walk through the house names only what is there."""

    def test_citedFilesAndNamesExist(self) -> None:
        """Every C{folder/module.py} and C{module.py::Name} cited exists in the code."""
        cited = _CITED.findall(DOC.read_text())
        self.assertGreater(len(cited), 30)
        missing = []
        for relative, name in cited:
            path = _locate(relative)
            if path is None:
                missing.append(relative)
            elif name and not _defines(path, name):
                missing.append(f"{relative}::{name}")
        self.assertEqual(missing, [])
