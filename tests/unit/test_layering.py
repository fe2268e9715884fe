"""The package layering rules of DESIGN.md section 2, enforced."""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[path] = names
    return found


class LayeringTests(SynchronousTestCase):
    """Imports across packages follow the documented direction."""

    def _assertNoImport(self, package: str, forbidden: str) -> None:
        bad = [
            f"{path.relative_to(ROOT)} imports {name}"
            for path, names in _imports(package).items()
            for name in names
            if name == forbidden or name.startswith(forbidden + ".")
        ]
        self.assertEqual(bad, [])

    def test_codecNeverImportsTwisted(self) -> None:
        """bipgw.codec is sans-IO: no module in it imports Twisted."""
        self._assertNoImport("bipgw/codec", "twisted")

    def test_codecIsNotEmpty(self) -> None:
        """The scan above really looks at the codec modules."""
        self.assertGreater(len(_imports("bipgw/codec")), 1)

    def test_simcardImportsOnlySharedParts(self) -> None:
        """simcard uses only the shared building blocks of bipgw, never the gateway."""
        allowed = ("bipgw.codec", "bipgw.tls", "bipgw.keys", "bipgw.client", "bipgw.errors")
        bad = [
            f"{path.relative_to(ROOT)} imports {name}"
            for path, names in _imports("simcard").items()
            for name in names
            if (name == "bipgw" or name.startswith("bipgw."))
            and not any(name == a or name.startswith(a + ".") for a in allowed)
        ]
        self.assertEqual(bad, [])

    def test_bipgwNeverImportsSimcard(self) -> None:
        """The gateway never depends on its simulated cards."""
        self._assertNoImport("bipgw", "simcard")

    def test_onlyTheCommandLineImportsIt(self) -> None:
        """bipgw.cli is the top: the library (the demo included) never imports
        it, so everything a command does is a library function it calls."""
        bad = [
            f"{path.relative_to(ROOT)} imports {name}"
            for path, names in _imports("bipgw").items()
            if (ROOT / "bipgw" / "cli") not in path.parents
            for name in names
            if name == "bipgw.cli" or name.startswith("bipgw.cli.")
        ]
        self.assertEqual(bad, [])

    def test_sdkImportsOnlyCodec(self) -> None:
        """bipgw.client (the SDK) uses only the codecs and the error root of bipgw."""
        allowed = ("bipgw.client", "bipgw.codec", "bipgw.errors")
        bad = [
            f"{path.relative_to(ROOT)} imports {name}"
            for path, names in _imports("bipgw/client").items()
            for name in names
            if (name == "bipgw" or name.startswith("bipgw."))
            and not any(name == a or name.startswith(a + ".") for a in allowed)
        ]
        self.assertEqual(bad, [])

    def test_frontDoorsIndependent(self) -> None:
        """The platform channel and the HTTP API share core's tenancy, never each other."""
        self._assertNoImport("bipgw/platform", "bipgw.web")
        self._assertNoImport("bipgw/web", "bipgw.platform")

    def test_coreBelowDoors(self) -> None:
        """The core (tenancy and relay included) imports no front door."""
        for door in ("bipgw.platform", "bipgw.web", "bipgw.client"):
            self._assertNoImport("bipgw/core", door)
