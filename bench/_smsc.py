"""An SMSC that answers at once: ``python -m bench._smsc PORT`` (for ``bench.push``).

It binds anyone, answers every ``submit_sm`` with ``submit_sm_resp`` (a
fresh message id) as soon as it reads it, answers ``enquire_link`` and
``unbind``, and does nothing else: no routing, no receipts.  It only reads
PDU headers, so it costs a few microseconds per PDU and the client being
measured, not this server, is what limits the rate.  It runs in a process
of its own; it prints ``listening PORT`` once ready and, on SIGTERM or
SIGINT, the number of ``submit_sm`` it answered.
"""

from __future__ import annotations

import struct
import sys

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

_HEADER = struct.Struct(">IIII")
_BINDS = {0x00000001, 0x00000002, 0x00000009}
_SUBMIT_SM = 0x00000004
_ENQUIRE_LINK = 0x00000015
_UNBIND = 0x00000006
_GENERIC_NACK = 0x80000000
_ESME_RINVCMDID = 0x00000003


class _Counts:
    submits = 0


class _Smsc(Protocol):
    def __init__(self) -> None:
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data
        out = []
        at = 0
        header = _HEADER
        while len(buffer) - at >= 16:
            length, command, _, sequence = header.unpack_from(buffer, at)
            if length < 16 or length > 65536:
                self.transport.loseConnection()  # type: ignore[union-attr]
                return
            if len(buffer) - at < length:
                break
            at += length
            if command == _SUBMIT_SM:
                _Counts.submits += 1
                body = b"%x\x00" % _Counts.submits
                out.append(header.pack(16 + len(body), command | 0x80000000, 0, sequence) + body)
            elif command in _BINDS:
                body = b"benchsmsc\x00"
                out.append(header.pack(16 + len(body), command | 0x80000000, 0, sequence) + body)
            elif command in (_ENQUIRE_LINK, _UNBIND):
                out.append(header.pack(16, command | 0x80000000, 0, sequence))
            elif not command & 0x80000000:
                out.append(header.pack(16, _GENERIC_NACK, _ESME_RINVCMDID, sequence))
        self._buffer = buffer[at:]
        if out:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    endpoint = TCP4ServerEndpoint(reactor, port, backlog=1024, interface="127.0.0.1")

    def listening(p: object) -> None:
        print(f"listening {p.getHost().port}", flush=True)  # type: ignore[attr-defined]

    endpoint.listen(Factory.forProtocol(_Smsc)).addCallback(listening)
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: print(f"answered {_Counts.submits}", flush=True)
    )
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
