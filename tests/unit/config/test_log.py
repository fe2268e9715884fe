"""Tests for C{[log]}: the observer the level and format keys build."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger, LogLevel, eventsFromJSONLogFile, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from bipgw.config import Config, LogFormat, LogSection
from tests.unit.config import MINIMAL, private_directory, with_keys


def _emit(section: LogSection) -> str:
    """What C{section}'s observer writes for one event at each level."""
    out = io.StringIO()
    log = Logger(namespace="bipgw.test", observer=section.observer(out))
    for level in LogLevel.iterconstants():
        log.emit(level, "{what} at {level_name}", what="an event", level_name=level.name)
    return out.getvalue()


class LevelTests(SynchronousTestCase):
    """[log] level is the lowest level written."""

    def test_infoDropsDebug(self) -> None:
        """At level info, debug events are dropped and every other level is written."""
        text = _emit(LogSection(level=LogLevel.info, format=LogFormat.TEXT))
        self.assertNotIn("at debug", text)
        for name in ("info", "warn", "error", "critical"):
            self.assertIn(f"an event at {name}", text)

    def test_debugWritesEverything(self) -> None:
        """At level debug, nothing is dropped."""
        text = _emit(LogSection(level=LogLevel.debug, format=LogFormat.TEXT))
        self.assertEqual(len(text.splitlines()), 5)

    def test_error(self) -> None:
        """At level error, only error and critical events are written."""
        text = _emit(LogSection(level=LogLevel.error, format=LogFormat.TEXT))
        self.assertEqual(
            [line.rpartition(" at ")[2] for line in text.splitlines()], ["error", "critical"]
        )

    def test_fromFile(self) -> None:
        """The level read from the file is the one the observer applies."""
        text = with_keys(MINIMAL, "log", level='"warn"')
        config = Config.from_string(text, base_dir=private_directory(self))
        written = _emit(config.log)
        self.assertNotIn("at info", written)
        self.assertIn("an event at warn", written)


class FormatTests(SynchronousTestCase):
    """[log] format: human-readable text, or one JSON object a line."""

    def test_json(self) -> None:
        """Each line is one JSON object (no record separator) that twisted.logger
        reads back as the event, message and level included."""
        written = _emit(LogSection(level=LogLevel.info, format=LogFormat.JSON))
        lines = written.splitlines()
        self.assertEqual(len(lines), 4)
        self.assertNotIn("\x1e", written)
        first = json.loads(lines[0])
        self.assertEqual(
            (first["log_level"]["name"], first["log_namespace"]), ("info", "bipgw.test")
        )
        events = list(eventsFromJSONLogFile(io.StringIO(written)))
        self.assertEqual(
            [formatEvent(e) for e in events],
            [f"an event at {name}" for name in ("info", "warn", "error", "critical")],
        )
        self.assertIs(events[1]["log_level"], LogLevel.warn)

    def test_text(self) -> None:
        """Text is twisted.logger's line: time, [namespace#level], message."""
        line = _emit(LogSection(level=LogLevel.critical, format=LogFormat.TEXT))
        self.assertRegex(line, r"^\S+ \[bipgw\.test#critical\] an event at critical\n$")

    def test_fromFile(self) -> None:
        """format = "json" in the file gives the JSON writer."""
        text = with_keys(MINIMAL, "log", format='"json"')
        config = Config.from_string(text, base_dir=private_directory(self))
        for line in _emit(config.log).splitlines():
            self.assertIsInstance(json.loads(line), dict)
