"""Codec throughput on one core: ``python -m bench.codecs [--seconds S]``.

Measures the three hot paths of issue #2, each as encode+decode of one
message (the gateway does both halves per push / per script, and the fleet
the mirror image):

- SMPP ``submit_sm`` carrying an OTA push (the 74-byte vector PDU);
- an OTA command packet secured with AES-128 CBC + CMAC and verified
  (the default service security, SPI 16 39, KIc/KID 12);
- an expanded (TS 102 226) command script of 20 C-APDUs encoded and decoded,
  in both indefinite (AE) and definite (AA) forms, plus the response script.

Each figure is the best of several rounds of a fixed time budget; the
process runs single-threaded, so it measures one core.  Results go, by hand,
into bench/RESULTS.md with the date and machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

from bipgw.codec import ota, ram, smpp

_TARGETS = {
    "submit_sm encode+decode": 50_000,
    "OTA AES-128 secure+verify": 20_000,
    "script 20 APDUs encode+decode (AE)": 20_000,
}


def _rate(fn: Callable[[], object], seconds: float, rounds: int = 5) -> tuple[float, float]:
    """Best rates (calls per CPU second, calls per wall second) of C{rounds}.

    The CPU-time rate is the one compared with the targets: it is what one
    core delivers, whatever else the machine is doing; the wall-clock rate is
    printed beside it so a loaded run is visible.
    """
    batch = 1
    while True:  # size a batch to ~10 ms
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        if time.perf_counter() - t0 > 0.01:
            break
        batch *= 2
    best_cpu = best_wall = 0.0
    for _ in range(rounds):
        n = 0
        c0 = time.process_time()
        t0 = time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            for _ in range(batch):
                fn()
            n += batch
        cpu = time.process_time() - c0
        best_cpu = max(best_cpu, n / max(cpu, 1e-9))
        best_wall = max(best_wall, n / elapsed)
    return best_cpu, best_wall


def _submit_sm() -> Callable[[], object]:
    ud = bytes.fromhex("02700000201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f")
    pdu = smpp.SubmitSm(
        2,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="12",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="23",
        esm_class=0x40,
        protocol_id=0x7F,
        data_coding=0xF6,
        short_message=ud,
    )

    def run() -> object:
        return smpp.decode(smpp.encode(pdu))

    return run


def _ota() -> Callable[[], object]:
    spi = ota.Spi.from_bytes(bytes.fromhex("1639"))
    kic = ota.Kic.from_byte(0x12)
    kid = ota.Kid.from_byte(0x12, spi.checksum)
    keys = ota.OtaKeys(os.urandom(16), os.urandom(16))
    push = bytes.fromhex("80ec01010e350103390203e83e052101020304")
    counter = [0]

    def run() -> object:
        counter[0] += 1
        packet = ota.CommandPacket(spi, kic, kid, b"\x00\x00\x00", counter[0], push)
        raw = ota.secure_command(packet, keys)
        return ota.verify_command(raw, keys, last_counter=counter[0] - 1)

    return run


def _apdus(n: int = 20) -> tuple[bytes, ...]:
    """A realistic mix: GET DATA / SELECT sized, STORE DATA sized, LOAD blocks."""
    sizes = [5, 13, 60, 133, 245] * (n // 5)
    return tuple(bytes([0x80, 0xE8, 0, i, s - 5]) + bytes(s - 5) for i, s in enumerate(sizes))


def _script(definite: bool) -> Callable[[], object]:
    script = ram.CommandScript(_apdus(), definite)

    def run() -> object:
        return ram.CommandScript.decode(script.encode())

    return run


def _response(definite: bool) -> Callable[[], object]:
    responses = tuple(c[:3] + b"\x90\x00" for c in _apdus())
    script = ram.ResponseScript(responses, 20 if definite else None, definite)

    def run() -> object:
        return ram.ResponseScript.decode(script.encode())

    return run


def main(argv: list[str] | None = None) -> None:
    """Run every codec benchmark and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    args = parser.parse_args(argv)
    print(
        f"# {time.strftime('%Y-%m-%d')} Python {platform.python_version()}"
        f" on {platform.machine()} ({_cpu()}), {os.cpu_count()} CPUs, one core used"
    )
    cases: list[tuple[str, Callable[[], object]]] = [
        ("submit_sm encode+decode", _submit_sm()),
        ("OTA AES-128 secure+verify", _ota()),
        ("script 20 APDUs encode+decode (AE)", _script(False)),
        ("script 20 APDUs encode+decode (AA)", _script(True)),
        ("response script 20 R-APDUs encode+decode (AF)", _response(False)),
        ("response script 20 R-APDUs encode+decode (AB)", _response(True)),
    ]
    print(f"{'operation':48s} {'per CPU s':>12s} {'per wall s':>12s} {'us (CPU)':>9s}")
    for name, fn in cases:
        cpu_rate, wall_rate = _rate(fn, args.seconds)
        target = _TARGETS.get(name)
        verdict = (
            ""
            if target is None
            else f"  target {target:,}/s: {'met' if cpu_rate >= target else 'SHORT'}"
        )
        print(f"{name:48s} {cpu_rate:12,.0f} {wall_rate:12,.0f} {1e6 / cpu_rate:9.1f}{verdict}")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
