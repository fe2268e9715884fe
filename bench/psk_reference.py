"""The trivial TLS-PSK reference server: ``python -m bench.psk_reference PORT KEYHEX``.

The yardstick of ``bench.handshakes``: the same Twisted reactor, the same
TLS-PSK layer as the gateway (L{bipgw.tls.PskServerOptions}, one key for
every identity) and a protocol that answers every request head with
C{204 No Content} and closes, without parsing anything.  Whatever the
gateway's admin listener costs beyond this is the admin HTTP parser, the
session engine's lookup and the log lines, which is what the bench is
meant to show.

It prints C{listening <port>} once bound and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import react

from bipgw.tls import PskServerOptions, psk_server_endpoint

_NO_CONTENT = (
    b"HTTP/1.1 204 No Content\r\nX-Admin-Protocol: globalplatform-remote-admin/1.0\r\n\r\n"
)


class Answer204(Protocol):
    """Buffers up to the end of the first head, answers 204, closes."""

    def __init__(self) -> None:
        self._buf = b""

    def dataReceived(self, data: bytes) -> None:
        self._buf += data
        if b"\r\n\r\n" in self._buf:
            self.transport.write(_NO_CONTENT)  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]
            self._buf = b""


def main(argv: list[str]) -> None:
    port, key = int(argv[0]), bytes.fromhex(argv[1])

    async def run(reactor: Any) -> None:
        options = PskServerOptions(lambda identity: key)
        endpoint = psk_server_endpoint(reactor, f"tcp:{port}:interface=127.0.0.1", options)
        listening = await endpoint.listen(Factory.forProtocol(Answer204))
        print(f"listening {listening.getHost().port}", flush=True)
        await Deferred()  # until the reactor is stopped by a signal

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main(sys.argv[1:])
