# -*- test-case-name: tests.unit.config.test_log -*-
"""C{[log]}: how much the gateway logs, and in which form.

The table builds the one twisted.logger observer the gateway's process
logs through: the level filter in front of a text or JSON writer.  Where
that observer writes (standard output, twistd's C{--logfile}) is the
process runner's choice, made in L{bipgw.tap}; this module only says what
is written.
"""

from __future__ import annotations

import enum
from typing import IO, Any

import attrs
from constantly import NamedConstant
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)

from bipgw.config._kinds import Choice, LogLevelKind
from bipgw.config._schema import setting


class LogFormat(enum.Enum):
    """How log events are written."""

    TEXT = "text"
    """One human-readable line per event."""
    JSON = "json"
    """One JSON object per line, for log collectors."""


@attrs.frozen
class LogSection:
    """C{[log]}: how much the gateway logs, and in which form."""

    level: NamedConstant = attrs.field(
        metadata=setting(LogLevelKind(), "info", "The lowest level written.")
    )
    format: LogFormat = attrs.field(
        metadata=setting(Choice(LogFormat), "text", "text or json (one object per line).")
    )

    def observer(self, output: IO[Any]) -> ILogObserver:
        """The observer that writes the events at L{level} or above to C{output}.

        JSON is twisted.logger's own (L{jsonFileLogObserver}), one object a
        line with no record separator, so C{twisted.logger.eventsFromJSONLogFile}
        and line-oriented collectors both read it.  Events that carry no
        level or no namespace are dropped, as L{LogLevelFilterPredicate}
        drops them; every L{twisted.logger.Logger} event and every legacy
        C{twisted.python.log} message has both.

        @param output: a text file open for writing (standard output, a
            L{twisted.python.logfile.LogFile}).
        """
        if self.format is LogFormat.JSON:
            writer = jsonFileLogObserver(output, recordSeparator="")
        else:
            writer = textFileLogObserver(output)
        return FilteringLogObserver(writer, [LogLevelFilterPredicate(defaultLogLevel=self.level)])
