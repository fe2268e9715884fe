"""Tests for bipgw.web's public surface: every name exported as its module's object."""

from __future__ import annotations

import importlib

from twisted.trial.unittest import SynchronousTestCase

import bipgw.web

_MODULES = (
    "_api",
    "_events",
    "_json",
    "_metrics",
    "_openapi",
    "_relay",
    "_routes",
    "_service",
    "_site",
)


class ExportTests(SynchronousTestCase):
    """The package re-exports its private modules' names as the same objects."""

    def test_sameObjects(self) -> None:
        """Every name of __all__ is its private module's object."""
        modules = [importlib.import_module(f"bipgw.web.{name}") for name in _MODULES]
        for name in bipgw.web.__all__:
            owner = next(m for m in modules if name in vars(m))
            self.assertIs(getattr(bipgw.web, name), getattr(owner, name), name)
