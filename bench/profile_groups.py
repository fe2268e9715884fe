"""Where a cProfile run's time goes, by layer: ``python -m bench.profile_groups FILE.prof``.

The benches' ``--profile`` options write cProfile dumps (``bench.platform``
keeps its ``.prof``; ``bench.gateway``, ``bench.push`` and
``bench.handshakes`` print their top functions, and with ``--dir`` leave the
dump).  This reads one dump and prints:

- the own (self) time summed per layer: TLS/OpenSSL, the Twisted reactor and
  transports, HTTP parsing and serving, Deferreds and coroutines, the store
  and SQLite, logging, our code by package, other libraries, and built-ins
  that belong to none of these; each with its share of the profiled time and
  its number of calls;
- the top ``--top`` functions by own time and by cumulative time, as pstats
  prints them.

The layer of a function is decided by its file (and, for C built-ins, by
its name: ``SSL_*``/``_openssl`` calls are OpenSSL's, ``sqlite3`` calls the
store's); the rules are the table ``LAYERS`` below, first match wins.  With
``--per N`` every figure is also divided by N (the operations the profiled
run did: setups, APDUs, handshakes), in microseconds.
"""

from __future__ import annotations

import argparse
import io
import pstats
import re
import sys
from collections import defaultdict

# (layer, regular expression over "file:function"), first match wins.
LAYERS: tuple[tuple[str, str], ...] = (
    # attrs-generated __init__/__hash__/validators of our classes: object building.
    ("attrs (building our objects)", r"<attrs generated|/attr/|attrs/"),
    (
        "TLS/OpenSSL and crypto",
        r"OpenSSL/|cryptography/|_openssl|\bSSL_|_cffi|bipgw/tls/|twisted/protocols/tls\.py"
        r"|_sslverify|hazmat|_rust",
    ),
    # Twisted's log.callWithLogger/callWithContext wrap every reactor event: the reactor's.
    ("Twisted reactor/transport", r"twisted/python/(log|context)\.py:\d+\(callWith"),
    ("logging", r"twisted/logger/|twisted/python/log\.py|bipgw/.*log|strftime|\blogging/"),
    ("Deferreds/coroutines", r"twisted/internet/defer\.py|twisted/python/failure\.py"),
    ("store/SQLite", r"sqlite3|sqlalchemy/|bipgw/store/"),
    (
        "HTTP (parse/serve)",
        r"twisted/web/|klein/|werkzeug/|bipgw/codec/admin_http|bipgw/web/|email/|treq/"
        r"|urllib/parse",
    ),
    (
        "Twisted reactor/transport",
        r"twisted/internet/|twisted/python/|zope/interface/|selectors\.py|socket|epoll|_heapq",
    ),
    ("bipgw core (engine, relay, sessions)", r"bipgw/core/"),
    ("bipgw scp81 (admin server)", r"bipgw/scp81/"),
    ("bipgw codecs, SMPP, push, OTA", r"bipgw/(smpp|push|ota|codec)/"),
    ("bipgw platform/app/other", r"bipgw/"),
    ("benchmark harness", r"bench/|simcard/"),
    ("other libraries", r"site-packages/|/lib/python3"),
)


def layer_of(filename: str, function: str) -> str:
    text = f"{filename}:{function}"
    for name, pattern in LAYERS:
        if re.search(pattern, text):
            return name
    return "built-ins (other)"


def grouped(stats: pstats.Stats) -> tuple[dict[str, list[float]], float]:
    """Own time and calls per layer, and the total own time."""
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    total = 0.0
    for (filename, _line, function), (_cc, calls, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        g = groups[layer_of(filename, function)]
        g[0] += own
        g[1] += calls
        total += own
    return groups, total


def report(path: str, top: int, per: int | None, out: io.TextIOBase | None = None) -> str:
    stats = pstats.Stats(path, stream=io.StringIO())
    groups, total = grouped(stats)
    lines = [f"profile {path}: {total:.3f} s own time in all"]
    unit = f"; µs per op (÷{per})" if per else ""
    lines.append(f"{'layer':<40} {'own s':>8} {'share':>6} {'calls':>11}{unit}")
    for name, (own, calls) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        row = f"{name:<40} {own:8.3f} {own / total:6.1%} {int(calls):11,d}"
        if per:
            row += f"   {own / per * 1e6:8.1f} µs, {calls / per:6.1f} calls"
        lines.append(row)
    for order in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(path, stream=buf).sort_stats(order).print_stats(top)
        body = buf.getvalue()
        start = body.find("   ncalls")
        lines.append(f"\ntop {top} by {order}:")
        lines.append(body[start:].rstrip() if start >= 0 else body.rstrip())
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_groups", description=__doc__)
    parser.add_argument("profile", help="a cProfile dump (.prof)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--per", type=int, help="operations in the profiled run")
    args = parser.parse_args(argv)
    sys.stdout.write(report(args.profile, args.top, args.per))


if __name__ == "__main__":
    main()
