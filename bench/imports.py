"""Import speed: a simulated vendor file (or MSISDN file) into SQLite or PostgreSQL.

    python -m bench.imports --cards 1000000 --database sqlite
    python -m bench.imports --cards 1000000 --database postgresql
    python -m bench.imports --msisdn 1000000 --database sqlite
    python -m bench.imports --cards 100000 --profile 25   # cProfile of the store thread
    python -m bench.imports --msisdn 100000 --profile 25  # and of the reactor thread

The input comes from C{simfleet generate} (timed, kept in C{--fleet-dir} for
the next run).  The import runs exactly as C{bipgw import} does it
(L{bipgw.ingest.import_cards} on a store from L{bipgw.store.open_store}, the
default configuration); the figures are wall time, rows a second and the
growth of the process's RSS (sampled every 20 ms) over its value before the
import.  An MSISDN run first imports the fleet's cards (not timed), then a
file of ADD, CHG and DEL lines for them; C{--cards-db DB} starts instead from
a copy of an SQLite database that already holds them (the C{bipgw.db} a
C{--cards} run of the same fleet left in its C{bipgw-bench-*} directory),
which saves the minutes of the untimed card import:

    python -m bench.imports --msisdn 1000000 --cards-db /tmp/bipgw-bench-XXXX/bipgw.db
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import react

from bipgw.ingest import import_cards, import_msisdn
from bipgw.keys import KeyStore, RootKey, Secret
from bipgw.store import open_store
from simcard.fleet import generate_fleet

PG_URL = os.environ.get(
    "BIPGW_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _children() -> list[int]:
    """The process ids of this process's children (the import's worker)."""
    pids = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(pid) for pid in f.read().split()]
        except OSError:
            pass
    return pids


def _rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError):
        return 0


class _Peak(threading.Thread):
    """The peak RSS of this process and of each child, sampled every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.base = _rss()
        self.peak = self.base
        self.children: dict[int, int] = {}
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, _rss())
            for pid in _children():
                self.children[pid] = max(self.children.get(pid, 0), _rss_of(pid))
            time.sleep(0.02)


def _idle_worker_rss() -> int:
    """The peak RSS of a card worker that starts and is given nothing: interpreter and imports.

    What a worker weighs before it reads a line; the sampled peak of the
    import's worker over this is what it grew while streaming the file.
    """
    import bipgw.ingest._card_worker as worker

    child = subprocess.Popen(
        [sys.executable, "-m", "bipgw.ingest._card_worker"],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # runpy's warning: the package imports the module first
        env=worker._environment(),
    )
    _, _, usage = os.wait4(child.pid, 0)
    child.returncode = 0
    return usage.ru_maxrss * 1024


def _fleet(cards: int, directory: Path) -> Path:
    out = directory / f"fleet-{cards}"
    if (out / "fleet.toml").exists():
        print(f"fleet: reusing {out}")
        return out
    started = time.perf_counter()
    generate_fleet(out, cards=cards, seed=11)
    print(f"simfleet generate --cards {cards}: {time.perf_counter() - started:.1f} s")
    return out


def _msisdn_file(fleet: Path, lines: int) -> Path:
    """ADD for 60% of the lines, then CHG (25%) and DEL (15%) of added cards, later in time."""
    path = fleet / "msisdn" / f"mixed-{lines}.csv"
    if path.exists():
        return path
    source = (fleet / "msisdn" / "B0001.csv").read_text().splitlines()
    rows = [line.split(",") for line in source[: lines * 6 // 10]]
    rng = random.Random(5)
    out = [f"{m},{i},{imsi},ADD,20250101000000" for m, i, imsi, _, _ in rows]
    later = list(range(len(rows)))
    rng.shuffle(later)
    changes = lines - len(out)
    for n, index in enumerate(later[:changes]):
        msisdn, iccid, imsi, _, _ = rows[index]
        clock = f"{n // 3600 % 24:02d}{n // 60 % 60:02d}{n % 60:02d}"
        if n < changes * 25 // 40:
            out.append(f"9{msisdn[1:]},{iccid},{imsi},CHG,20250102{clock}")
        else:
            out.append(f",{iccid},,DEL,20250103{clock}")
    path.write_text("\n".join(out) + "\n")
    return path


def _url(database: str, workdir: Path) -> tuple[str, Any]:
    if database == "sqlite":
        return f"sqlite:///{workdir / 'bipgw.db'}", None
    schema = f"bench_{os.getpid()}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


async def _run(reactor: Any, args: argparse.Namespace) -> None:
    cards = args.cards or args.msisdn
    fleet = _fleet(cards, Path(args.fleet_dir))
    workdir = Path(tempfile.mkdtemp(prefix="bipgw-bench-"))
    root = RootKey.generate()
    keystore = KeyStore.create(str(workdir / "keystore"), root)
    hex_key = (fleet / "gateway" / "TK-B0001.key").read_text().split()[-1]
    keystore.put("TK-B0001", "transport", Secret(bytes.fromhex(hex_key)), {"scheme": "aes-kwp"})
    if args.cards_db:
        if args.database != "sqlite" or not args.msisdn:
            raise SystemExit("--cards-db is for --msisdn runs on sqlite")
        shutil.copyfile(args.cards_db, workdir / "bipgw.db")
    url, cleanup = _url(args.database, workdir)
    store = await open_store(url, reactor=reactor)
    # Thread CPU time, not wall time: under load the wall clock charges waits to whatever runs.
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    # MSISDN: the file is checked and batched in the reactor thread, applied in the store's.
    main_profile = cProfile.Profile(time.thread_time) if args.profile and args.msisdn else None
    try:
        vendor = fleet / "vendor" / "B0001.out"
        if args.msisdn:
            if not args.cards_db:
                await import_cards(store, keystore, root, vendor)
            path = _msisdn_file(fleet, args.msisdn)
        else:
            path = vendor
        if profile is not None:
            if args.msisdn:
                _profile_msisdn_store(profile)
            else:
                _profile_store_thread(store, profile)
        if main_profile is not None:
            main_profile.enable()
        peak = _Peak()
        peak.start()
        load_before = os.getloadavg()[0]
        started, cpu, times = time.perf_counter(), time.process_time(), os.times()
        if args.msisdn:
            report = await import_msisdn(store, path)
        else:
            report = await import_cards(store, keystore, root, path)
        wall = time.perf_counter() - started
        if main_profile is not None:
            main_profile.disable()
        cpu = time.process_time() - cpu
        after = os.times()
        # user + sys of this process and of any children it waited for.
        cpu_all = sum(after[:4]) - sum(times[:4])
        peak.running = False
        growth = (peak.peak - peak.base) / 2**20
        rows = report.records
        print(
            f"{'msisdn' if args.msisdn else 'cards'} into {args.database}: {rows} records in"
            f" {wall:.1f} s = {rows / wall:,.0f}/s (CPU {cpu:.1f} s, with children"
            f" {cpu_all:.1f} s; load {load_before:.1f} before, {os.getloadavg()[0]:.1f} after);"
            f" added {report.added}, updated"
            f" {report.updated}, unchanged {report.unchanged}, rejected {report.rejected};"
            f" RSS {peak.base / 2**20:.0f} MiB before, growth {growth:.0f} MiB"
            f" (file {path.stat().st_size / 2**20:.0f} MiB)"
        )
        children = [t - b for t, b in zip(after[2:4], times[2:4], strict=True)]
        print(
            f"  this process: CPU {cpu:.1f} s (user+sys); worker process(es): CPU"
            f" {sum(children):.1f} s, peak RSS of the largest"
            f" {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB;"
            " on an idle 2-core machine the wall time is about the larger of the two CPUs"
        )
        if peak.children:
            idle = _idle_worker_rss()
            worker_peak = max(peak.children.values())
            worker_growth = (worker_peak - idle) / 2**20
            print(
                f"  worker RSS: peak {worker_peak / 2**20:.0f} MiB (sampled), an idle worker"
                f" {idle / 2**20:.0f} MiB: grew {worker_growth:.0f} MiB; both processes grew"
                f" {growth + worker_growth:.0f} MiB ({(growth + worker_growth) * 1.048576:.0f} MB)"
            )
        if report.fatal:
            print("FATAL:", report.fatal)
        if args.again and not args.msisdn:
            started = time.perf_counter()
            again = await import_cards(store, keystore, root, path)
            print(
                f"re-import: {time.perf_counter() - started:.1f} s, unchanged {again.unchanged},"
                f" added {again.added}, updated {again.updated}"
            )
    finally:
        await store.close()
        if cleanup is not None:
            cleanup()
        if args.cards_db:
            shutil.rmtree(workdir)  # a copy of a large database: not left behind
    for what, stats in (("store thread", profile), ("reactor thread", main_profile)):
        if stats is not None:
            out = io.StringIO()
            pstats.Stats(stats, stream=out).sort_stats("tottime").print_stats(args.profile)
            print(f"-- {what}\n{out.getvalue()}")


def _profile_msisdn_store(profile: cProfile.Profile) -> None:
    """Profile each MSISDN batch where the store runs it (its own thread)."""
    import bipgw.store._bulk_msisdn as bulk

    original = bulk.apply_msisdn_changes

    def profiled(*a: Any, **kw: Any) -> Any:
        profile.enable()
        try:
            return original(*a, **kw)
        finally:
            profile.disable()

    bulk.apply_msisdn_changes = profiled  # type: ignore[assignment]


def _profile_store_thread(store: Any, profile: cProfile.Profile) -> None:
    """Profile the store's thread while it consumes the batches (cProfile is per thread)."""
    for name in ("upsert_card_batches",):
        original = getattr(store, name)

        def wrapped(batches: Any, *a: Any, _original: Any = original, **kw: Any) -> Any:
            def profiled() -> Any:
                profile.enable()
                try:
                    yield from batches
                finally:
                    profile.disable()

            return _original(profiled(), *a, **kw)

        setattr(store, name, wrapped)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.imports", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--cards", type=int, help="import a vendor file of N cards")
    what.add_argument("--msisdn", type=int, help="import an MSISDN file of N lines")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--fleet-dir", default=os.path.join(tempfile.gettempdir(), "bipgw-bench"))
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="show the top N")
    parser.add_argument("--again", action="store_true", help="then re-import (all unchanged)")
    parser.add_argument(
        "--cards-db",
        metavar="DB",
        help="--msisdn on sqlite: start from a copy of this database holding the fleet's cards",
    )
    args = parser.parse_args(argv)
    react(lambda reactor: ensureDeferred(_run(reactor, args)))


if __name__ == "__main__":
    main(sys.argv[1:])
