"""The optional [cluster] table."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.config import ClusterSection, Config, ConfigError

BASE = (
    "[smpp]\n"
    'endpoint = "tcp:host=127.0.0.1:port=2775"\n'
    'system_id = "bipgw"\n'
    'source_address = "12345"\n'
    'password = "pw"\n'
    "[admin]\n"
    'listen = "tcp:8443"\n'
    'public_host = "192.0.2.10"\n'
    "[services.isd]\n"
)
PG = '[database]\nurl = "postgresql+psycopg://bipgw@db.example/bipgw"\n'


class ClusterSectionTests(SynchronousTestCase):
    """[cluster] names Redis, the node and its admin address; it needs PostgreSQL."""

    def test_absentMeansOneNode(self) -> None:
        """Without the table there is no cluster (and no Redis)."""
        self.assertIsNone(Config.from_string(BASE).cluster)

    def test_read(self) -> None:
        """Every key is read; the admin address defaults to unset ([admin]'s)."""
        text = BASE + PG + '[cluster]\nredis = "redis://:pw@10.0.0.5:6380/2"\nnode = "gw-a"\n'
        cluster = Config.from_string(text).cluster
        self.assertEqual(
            cluster,
            ClusterSection(
                redis="redis://:pw@10.0.0.5:6380/2", node="gw-a", admin_host=None, admin_port=None
            ),
        )
        self.assertNotIn("pw", repr(cluster))
        text += 'admin_host = "192.0.2.11"\nadmin_port = 9443\n'
        cluster = Config.from_string(text).cluster
        assert cluster is not None
        self.assertEqual((cluster.admin_host, cluster.admin_port), ("192.0.2.11", 9443))

    def test_sqliteRefused(self) -> None:
        """A cluster on the default SQLite database is refused, naming database.url."""
        text = BASE + '[cluster]\nredis = "redis://127.0.0.1"\nnode = "gw-a"\n'
        error = self.assertRaises(ConfigError, Config.from_string, text)
        self.assertEqual(error.key, "database.url")
        self.assertIn("PostgreSQL", str(error))

    def test_badValuesRefused(self) -> None:
        """A bad Redis URL (never shown: it may hold a password), node name or
        key is refused, naming the key."""
        for table, key in (
            ('redis = "http://:secret@x"\nnode = "a"\n', "cluster.redis"),
            ('redis = "redis://x"\nnode = "a b"\n', "cluster.node"),
            ('redis = "redis://x"\n', "cluster.node"),
            ('redis = "redis://x"\nnode = "a"\nadmin_host = "10.0.0.1x"\n', "cluster.admin_host"),
            ('redis = "redis://x"\nnode = "a"\nnodes = 3\n', "cluster.nodes"),
        ):
            with self.subTest(key=key):
                error = self.assertRaises(
                    ConfigError, Config.from_string, BASE + PG + "[cluster]\n" + table
                )
                self.assertEqual(error.key, key)
                self.assertNotIn("secret", str(error))
