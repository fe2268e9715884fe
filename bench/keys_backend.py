"""Root-key backends and rotation: ``python -m bench.keys_backend throughput|rotation``.

``throughput``: sealing, unsealing and per-card key derivation, per CPU
second of this process, with the file backend (a root key file, HKDF then
AES-GCM in ``cryptography``; the SP 800-108 KDF with ``cryptography``'s
AES-CMAC) and with the PKCS#11 backend on SoftHSM2 (AES-GCM and AES-CMAC
in the token; SoftHSM2 runs inside this process, so its CPU is counted).

``rotation --keys N``: the whole loop of the integration tests (simulated
fleet, its SMSC and cards, the gateway on SQLite, in this process on the
real reactor), the gateway's database grown to ``N`` sealed card keys;
then sessions are run one after the other (push, card connects over
TLS-PSK, a 3-APDU script, close) and timed, first for ``--baseline``
seconds, then while ``bipgw keys rotate-root`` runs in its own process on
the same database.  Printed: the rotation's time and rate, and the
sessions' latency before and during it.  Results go, by hand, into
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bipgw.keys import (
    CardKeyDeriver,
    FileRootKeyRing,
    IRootKeys,
    KdfPurpose,
    KeyAlgorithm,
    Pkcs11MasterKeys,
    Pkcs11RootKeys,
    Pkcs11Token,
    RootKey,
    Secret,
)

ICCID = "8988211000000000018"


def _per_cpu_second(name: str, call: Callable[[int], object], n: int) -> None:
    began = time.process_time()
    wall = time.perf_counter()
    for i in range(n):
        call(i)
    cpu = time.process_time() - began
    elapsed = time.perf_counter() - wall
    print(f"  {name:<44} {n / cpu:>10,.0f} /CPU s  ({n / elapsed:,.0f}/s wall, n={n})")


def _seal_bench(root: IRootKeys, n: int) -> None:
    key = Secret(os.urandom(16))
    blobs = [root.seal(f"card:{i}:PSK1", key) for i in range(n)]
    _per_cpu_second("seal one 16-byte key (seal())", lambda i: root.seal(f"card:{i}:PSK1", key), n)
    sealer = root.batch_sealer(1024)
    _per_cpu_second(
        "seal one 16-byte key (batch_sealer)", lambda i: sealer.seal(f"card:{i}:PSK1", key), n
    )
    _per_cpu_second("unseal one key", lambda i: root.unseal(f"card:{i}:PSK1", blobs[i]), n)
    _per_cpu_second("fingerprint (mac) one key", lambda i: root.mac(b"fp", blobs[i]), n)


def throughput(args: argparse.Namespace) -> None:
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "root.key"
        RootKey.generate().save(path)
        print("file backend (root key file):")
        _seal_bench(FileRootKeyRing(path), n)
        deriver = CardKeyDeriver(Secret(os.urandom(16)))
        iccids = [f"89882110000{i:08d}" for i in range(n)]
        _per_cpu_second(
            "derive one AES-128 card key (SP 800-108)",
            lambda i: deriver.derive(iccids[i], KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128),
            n,
        )
        token = _softhsm_token(Path(tmp))
        if token is None:
            return
        try:
            print("pkcs11 backend (SoftHSM2 " + _softhsm_version() + "):")
            _seal_bench(Pkcs11RootKeys.initialise(token), n)
            masters = Pkcs11MasterKeys(token)
            masters.generate("m", 16)
            _per_cpu_second(
                "derive one AES-128 card key (CMAC in token)",
                lambda i: masters.derive(
                    "m", iccids[i], KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128
                ),
                n,
            )
        finally:
            token.close()


def _softhsm_version() -> str:
    try:
        out = subprocess.run(["softhsm2-util", "--version"], capture_output=True, text=True)
    except OSError:
        return "?"
    return out.stdout.strip()


def _softhsm_token(directory: Path) -> Pkcs11Token | None:
    module = next(
        (
            m
            for m in (
                "/usr/lib/softhsm/libsofthsm2.so",
                "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
            )
            if os.path.exists(m)
        ),
        None,
    )
    if module is None:
        print("SoftHSM2 is not installed: no pkcs11 figures")
        return None
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ],
        check=True,
        capture_output=True,
    )
    return Pkcs11Token(module, "1234", token_label="bench")


# -- rotation ------------------------------------------------------------------


def _grow(url: str, root: IRootKeys, keys: int) -> float:
    """Add C{keys} sealed card keys (two per card) straight into the tables; seconds."""
    from sqlalchemy import insert

    from bipgw.store import CardKeySealer, create_sql_engine
    from bipgw.store import _schema as s

    began = time.perf_counter()
    engine = create_sql_engine(url)
    sealer = CardKeySealer(root, nonces=1024)
    value = Secret(os.urandom(16))
    chunk = 5000
    with engine.begin() as c:
        for start in range(0, keys // 2, chunk):
            cards, rows = [], []
            for n in range(start, min(keys // 2, start + chunk)):
                iccid = f"8999999{n:012d}"
                cards.append({"iccid": iccid, "extras": "{}", "ota_counter": 0})
                for purpose in ("PSK", "KIC"):
                    k = sealer.seal(iccid, purpose, 1, "aes-128", value)
                    rows.append(
                        {
                            "iccid": iccid,
                            "purpose": purpose,
                            "kvn": 1,
                            "algorithm": "aes-128",
                            "sealed": k.sealed,
                            "fingerprint": k.fingerprint,
                        }
                    )
            c.execute(insert(s.cards), cards)
            c.execute(insert(s.card_keys), rows)
    engine.dispose()
    return time.perf_counter() - began


def _summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: no sessions"
    ordered = sorted(values)

    def q(p: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return (
        f"{name}: {len(values)} sessions, p50 {q(0.5):.0f} ms, p90 {q(0.9):.0f} ms,"
        f" p99 {q(0.99):.0f} ms, max {1000 * ordered[-1]:.0f} ms"
    )


async def _rotation(reactor: Any, args: argparse.Namespace) -> None:
    from twisted.internet.utils import getProcessOutputAndValue

    from bipgw.core import CardTarget, SessionState
    from tests.integration.gateway_loop import ISD_SCRIPT, start_loop, stop_loop

    async def session(loop: Any, iccid: str) -> float:
        began = time.monotonic()
        handle = loop.gateway.open_session(CardTarget.by_iccid(iccid), "isd")
        ready = await handle.ready
        assert ready.state == SessionState.CONNECTED, ready
        await handle.execute(ISD_SCRIPT)
        await handle.close()
        return time.monotonic() - began

    with tempfile.TemporaryDirectory() as tmp:
        loop = await start_loop(Path(tmp), cards=3, sessions={"card_timeout": 10.0})
        try:
            config = loop.gateway.config
            print(f"growing the database to {args.keys:,} sealed keys ...", flush=True)
            grown = _grow(config.database.url, loop.gateway.root, args.keys)
            print(f"  {grown:.0f} s", flush=True)
            before: list[float] = []
            end = time.monotonic() + args.baseline
            while time.monotonic() < end:
                before.append(await session(loop, loop.iccids[len(before) % 3]))
            began = time.perf_counter()
            child = getProcessOutputAndValue(
                sys.executable,
                [
                    "-c",
                    "import sys; from bipgw.cli import main; sys.exit(main())",
                    "keys",
                    "rotate-root",
                    "--batch",
                    str(args.batch),
                    "-c",
                    str(config.source),
                ],
                env=dict(os.environ),
                reactor=reactor,
            )
            done: list[Any] = []
            child.addBoth(done.append)
            during: list[float] = []
            while not done:
                during.append(await session(loop, loop.iccids[len(during) % 3]))
            elapsed = time.perf_counter() - began
            out, err, status = done[0]
            print(out.decode().strip().splitlines()[-1] if out else err.decode()[-2000:])
            print(
                f"rotation of {args.keys:,} keys: {elapsed:.1f} s wall"
                f" ({args.keys / elapsed:,.0f} keys/s), exit status {status}"
            )
            print(_summary("sessions before", before))
            print(_summary("sessions during", during))
        finally:
            await stop_loop(loop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.keys_backend")
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("throughput")
    t.add_argument("-n", type=int, default=20000)
    r = commands.add_parser("rotation")
    r.add_argument("--keys", type=int, default=200_000)
    r.add_argument("--batch", type=int, default=1000)
    r.add_argument("--baseline", type=float, default=10.0)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f}, {os.cpu_count()} CPUs")
    if args.command == "throughput":
        throughput(args)
        return
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    react(lambda reactor: ensureDeferred(_rotation(reactor, args)))


if __name__ == "__main__":
    main()
