"""Card key derivation throughput on one core: ``python -m bench.keys [--seconds S]``.

Measures what the running gateway does when a card's key is not stored
(issue 12, file backend: master keys in the keystore file, opened once):

- one derivation v2 (SP 800-108 counter mode, AES-CMAC, label binding
  purpose, algorithm and key version) of a 16-byte key, with the master's
  CMAC key schedule kept (L{bipgw.keys.CardKeyDeriver}), and of a 32-byte
  key (two CMAC blocks);
- the same through a fresh ``cryptography`` KBKDFCMAC object per key (what
  a naive implementation costs);
- derivation v1, for comparison;
- a whole card as the key source resolves it (PSK, KIc, KID and the SCP03
  set: six derivations, each sealed in memory for the key cache), from an
  empty store.

Rates are per CPU second (``time.process_time``), best of several rounds;
results go, by hand, into bench/RESULTS.md with the date, machine and load.
"""

from __future__ import annotations

import argparse
import os
import platform

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode
from twisted.internet.defer import Deferred

from bench.codecs import _rate
from bipgw.keys import CardKeyDeriver, KdfPurpose, KeyAlgorithm, MasterKeyRing, RootKey, Secret
from bipgw.keys._masters import MasterKey
from bipgw.store import CardKeySource, DerivedKeySpec, KeyPurpose, MemoryStore

ICCID = "8988211000000000018"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="per round")
    args = parser.parse_args()
    master = Secret(os.urandom(16))
    deriver = CardKeyDeriver(master)
    serials = iter(range(10**18, 10**19))

    def v2_16() -> object:
        return deriver.derive_v2(
            str(next(serials)), KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128, 0x40
        )

    def v2_32() -> object:
        return deriver.derive_v2(
            str(next(serials)), KdfPurpose.SCP03_ENC, KeyAlgorithm.AES_256, 0x30
        )

    def v1_16() -> object:
        return deriver.derive(str(next(serials)), KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128)

    raw = master.reveal()

    def kbkdf_16() -> object:
        label = KdfPurpose.SCP81_PSK.label_v2(KeyAlgorithm.AES_128, 0x40)
        return KBKDFCMAC(
            algorithms.AES,
            Mode.CounterMode,
            16,
            4,
            4,
            CounterLocation.BeforeFixed,
            label,
            str(next(serials)).encode(),
            None,
        ).derive(raw)

    ring = MasterKeyRing(
        (purpose, MasterKey(purpose.token, 2, None, CardKeyDeriver(master)))
        for purpose in KdfPurpose
    )
    wanted = [
        DerivedKeySpec(KeyPurpose.PSK, 0x40, KeyAlgorithm.AES_128),
        DerivedKeySpec(KeyPurpose.KIC, 1, KeyAlgorithm.AES_128),
        DerivedKeySpec(KeyPurpose.KID, 1, KeyAlgorithm.AES_128),
        DerivedKeySpec(KeyPurpose.SCP03_ENC, 0x30, KeyAlgorithm.AES_128),
        DerivedKeySpec(KeyPurpose.SCP03_MAC, 0x30, KeyAlgorithm.AES_128),
        DerivedKeySpec(KeyPurpose.SCP03_DEK, 0x30, KeyAlgorithm.AES_128),
    ]
    source = CardKeySource(
        MemoryStore(), RootKey(Secret(os.urandom(32))), masters=ring, wanted=wanted
    )
    results: list[object] = []

    def card() -> object:
        d: Deferred[object] = source.get_card_keys(str(next(serials)))
        d.addCallback(results.append)
        results.clear()
        return d

    load = os.getloadavg()[0]
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}, load average {load:.1f}"
    )
    print(f"{'operation':60} {'per CPU s':>12} {'per wall s':>12} {'us (CPU)':>9}")
    for name, fn in (
        ("derivation v2, 16-byte key (deriver kept)", v2_16),
        ("derivation v2, 32-byte key (two CMAC blocks)", v2_32),
        ("derivation v1, 16-byte key (deriver kept)", v1_16),
        ("derivation v2 via a new KBKDFCMAC per key", kbkdf_16),
        ("card resolved by the key source (6 keys derived + sealed)", card),
    ):
        cpu, wall = _rate(fn, args.seconds)
        print(f"{name:60} {cpu:12,.0f} {wall:12,.0f} {1e6 / cpu:9.1f}")


if __name__ == "__main__":
    main()
