"""The [metrics] table: a listener that authenticates, by token or by being local only."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.config import Config, ConfigError, is_loopback_endpoint
from tests.unit.config import MINIMAL, private_directory, with_keys, write

TOKEN = "0123456789abcdef0123456789abcdef"


class MetricsSectionTests(SynchronousTestCase):
    """[metrics] keys, their checks and their effect."""

    def setUp(self) -> None:
        self.base = private_directory(self)

    def load(self, **keys: str) -> Config:
        return Config.from_string(with_keys(MINIMAL, "metrics", **keys), base_dir=self.base)

    def refused(self, key: str, **keys: str) -> str:
        with self.assertRaises(ConfigError) as ctx:
            self.load(**keys)
        self.assertEqual(ctx.exception.key, key)
        return str(ctx.exception)

    def test_absent(self) -> None:
        """No [metrics] table: no listener."""
        self.assertIsNone(Config.from_string(MINIMAL, base_dir=self.base).metrics)

    def test_loopbackWithoutToken(self) -> None:
        """A loopback or UNIX listener needs no token."""
        for listen in (
            "tcp:9108:interface=127.0.0.1",
            "tcp:0:interface=127.0.0.2",
            "tcp6:9108:interface=\\\\:\\\\:1",
            "unix:/run/bipgw/metrics.sock",
        ):
            with self.subTest(listen=listen):
                metrics = self.load(listen=f'"{listen}"').metrics
                assert metrics is not None
                self.assertIsNone(metrics.read_token())

    def test_exposedWithoutTokenRefused(self) -> None:
        """A listener other hosts can reach, without a token, is refused by
        naming metrics.token_file."""
        for listen in (
            "tcp:9108",
            "tcp:9108:interface=0.0.0.0",
            "tcp:9108:interface=192.0.2.7",
            "tcp6:9108",
        ):
            with self.subTest(listen=listen):
                message = self.refused("metrics.token_file", listen=f'"{listen}"')
                self.assertIn("every listener must authenticate", message)

    def test_tokenFile(self) -> None:
        """With a token file, any interface; the token is its first line."""
        path = write(self.base, "metrics.token", TOKEN + "\nignored\n")
        metrics = self.load(listen='"tcp:9108"', token_file='"metrics.token"').metrics
        assert metrics is not None
        self.assertEqual(metrics.token_file, path)
        self.assertEqual(metrics.read_token(), TOKEN)

    def test_badTokenFile(self) -> None:
        """A missing file or a weak token is refused, the file's text never shown."""
        message = self.refused("metrics.token_file", listen='"tcp:9108"', token_file='"none"')
        self.assertIn("cannot read", message)
        write(self.base, "weak.token", "short-secret\n")
        message = self.refused("metrics.token_file", listen='"tcp:9108"', token_file='"weak.token"')
        self.assertNotIn("short-secret", message)

    def test_listenRequired(self) -> None:
        """The table without listen is refused, naming it."""
        text = MINIMAL + "\n[metrics]\n"
        with self.assertRaises(ConfigError) as ctx:
            Config.from_string(text, base_dir=self.base)
        self.assertEqual(ctx.exception.key, "metrics.listen")

    def test_unknownKey(self) -> None:
        """An unknown key is refused, not ignored."""
        self.refused("metrics.path", listen='"tcp:9108:interface=127.0.0.1"', path='"/m"')

    def test_loopbackDetection(self) -> None:
        """What counts as loopback."""
        self.assertTrue(is_loopback_endpoint("tcp:1:interface=localhost"))
        self.assertFalse(is_loopback_endpoint("tcp:1:interface=10.0.0.1"))
        self.assertFalse(is_loopback_endpoint("nonsense:"))
