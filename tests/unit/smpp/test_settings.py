"""The ESME settings, from code and from the gateway's configuration file, and the exports."""

from __future__ import annotations

import inspect
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

import bipgw.smpp
from bipgw.config import Config
from bipgw.smpp import EsmeSettings, esme_settings
from tests.unit.smpp import SETTINGS

_CONFIG = """\
[smpp]
endpoint = "tcp:host=127.0.0.1:port=2775"
system_id = "bipgw"
password = "pw"
source_address = "8801"
bind = "transmitter"
window = 4
rate = 20

[admin]
public_host = "192.0.2.10"

[services.isd]
"""


class EsmeSettingsTests(SynchronousTestCase):
    """What the settings accept and refuse."""

    def test_passwordNotInRepr(self) -> None:
        """The password never shows in a repr."""
        self.assertNotIn("secret", repr(SETTINGS))

    def test_smppLengthsEnforced(self) -> None:
        """system_id, password and system_type beyond SMPP's limits are refused, by name."""
        value: Any
        for field, value in (
            ("system_id", "x" * 16),
            ("password", "p" * 9),
            ("system_type", "t" * 13),
        ):
            with self.assertRaises(ValueError) as ctx:
                attrs.evolve(SETTINGS, **{field: value})
            self.assertIn(field, str(ctx.exception))

    def test_numbersChecked(self) -> None:
        """A zero window, a negative rate, a burst below 1 or inverted delays are refused."""
        changes: dict[str, Any]
        for changes in (
            {"window": 0},
            {"rate": -1.0},
            {"rate": float("nan")},
            {"burst": 0.5},
            {"reconnect_initial_delay": 10.0, "reconnect_max_delay": 5.0},
            {"throttle_initial_delay": 10.0, "throttle_max_delay": 5.0},
            {"source_ton": 256},
        ):
            self.assertRaises(ValueError, attrs.evolve, SETTINGS, **changes)

    def test_emptySystemIdRefused(self) -> None:
        """An ESME needs a system_id."""
        self.assertRaises(ValueError, EsmeSettings, system_id="", password="")

    def test_fromConfiguration(self) -> None:
        """The [smpp] table maps key for key onto the settings."""
        settings = esme_settings(Config.from_string(_CONFIG, base_dir="/").smpp)
        self.assertEqual(
            settings,
            EsmeSettings(
                system_id="bipgw",
                password="pw",
                transceiver=False,
                source_address="8801",
                window=4,
                rate=20.0,
            ),
        )


class ExportTests(SynchronousTestCase):
    """bipgw.smpp exports exactly the objects of its private modules."""

    def test_allExported(self) -> None:
        """Every name in __all__ exists and lives in a bipgw.smpp module."""
        for name in bipgw.smpp.__all__:
            value = getattr(bipgw.smpp, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                module = value.__module__
                self.assertTrue(module.startswith("bipgw.smpp."), f"{name} comes from {module}")
        self.assertEqual(sorted(bipgw.smpp.__all__), sorted(set(bipgw.smpp.__all__)))
