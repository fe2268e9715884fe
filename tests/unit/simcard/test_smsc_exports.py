"""simcard.smsc exports exactly its public names, as the objects the modules define."""

from __future__ import annotations

import importlib

from twisted.trial.unittest import SynchronousTestCase

import simcard.smsc

_MODULES = ("_config", "_convert", "_core", "_faults", "_protocol", "_router", "_types")


class ExportTests(SynchronousTestCase):
    """The package surface is stable and points at the real definitions."""

    def test_allResolves(self) -> None:
        """Every name in __all__ exists and is defined in one of the private modules."""
        modules = [importlib.import_module(f"simcard.smsc.{m}") for m in _MODULES]
        for name in simcard.smsc.__all__:
            value = getattr(simcard.smsc, name)
            owners = [m for m in modules if getattr(m, name, None) is value]
            self.assertTrue(owners, name)
            self.assertIn(getattr(value, "__module__", "").rsplit(".", 1)[-1], _MODULES, name)

    def test_allUnique(self) -> None:
        """__all__ has no duplicates."""
        self.assertEqual(len(set(simcard.smsc.__all__)), len(simcard.smsc.__all__))

    def test_noTwistedInConversions(self) -> None:
        """The conversion and fault modules stay free of Twisted (pure functions)."""
        for module in ("_convert", "_faults"):
            source = importlib.import_module(f"simcard.smsc.{module}").__file__
            assert source is not None
            with open(source) as f:
                text = f.read()
            self.assertNotIn("from twisted", text)
            self.assertNotIn("import twisted", text)
