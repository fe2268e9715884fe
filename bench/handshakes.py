"""Card TLS-PSK handshakes per second: the gateway's admin listener against a trivial server.

``python -m bench.handshakes`` builds the C load generator
(``bench/build-pskload.sh``), then, in one run and alternately:

- starts the trivial reference server (``bench.psk_reference``: the same
  Twisted TLS-PSK layer, answers every POST with 204 without parsing it)
  and drives it with ``pskload``;
- starts the gateway exactly as ``twistd bipgw`` builds it (memory store,
  the default ``[log]`` level ``info`` written to a file), with
  ``--cards`` known cards that share one bench key and have no session
  waiting, and drives its SCP81 listener with the same ``pskload``
  command: each connection is one handshake and one POST answered 204.

Each server runs in its own process, so the CPU time it used is its own
(read from ``/proc``); ``pskload`` is C and uses a fraction of a core, so
it is never the bottleneck.  ``--profile cprofile`` (or ``pyinstrument``,
a sampling profiler that distorts less; ``pip install pyinstrument``)
profiles the gateway process and prints what dominates.  The key is generated per
run and only ever handed to the two local processes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.gateway import _free_port, _machine, _set

_HERE = Path(__file__).resolve().parent
_IDENTITY = "8988211000000{:06d}"  # 19 digits; the Luhn digit is not checked for identities
_TARGET = 0.70


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_pskload() -> str:
    """The path of the built load generator."""
    out = subprocess.run(
        ["sh", str(_HERE / "build-pskload.sh")], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


# -- the gateway side (run in its own process) -------------------------------


def _vendor_file(path: Path, transport: Any, psk: bytes, cards: int) -> None:
    from bipgw.keys import DEFAULT_TRANSPORT_SCHEME, wrap_for_transport
    from simcard.fleet._files import vendor_header

    def wrap(value: bytes) -> str:
        return wrap_for_transport(transport, value, DEFAULT_TRANSPORT_SCHEME)

    ota = [wrap(secrets.token_bytes(16)) for _ in range(3)]
    wrapped = wrap(psk)
    lines = [
        vendor_header(
            customer="bench",
            quantity=cards,
            card_type="bench",
            batch="HS1",
            transport_label="BENCH",
            ota_algorithm="AES",
            ota_kvn=1,
        )
    ]
    for i in range(cards):
        iccid = _IDENTITY.format(i)
        lines.append(
            f"{iccid} 20801{i:010d} {' '.join(ota)} {iccid.encode().hex().upper()} {wrapped}\n"
        )
    path.write_text("".join(lines))


def serve_gateway(args: argparse.Namespace) -> None:
    """Build and run the gateway with C{args.cards} known cards; print C{listening <port>}."""
    import cProfile

    from twisted.internet.defer import Deferred
    from twisted.internet.task import react
    from twisted.logger import globalLogBeginner

    from bipgw.app import build_gateway
    from bipgw.cli import main as bipgw_main
    from bipgw.config import Config
    from bipgw.keys import Secret

    base = Path(args.dir)
    install = base / "gateway"
    transport = Secret(secrets.token_bytes(16))
    key_file = base / "BENCH.key"
    key_file.write_text(transport.reveal().hex().upper() + "\n")
    key_file.chmod(0o600)
    init = [
        "init",
        str(install),
        "--listen",
        f"tcp:{args.port}:interface=127.0.0.1",
        "--smpp",
        f"tcp:host=127.0.0.1:port={_free_port()}",
    ]
    config_file = install / "bipgw.toml"
    add = ["keys", "add-transport", "BENCH", "--from-file", str(key_file), "-c", str(config_file)]
    with open(os.devnull, "w") as null:
        for argv in (init, add):
            if bipgw_main(argv, stdout=null) != 0:
                raise SystemExit(f"bipgw {argv[0]} failed")
    text = config_file.read_text()
    for table, key, value in (
        ("admin", "max_connections", "100000"),
        ("database", "url", '"memory:"'),
        *((("log", "level", f'"{args.log_level}"'),) if args.log_level else ()),
    ):
        text = _set(text, table, key, value)
    config_file.write_text(text)
    config = Config.from_file(config_file)
    vendor = base / "cards.out"
    _vendor_file(vendor, transport, bytes.fromhex(args.key), args.cards)
    log = open(base / "gateway.log", "a")  # noqa: SIM115 (open for the run)
    globalLogBeginner.beginLoggingTo([config.log.observer(log)], redirectStandardIO=False)
    profile = cProfile.Profile() if args.profile == "cprofile" else None
    sampler: Any = None
    if args.profile == "pyinstrument":
        from pyinstrument import Profiler

        sampler = Profiler(interval=0.001, async_mode="disabled")

    async def run(reactor: Any) -> None:
        gateway = build_gateway(config, reactor, exit_on_failure=False)
        gateway.startService()
        await gateway.when_ready()
        report = await gateway.import_cards(vendor)
        if not report.ok:
            raise SystemExit(f"card import failed: {report}")
        if profile is not None:
            profile.enable()

            def dump() -> None:
                profile.disable()
                profile.dump_stats(str(base / "gateway.prof"))

            reactor.addSystemEventTrigger("before", "shutdown", dump)
        if sampler is not None:
            sampler.start()

            def write() -> None:
                sampler.stop()
                (base / "gateway.pyinstrument.txt").write_text(
                    sampler.output_text(unicode=False, show_all=False)
                )

            reactor.addSystemEventTrigger("before", "shutdown", write)
        print("listening", flush=True)
        await Deferred()  # until SIGTERM stops the reactor

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


# -- the driver ------------------------------------------------------------


def _start(command: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening"):
        proc.kill()
        raise SystemExit(f"{command[2]} did not start: {line!r}")
    return proc


def _drive(
    pskload: str, port: int, key: str, args: argparse.Namespace, proc: subprocess.Popen[str]
) -> dict[str, Any]:
    cpu0 = _cpu(proc.pid)
    t0 = time.perf_counter()
    out = subprocess.run(
        [pskload, "127.0.0.1", str(port), _IDENTITY.replace("{:06d}", "%06d"), key,
         str(args.conns), str(args.handshakes), "1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["server_cpu_s"] = _cpu(proc.pid) - cpu0
    result["wall_s"] = wall
    return result


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _show(name: str, r: dict[str, Any]) -> str:
    per_cpu = r["handshakes"] / r["server_cpu_s"] if r["server_cpu_s"] else 0.0
    return (
        f"   {name:<10} {r['handshakes_per_s']:8.0f} handshakes/s  ({r['handshakes']} in"
        f" {r['seconds']:.2f} s, {r['errors']} errors; server {r['server_cpu_s']:.2f} s CPU ="
        f" {per_cpu:.0f}/CPU s; request p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms)"
    )


def drive(args: argparse.Namespace) -> None:
    pskload = build_pskload()
    print(_machine(), flush=True)
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="bench-hs-", dir=args.dir))
    print(f"work directory {base} (gateway.log); pskload {pskload}", flush=True)
    key = secrets.token_bytes(16).hex()
    py = [sys.executable, "-m"]
    ref_port, gw_port = _free_port(), _free_port()
    gw_cmd = [*py, "bench.handshakes", "--serve-gateway", "--dir", str(base), "--port",
              str(gw_port), "--key", key, "--cards", str(args.handshakes)]  # fmt: skip
    if args.profile:
        gw_cmd += ["--profile", args.profile]
    if args.log_level:
        gw_cmd += ["--log-level", args.log_level]
    t0 = time.perf_counter()
    gateway = _start(gw_cmd)
    print(
        f"gateway up with {args.handshakes} cards in {time.perf_counter() - t0:.1f} s", flush=True
    )
    reference = _start([*py, "bench.psk_reference", str(ref_port), key])
    ratios = []
    try:
        # Card keys are read on demand (since the cluster merge): a card's
        # first handshake is refused while its keys load.  One untimed pass
        # over every identity fills the cache, so the rounds measure known cards.
        warm = _drive(pskload, gw_port, key, args, gateway)
        print(
            f"warm-up (not counted): {warm['errors']} of {args.handshakes} handshakes refused"
            " while the gateway loaded the cards' keys",
            flush=True,
        )
        print(
            f"{args.rounds} rounds of {args.handshakes} connections (handshake + one POST),"
            f" {args.conns} at once",
            flush=True,
        )
        for n in range(args.rounds):
            ref = _drive(pskload, ref_port, key, args, reference)
            gw = _drive(pskload, gw_port, key, args, gateway)
            ratio = gw["handshakes_per_s"] / ref["handshakes_per_s"]
            cpu_ratio = ref["server_cpu_s"] / gw["server_cpu_s"]
            ratios.append((ratio, cpu_ratio))
            print(
                f" round {n + 1}: gateway/reference = {ratio:.0%} wall,"
                f" {cpu_ratio:.0%} per server CPU second",
                flush=True,
            )
            print(_show("reference", ref), flush=True)
            print(_show("gateway", gw), flush=True)
    finally:
        _stop(reference)
        _stop(gateway)
    wall = sorted(r for r, _ in ratios)[(len(ratios) - 1) // 2]
    cpu = sorted(c for _, c in ratios)[(len(ratios) - 1) // 2]
    print(
        f"summary (median of {len(ratios)} rounds; target >= 70 %): gateway at {wall:.0%} of the"
        f" reference's handshakes/s ({'met' if wall >= _TARGET else 'short'}), {cpu:.0%} per"
        f" server CPU second ({'met' if cpu >= _TARGET else 'short'})"
    )
    log = base / "gateway.log"
    if log.exists():
        print(f"gateway log: {log.stat().st_size} bytes, {len(log.read_text().splitlines())} lines")
    sampled = base / "gateway.pyinstrument.txt"
    if sampled.exists():
        print("pyinstrument profile of the gateway process:")
        print(sampled.read_text())
    prof = base / "gateway.prof"
    if prof.exists():
        import pstats

        print("profile of the gateway process (own time, top 30):")
        pstats.Stats(str(prof), stream=sys.stdout).sort_stats("tottime").print_stats(30)
    if not args.dir:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.handshakes", description=__doc__)
    parser.add_argument("--handshakes", type=int, default=10000, help="per round and server")
    parser.add_argument("--conns", type=int, default=32, help="connections at once")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--profile",
        choices=("cprofile", "pyinstrument"),
        help="profile the gateway process (pyinstrument: a sampling profiler, pip install it)",
    )
    parser.add_argument("--log-level", help="the gateway's [log] level (default: as configured)")
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    parser.add_argument("--serve-gateway", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--cards", type=int, default=10000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_gateway:
        serve_gateway(args)
    else:
        drive(args)


if __name__ == "__main__":
    main()
