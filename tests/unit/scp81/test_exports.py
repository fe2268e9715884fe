"""The public surface of L{bipgw.scp81}."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

import bipgw.scp81 as scp81
from bipgw.scp81 import _keys, _protocol, _service


class ExportsTests(SynchronousTestCase):
    """Every public name is re-exported from the package as the same object."""

    def test_exports(self) -> None:
        """Each name in C{__all__} is the object its private module defines."""
        modules = (_keys, _protocol, _service)
        for name in scp81.__all__:
            (module,) = [m for m in modules if name in m.__all__]
            self.assertIs(getattr(scp81, name), getattr(module, name))

    def test_nothingLeftOut(self) -> None:
        """Every name a private module exports is public in the package."""
        for module in (_keys, _protocol, _service):
            self.assertEqual(set(module.__all__) - set(scp81.__all__), set())
