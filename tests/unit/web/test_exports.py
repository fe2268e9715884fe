"""Tests for bipgw.web's public surface: every name exported, Klein loaded only when used."""

from __future__ import annotations

import importlib
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import bipgw.web

_MODULES = ("_api", "_events", "_json", "_openapi", "_relay", "_routes", "_service", "_site")


class ExportTests(SynchronousTestCase):
    """The package re-exports its private modules' names as the same objects."""

    def test_sameObjects(self) -> None:
        """Every name of __all__ is its private module's object, the lazy ones included."""
        modules = [importlib.import_module(f"bipgw.web.{name}") for name in _MODULES]
        for name in bipgw.web.__all__:
            owner = next(m for m in modules if name in vars(m))
            self.assertIs(getattr(bipgw.web, name), getattr(owner, name), name)

    def test_unknownName(self) -> None:
        """A name the package does not have is an AttributeError, as for any module."""
        with self.assertRaises(AttributeError):
            bipgw.web.NoSuchThing  # noqa: B018

    def test_noReactorOnImport(self) -> None:
        """Importing the package (as the configuration does) imports neither Klein nor a reactor."""
        code = (
            "import sys\n"
            "import bipgw.web\n"
            "from bipgw.web import ApiSettings\n"
            "print('klein' in sys.modules, 'twisted.internet.reactor' in sys.modules)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(result.stdout.strip(), "False False")
