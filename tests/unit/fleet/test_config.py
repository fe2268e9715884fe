"""Tests for reading fleet.toml: defaults, strict types, unknown keys, hidden passwords."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.tls import DEFAULT_CIPHERS
from simcard.fleet import CardFaults, FleetConfig, FleetConfigError, ReplayMode
from simcard.smsc import FaultPlan

MINIMAL = """
[smsc.accounts]
bipgw = "s3cret"
"""


def _load(text: str, directory: str = "/srv/fleet") -> FleetConfig:
    return FleetConfig.from_string(text, directory, name="fleet.toml")


class DefaultsTests(SynchronousTestCase):
    """A file with only an account gets the documented defaults."""

    def test_defaults(self) -> None:
        """Every section takes its default values."""
        config = _load(MINIMAL)
        self.assertEqual(config.fleet.cards_db, Path("/srv/fleet/cards.db"))
        self.assertEqual(
            (config.fleet.live_cards, config.fleet.max_sessions, config.fleet.replay_status),
            (2000, 2000, 2),
        )
        self.assertEqual(config.smsc.listen, "tcp:2775")
        self.assertEqual(dict(config.smsc.accounts), {"bipgw": "s3cret"})
        self.assertEqual(config.smsc.config.system_id, "simsmsc")
        self.assertEqual(config.smsc.config.faults.default, FaultPlan())
        self.assertEqual(config.channel.ciphers, DEFAULT_CIPHERS)
        self.assertIsNone(config.channel.connect_host)
        self.assertEqual(config.faults, CardFaults())
        self.assertEqual(dict(config.card_faults), {})
        self.assertIsNone(config.control_listen)
        self.assertIsNone(config.generated)

    def test_relativePathsFollowTheFile(self) -> None:
        """cards_db is relative to the directory of fleet.toml."""
        config = _load('[fleet]\ncards_db = "state/cards.db"\n' + MINIMAL, "/data/f1")
        self.assertEqual(config.fleet.cards_db, Path("/data/f1/state/cards.db"))

    def test_fromFile(self) -> None:
        """from_file reads the file and takes its directory as the base."""
        path = Path(self.mktemp())
        path.mkdir()
        (path / "fleet.toml").write_text(MINIMAL)
        config = FleetConfig.from_file(path / "fleet.toml")
        self.assertEqual(config.directory, path.resolve())
        self.assertEqual(config.fleet.cards_db, path.resolve() / "cards.db")

    def test_missingFile(self) -> None:
        """A file that cannot be read is a FleetConfigError naming it."""
        with self.assertRaises(FleetConfigError) as ctx:
            FleetConfig.from_file("/nonexistent/fleet.toml")
        self.assertIn("/nonexistent/fleet.toml", str(ctx.exception))


class ValuesTests(SynchronousTestCase):
    """Values are checked strictly and read into the right types."""

    def test_smscSettings(self) -> None:
        """[smsc] keys, fault plans and per-destination plans reach the SmscConfig."""
        config = _load(
            """
[smsc]
listen = "tcp:12775:interface=127.0.0.1"
system_id = "fleetsmsc"
response_delay = 0.5
max_submit_rate = 20
[smsc.accounts]
a = "x"
b = ""
[smsc.faults]
loss = 0.25
seed = 7
[smsc.faults.destinations."33600000001"]
duplicate = 1
reject_status = 0x45
"""
        )
        smsc = config.smsc
        self.assertEqual(smsc.listen, "tcp:12775:interface=127.0.0.1")
        self.assertEqual(dict(smsc.accounts), {"a": "x", "b": ""})
        self.assertEqual(smsc.config.system_id, "fleetsmsc")
        self.assertEqual(smsc.config.max_submit_rate, 20.0)
        faults = smsc.config.faults
        self.assertEqual((faults.default.loss, faults.seed), (0.25, 7))
        self.assertEqual(
            faults.plan_for("33600000001"), FaultPlan(duplicate=1.0, reject_status=0x45)
        )

    def test_faults(self) -> None:
        """[faults] is fleet-wide; [faults.cards.ICCID] holds only the keys it sets."""
        config = _load(
            MINIMAL
            + """
[faults]
slow = 1.5
replay = "por"
[faults.cards."8988211000000000011"]
ignore_push = true
drop_after_scripts = 2
"""
        )
        self.assertEqual(config.faults, CardFaults(slow=1.5, replay=ReplayMode.POR))
        self.assertEqual(
            dict(config.card_faults["8988211000000000011"]),
            {"ignore_push": True, "drop_after_scripts": 2},
        )

    def test_channel(self) -> None:
        """[channel] keys; the cipher list becomes an OpenSSL cipher string."""
        config = _load(
            MINIMAL
            + """
[channel]
connect_host = "127.0.0.1"
connect_port = 18443
ciphers = ["PSK-AES128-CBC-SHA256", "PSK-AES128-CBC-SHA"]
chunked = false
"""
        )
        channel = config.channel
        self.assertEqual((channel.connect_host, channel.connect_port), ("127.0.0.1", 18443))
        self.assertEqual(channel.ciphers, "PSK-AES128-CBC-SHA256:PSK-AES128-CBC-SHA")
        self.assertFalse(channel.chunked)

    def _refused(self, text: str, *fragments: str) -> str:
        with self.assertRaises(FleetConfigError) as ctx:
            _load(text)
        message = str(ctx.exception)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_strictTypes(self) -> None:
        """A string is not a number, a number not a boolean; the message names the key."""
        self._refused('[fleet]\nlive_cards = "10"\n' + MINIMAL, "fleet.live_cards", "'10'")
        self._refused("[channel]\nchunked = 1\n" + MINIMAL, "channel.chunked", "true or false")
        self._refused("[fleet]\nsave_interval = 0\n" + MINIMAL, "fleet.save_interval")
        self._refused("[fleet]\nreplay_status = 3\n" + MINIMAL, "fleet.replay_status", "2 or 6")

    def test_badFaults(self) -> None:
        """Fault values are checked, per card too, and ICCID keys must be ICCIDs."""
        self._refused(MINIMAL + "[faults]\nslow = -1\n", "faults.slow", "seconds")
        self._refused(MINIMAL + '[faults]\nreplay = "maybe"\n', "faults.replay")
        self._refused(
            MINIMAL + '[faults.cards."8988211000000000011"]\nduplicate_sms = 2\n',
            "faults.cards.8988211000000000011.duplicate_sms",
            "fraction",
        )
        self._refused(MINIMAL + '[faults.cards."1234"]\nslow = 1\n', "'1234' is not an ICCID")

    def test_endpointsParsed(self) -> None:
        """Endpoint strings go through Twisted's parser."""
        self._refused('[smsc]\nlisten = "carrier-pigeon:7"\n' + MINIMAL, "smsc.listen")
        self._refused(MINIMAL + '[control]\nlisten = "tcp:notaport"\n', "control.listen")

    def test_unknownKeys(self) -> None:
        """An unknown key at any level is refused, with the closest known key."""
        message = self._refused("[fleet]\nlive_card = 3\n" + MINIMAL, "fleet.live_card")
        self.assertIn("did you mean 'live_cards'", message)
        self._refused(MINIMAL + "[nonsense]\n", "'nonsense'")
        self._refused(
            MINIMAL + '[smsc.faults.destinations."336"]\nlos = 1\n',
            "smsc.faults.destinations.336.los",
        )
        self._refused(MINIMAL + "[faults]\nslowly = 1\n", "faults.slowly", "unknown fault")
        self._refused(MINIMAL + "[channel]\nconect_host = 'x'\n", "channel.conect_host")

    def test_accountsRequired(self) -> None:
        """Without an ESME account nobody could bind: refused."""
        self._refused("[smsc]\n", "smsc.accounts", "at least one")

    def test_passwordsNeverShown(self) -> None:
        """A bad password is reported without its value; reprs hide passwords."""
        message = self._refused('[smsc.accounts]\nbipgw = "waytoolongpassword"\n', "(hidden)")
        self.assertNotIn("waytoolongpassword", message)
        config = _load(MINIMAL)
        self.assertNotIn("s3cret", repr(config))
        self.assertIn("bipgw", repr(config.smsc))

    def test_notToml(self) -> None:
        """Text that is not TOML is reported as such."""
        self._refused("[fleet\n", "not valid TOML")
