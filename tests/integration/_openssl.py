"""An C{openssl} command-line process the integration tests can await.

C{openssl s_client} / C{s_server} are the independent TLS-PSK peers of the
tests; this protocol collects what they print and fires Deferreds when a
pattern shows up, with an error that quotes their output when it never does.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure


class OpenSslProcess(ProcessProtocol):
    """An openssl process whose output (stdout and stderr) can be awaited.

    @param wait: seconds L{wait_for} waits before failing the test.
    @param flags: C{re} flags for the patterns (C{DOTALL} by default, so a
        pattern may span lines).
    """

    transport: Any

    def __init__(self, reactor: Any, *, wait: float = 15.0, flags: int = re.DOTALL) -> None:
        self.reactor = reactor
        self.output = bytearray()
        self.ended: Deferred[int | None] = Deferred()
        self.exit_code: int | None = None
        self._wait = wait
        self._flags = flags
        self._waiting: list[tuple[re.Pattern[bytes], Deferred[re.Match[bytes]]]] = []

    def outReceived(self, data: bytes) -> None:
        self.output += data
        for entry in list(self._waiting):
            found = entry[0].search(self.output)
            if found:
                self._waiting.remove(entry)
                entry[1].callback(found)

    errReceived = outReceived

    def wait_for(self, pattern: bytes) -> Deferred[re.Match[bytes]]:
        """Fire with the first match of C{pattern} in stdout+stderr."""
        d: Deferred[re.Match[bytes]] = Deferred()
        self._waiting.append((re.compile(pattern, self._flags), d))
        self.outReceived(b"")

        def explain(failure: Failure) -> Failure:
            failure.trap(defer.TimeoutError)
            said = self.output.decode(errors="replace")
            raise AssertionError(f"openssl never printed {pattern!r}; it said:\n{said}")

        return d.addTimeout(self._wait, self.reactor).addErrback(explain)

    def processEnded(self, reason: Failure) -> None:
        self.exit_code = getattr(reason.value, "exitCode", None)
        self.ended.callback(self.exit_code)

    def stop(self) -> Deferred[int | None]:
        """Kill the process if it still runs; fire once it is reaped."""
        if not self.ended.called:
            self.transport.signalProcess("KILL")
        return self.ended
