"""The session diagram in docs/ says exactly what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import TRANSITIONS, SessionState

DOT = Path(__file__).resolve().parents[3] / "docs" / "state-machines" / "session.dot"
_EDGE = re.compile(r'^\s*"([a-z-]+)"\s*->\s*"([a-z-]+)"', re.MULTILINE)
_NODE = re.compile(r'^\s*"([a-z-]+)"\s*\[', re.MULTILINE)


class DiagramTests(SynchronousTestCase):
    """docs/state-machines/session.dot and TRANSITIONS never drift apart."""

    def test_edgesMatchTransitions(self) -> None:
        """Every edge of the diagram is an allowed transition and vice versa."""
        text = DOT.read_text()
        edges = {(SessionState(a), SessionState(b)) for a, b in _EDGE.findall(text)}
        self.assertEqual(edges, set(TRANSITIONS))

    def test_everyStateDrawn(self) -> None:
        """Every state is a node of the diagram."""
        nodes = {SessionState(n) for n in _NODE.findall(DOT.read_text())}
        self.assertEqual(nodes, set(SessionState))

    def test_terminalStatesAreSinks(self) -> None:
        """Nothing leaves CLOSED or FAILED; every live state can fail."""
        self.assertFalse([t for t in TRANSITIONS if t[0].terminal])
        live = [s for s in SessionState if not s.terminal]
        self.assertTrue(all((s, SessionState.FAILED) in TRANSITIONS for s in live))
