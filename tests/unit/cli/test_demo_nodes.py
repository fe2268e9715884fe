"""C{bipgw demo --nodes N}: its options, what is refused, and the per-node checks.

The cluster demo itself (three gateway processes on Redis and PostgreSQL)
runs in C{tests/integration/test_demo_nodes.py}.
"""

from __future__ import annotations

import io
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.cli import _demo
from bipgw.demo import (
    DEFAULT_POSTGRES,
    DEFAULT_REDIS,
    ClusterSummary,
    DemoError,
    DemoOptions,
    DemoSummary,
    NodeCounts,
    run_demo,
)
from bipgw.demo._cluster import check_counts
from bipgw.demo._nodes import node_install, node_names, parse_metrics
from tests.unit.cli.test_demo import _parse


def _node(name: str, **kw: object) -> NodeCounts:
    values: dict[str, object] = dict(
        name=name, opened=2, ok=2, setups=2, handshakes=2, advertises=name, cpu=0.5
    )
    values.update(kw)
    return NodeCounts(**values)  # type: ignore[arg-type]


class NodesOptionsTests(SynchronousTestCase):
    """The options of C{demo --nodes N}."""

    def test_defaults(self) -> None:
        """One node by default; no Redis or PostgreSQL URL given."""
        args = _parse()
        self.assertEqual((args.nodes, args.redis, args.postgres), (1, None, None))
        self.assertEqual(DemoOptions().nodes, 1)
        self.assertEqual(
            (DemoOptions().redis, DemoOptions().postgres), (DEFAULT_REDIS, DEFAULT_POSTGRES)
        )
        self.assertEqual(DEFAULT_REDIS, "redis://127.0.0.1:6379/0")
        self.assertEqual(
            (_demo.DEFAULT_REDIS, _demo.DEFAULT_POSTGRES), (DEFAULT_REDIS, DEFAULT_POSTGRES)
        )

    def test_options(self) -> None:
        """--nodes, --redis and --postgres are read."""
        args = _parse("--nodes", "3", "--redis", "redis://h:1/2", "--postgres", "postgresql://x/y")
        self.assertEqual(
            (args.nodes, args.redis, args.postgres), (3, "redis://h:1/2", "postgresql://x/y")
        )

    def test_urlsWithoutNodesRefused(self) -> None:
        """--redis or --postgres without --nodes 2 or more is refused by name
        (they would be ignored), with nothing made."""
        for option in ("--redis", "--postgres"):
            err = io.StringIO()
            base = Path(self.mktemp())
            status = _demo.run(_parse(str(base), option, "x"), io.StringIO(), err)
            self.assertEqual(status, 1)
            self.assertIn("--redis and --postgres are for --nodes 2 or more", err.getvalue())
            self.assertFalse(base.exists())

    def test_refusedCombinations(self) -> None:
        """--nodes with --campaign, --derived-keys or --serve, and a number of
        nodes out of range, are refused before anything starts."""
        from twisted.internet import reactor

        for options, words in (
            (DemoOptions(nodes=3, campaign=True), "not with --campaign"),
            (DemoOptions(nodes=3, serve=True), "not with --campaign"),
            (DemoOptions(nodes=2, derived_keys=True), "not with --campaign"),
            (DemoOptions(nodes=0), "--nodes must be from 1 to 9"),
            (DemoOptions(nodes=10), "--nodes must be from 1 to 9"),
        ):
            failure = self.failureResultOf(
                _deferred(run_demo(reactor, options, io.StringIO())), DemoError
            )
            self.assertIn(words, str(failure.value))


def _deferred(coroutine: object) -> object:
    from twisted.internet.defer import Deferred

    return Deferred.fromCoroutine(coroutine)  # type: ignore[arg-type]


class NodeChecksTests(SynchronousTestCase):
    """What the per-node counts must say for the demo to pass."""

    def test_allRight(self) -> None:
        """Each node opened what it was asked; the relaying node answered its
        own cards' handshakes and the other node's: no problem."""
        nodes = [
            _node("gw-1", handshakes=4),
            _node("gw-2"),
            _node("gw-3", handshakes=0, advertises="gw-1"),
        ]
        self.assertEqual(check_counts(nodes), [])
        summary = ClusterSummary(sessions=DemoSummary(ok=6, failed=0), nodes=tuple(nodes))
        self.assertTrue(summary.all_ok)
        text = "\n".join(summary.lines())
        self.assertIn("gw-3: sessions 2 (ok 2), engine setups 2, cards connected here 0", text)
        self.assertIn("its pushes name gw-1", text)
        self.assertIn("gw-3's 2 cards connected to gw-1, which does not own", text)

    def test_problems(self) -> None:
        """A node that opened other sessions than asked, a wrong-node card
        answered by its own node, or a relaying node short of handshakes each
        give a problem line, and the summary is not ok."""
        nodes = [
            _node("gw-1", handshakes=3, setups=1),
            _node("gw-2", handshakes=1, advertises="gw-1"),
        ]
        problems = check_counts(nodes)
        self.assertEqual(
            problems,
            [
                "gw-1 opened 1 sessions, 2 asked through its channel",
                "gw-2 answered 1 card handshakes though its pushes name gw-1",
                "gw-1 answered 3 card handshakes, fewer than the 4 sessions whose pushes name it",
            ],
        )
        summary = ClusterSummary(
            sessions=DemoSummary(ok=4, failed=0), nodes=tuple(nodes), problems=tuple(problems)
        )
        self.assertFalse(summary.all_ok)
        self.assertIn("problem: gw-1 opened 1 sessions", "\n".join(summary.lines()))


class NodePiecesTests(SynchronousTestCase):
    """The nodes' names, installs and metrics."""

    def test_names(self) -> None:
        """gw-1 ... gw-N."""
        self.assertEqual(node_names(3), ["gw-1", "gw-2", "gw-3"])

    def test_metrics(self) -> None:
        """Prometheus' text format: samples by name and labels, comments skipped."""
        text = (
            "# HELP x y\n# TYPE x counter\n"
            'bipgw_tls_handshakes_total{result="ok"} 4.0\nbipgw_session_setups_total 2.0\n'
        )
        self.assertEqual(
            parse_metrics(text),
            {'bipgw_tls_handshakes_total{result="ok"}': 4.0, "bipgw_session_setups_total": 2.0},
        )

    def test_install(self) -> None:
        """A node's install: the template's files, its own ports, the shared
        database, its [metrics] and [cluster] tables (the admin port its
        pushes name may be another node's)."""
        template = Path(self.mktemp())
        template.mkdir()
        (template / "root.key").write_text("k")
        (template / "bipgw.toml").write_text(
            '[gateway]\nnode_id = "gw1"\n[database]\n[admin]\n'
            'listen = "tcp:1000:interface=127.0.0.1"\n'
            '[platform]\nlisten = "tcp:1001:interface=127.0.0.1"\n'
        )
        target = Path(self.mktemp())
        config = node_install(
            template,
            target,
            name="gw-3",
            ports={"admin": 2000, "platform": 2001, "metrics": 2002},
            template_ports={"admin": 1000, "platform": 1001},
            database="postgresql+psycopg://u@h/d",
            redis="redis://r:1/2",
            advertised_port=3000,
        )
        text = config.read_text()
        self.assertTrue((target / "root.key").exists())
        for line in (
            'node_id = "gw-3"',
            'url = "postgresql+psycopg://u@h/d"',
            'listen = "tcp:2000:interface=127.0.0.1"',
            'listen = "tcp:2001:interface=127.0.0.1"',
            'listen = "tcp:2002:interface=127.0.0.1"',
            'redis = "redis://r:1/2"',
            'node = "gw-3"',
            "admin_port = 3000",
        ):
            self.assertIn(line, text)
        self.assertNotIn("1000", text)

    def test_installWithoutListener(self) -> None:
        """A template without the listener line to change is refused, naming it."""
        template = Path(self.mktemp())
        template.mkdir()
        (template / "bipgw.toml").write_text('[gateway]\nnode_id = "gw1"\n[database]\n')
        with self.assertRaises(DemoError) as e:
            node_install(
                template,
                Path(self.mktemp()),
                name="gw-1",
                ports={"admin": 1, "platform": 2, "metrics": 3},
                template_ports={"admin": 4, "platform": 5},
                database="d",
                redis="r",
                advertised_port=1,
            )
        self.assertIn("no single admin listener line", str(e.exception))
