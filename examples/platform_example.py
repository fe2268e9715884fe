"""An example business platform: run APDUs on one SIM card through bipgw.

It connects to the gateway's platform channel with the SDK (L{bipgw.client}),
opens a session with the card (by MSISDN or ICCID), sends the C-APDUs given
on the command line as one script, prints every R-APDU with its status word
in words, and closes the session::

    export BIPGW_TOKEN=...          # the tenant's API token (kept out of ps)
    python examples/platform_example.py --connect tcp:gw.example:7443 \\
        --ca gateway-ca.pem --msisdn 4915112345678 --service demo \\
        00A4040007A0000000871002 80CA006600

Use C{--cert client.pem} (key and certificate in one PEM file) instead of
a token when the gateway authenticates platforms by client certificate,
and C{--plain} only against a test gateway listening without TLS.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from OpenSSL.SSL import Error as SSLError
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ConnectError
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import react

from bipgw.client import PlatformError, Timeouts, connect


async def run_platform(
    reactor: Any,
    endpoint: Any,
    *,
    token: str | None,
    tls: Any,
    service: str,
    apdus: Sequence[str],
    msisdn: str | None = None,
    iccid: str | None = None,
    ready_timeout: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Open a session, run C{apdus} as one script, print the answers, close.

    @return: the exit status: 0 when the script ran, 1 when the gateway
        refused or the session failed (the reason is printed).
    """
    client = await connect(reactor, endpoint, token=token, tls=tls, client_name="platform_example")
    print(f"authenticated as tenant {client.tenant}", file=out)
    async with client:
        try:
            session = await client.open_session(
                service=service,
                msisdn=msisdn,
                iccid=iccid,
                timeouts=Timeouts(ready=ready_timeout) if ready_timeout else None,
            )
        except PlatformError as e:
            print(f"session refused or failed: {e.code}: {e.message}", file=out)
            return 1
        print(f"session {session.id} ready with card {session.iccid}", file=out)
        async with session:
            try:
                result = await session.send(list(apdus))
            except PlatformError as e:
                print(f"command failed: {e.code}: {e.message}", file=out)
                return 1
            for capdu, rapdu, meaning in zip(apdus, result.rapdus, result.meanings, strict=False):
                data, sw = rapdu[:-2].hex().upper(), rapdu[-2:].hex().upper()
                print(f"{capdu} -> {data or '-'} {sw} ({meaning})", file=out)
            if not result.complete:
                print(f"the card stopped after {len(result.rapdus)} of {len(apdus)}", file=out)
            print(f"card time: {result.elapsed_ms} ms", file=out)
    print("session closed", file=out)
    return 0


def _options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--connect", required=True, help="client endpoint, e.g. tcp:gw.example:7443"
    )
    parser.add_argument("--service", required=True, help="the tenant's service name")
    card = parser.add_mutually_exclusive_group(required=True)
    card.add_argument("--msisdn")
    card.add_argument("--iccid")
    parser.add_argument(
        "--ca", type=Path, help="PEM of the CA that signed the gateway's certificate"
    )
    parser.add_argument("--tls-host", help="the name in the gateway's certificate (default: host)")
    parser.add_argument(
        "--cert", type=Path, help="client key and certificate (PEM) instead of a token"
    )
    parser.add_argument("--plain", action="store_true", help="no TLS (test gateways only)")
    parser.add_argument("--ready-timeout", type=float, help="seconds the card may take to connect")
    parser.add_argument("apdus", nargs="+", help="C-APDUs in hex")
    return parser.parse_args(argv)


def main(reactor: Any, argv: Sequence[str]) -> Deferred[None]:
    """Parse C{argv}, run the platform, exit with its status."""
    options = _options(argv)
    token = os.environ.get("BIPGW_TOKEN")
    tls = None
    if not options.plain:
        host = options.tls_host or options.connect.split(":")[1]
        trust = Certificate.loadPEM(options.ca.read_bytes()) if options.ca else None
        mine = PrivateCertificate.loadPEM(options.cert.read_bytes()) if options.cert else None
        tls = optionsForClientTLS(host, trustRoot=trust, clientCertificate=mine)
    if token is None and options.cert is None:
        raise SystemExit("set BIPGW_TOKEN, or give --cert")

    async def run() -> None:
        try:
            status = await run_platform(
                reactor,
                options.connect,
                token=token,
                tls=tls,
                service=options.service,
                apdus=options.apdus,
                msisdn=options.msisdn,
                iccid=options.iccid,
                ready_timeout=options.ready_timeout,
            )
        except (ConnectError, PlatformError, TimeoutError, SSLError) as e:
            print(f"cannot use the gateway: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        if status:
            raise SystemExit(status)

    return Deferred.fromCoroutine(run())


if __name__ == "__main__":
    react(main, (sys.argv[1:],))
