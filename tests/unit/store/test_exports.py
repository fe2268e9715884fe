"""The public surfaces of bipgw.store and bipgw.ingest are complete and consistent."""

from __future__ import annotations

import importlib

from twisted.trial.unittest import SynchronousTestCase


class ExportTests(SynchronousTestCase):
    """Every name in __all__ exists, and nothing public is left out."""

    def test_allNamesExist(self) -> None:
        """Each name listed in __all__ is an attribute of the package."""
        for name in ("bipgw.store", "bipgw.ingest"):
            module = importlib.import_module(name)
            missing = [n for n in module.__all__ if not hasattr(module, n)]
            self.assertEqual(missing, [], name)
            self.assertEqual(len(module.__all__), len(set(module.__all__)), name)

    def test_sameObjects(self) -> None:
        """Re-exported names are the private modules' objects, not copies."""
        from bipgw.ingest import _importer, import_cards
        from bipgw.store import BatchingRecorder, MemoryStore, _memory, _recorder

        self.assertIs(MemoryStore, _memory.MemoryStore)
        self.assertIs(BatchingRecorder, _recorder.BatchingRecorder)
        self.assertIs(import_cards, _importer.import_cards)
