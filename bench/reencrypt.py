"""Re-encryption benchmark: keyroll's job against seed 001's naive script, on real PostgreSQL.

    .venv/bin/python bench/reencrypt.py [--rows 1000000] [--naive-rows 100000] [--batch-size 1000]
                                        [--replica-rows 100000] [--max-lag 1.0]

It starts its own PostgreSQL (`tests.servers.PostgresServer`: fsync off, loopback), loads
``--rows`` rows whose ``bytea`` ciphertext is under key 1, promotes key 2, then in one run:

1. a concurrent reader alone (primary-key lookups of random rows, paced, in its own process)
   gives the *baseline* latency (measured again after both jobs, to show the machine's noise);
2. the naive script of seed 001 (select every row, then one autocommit UPDATE per row) runs on
   a copy of the first ``--naive-rows`` rows (the same data; a sample, because on a 2-core
   machine the naive script over 1M rows takes many minutes; ``--naive-rows 0`` uses all);
3. ``keyroll``'s `Reencryptor` (keyset windows, compare-and-set batches, a checkpoint in a real
   SQLite store after every batch) runs on the full table, unthrottled (``--no-throttle``);
4. the same job with the **default throttle** (what ``keyroll reencrypt`` does without
   options: a latency probe in its own process, target 1.5× the probe's baseline p99,
   ``--max-lag`` 5 s, the job's thread at CPU priority ``idle``) runs on an identical copy of
   the full table;
5. the **replica case**: a second PostgreSQL with a streaming replica
   (`tests.pg_standby.StandbyServer`), ``--replica-rows`` rows; the throttled job runs with
   ``--max-lag`` while the replica's replay is paused for a few seconds mid-job. It shows the
   lag the job measured, the holds, and that no batch was written while it held.

The targets (issue 17): the throttled job at least 5× the naive script's rows/s, *and* the
reader's p99 during it at most 1.5× the reader's baseline p99. Both are printed, with which
were met.

The reader runs during both jobs. "Longest transaction" is the longest single statement each
job sent (every statement is its own autocommit transaction), as its client timed it, counts
included (they run in windows of 50,000 rows); for the naive script it is its select-all.
Both use the same `FieldCipher`, so the difference is the database access pattern. The
"other processes" column is the CPU (in cores) that processes outside the benchmark's own tree
used while that row was measured: on a shared machine a busy neighbour disturbs the reader's
tail, and this says when it did. Nothing is asserted: numbers are for a person to read.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from tests.pg_standby import StandbyServer  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

from keyroll.generate import generate  # noqa: E402
from keyroll.inventory import EncryptionColumn  # noqa: E402
from keyroll.model import Label, SecretRef  # noqa: E402
from keyroll.reencrypt import Progress, Reencryptor  # noqa: E402
from keyroll.reencrypt.connect import open_database  # noqa: E402
from keyroll.reencrypt.database import Column, Database, Update, Window  # noqa: E402
from keyroll.reencrypt.headers import HeaderMatch  # noqa: E402
from keyroll.reencrypt.throttle import ThrottlePolicy  # noqa: E402
from keyroll.runtime.fields import FieldCipher  # noqa: E402
from keyroll.runtime.keysource import Key, StaticKeySource, StoreKeySource  # noqa: E402
from keyroll.stores.sqlite import SQLiteStore  # noqa: E402

CONTEXT = "datasources.password"
DSN_ENV = "BENCH_DATABASE_URL"
READER_INTERVAL = 0.002  # the reader asks ~500 times a second at most (an app, not a flood)
BASELINE_SECONDS = 10.0


# --- the concurrent reader (own process: no shared GIL with the job) ----------------------


def _reader(dsn: str, table: str, rows: int, stop: Any, out: Any) -> None:
    latencies: list[float] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        query = sql.SQL("SELECT payload FROM {} WHERE id = %s").format(sql.Identifier(table))
        conn.execute(query, (1,), prepare=True)
        deadline = time.monotonic() + 3600
        while not stop.is_set() and time.monotonic() < deadline:
            key = random.randint(1, rows)
            began = time.perf_counter()
            conn.execute(query, (key,), prepare=True).fetchone()
            latencies.append(time.perf_counter() - began)
            time.sleep(READER_INTERVAL)
    out.put(latencies)


class Reader:
    """Starts the reader process; `stop` returns its latencies (seconds); ``other`` is what the
    rest of the machine used meanwhile."""

    def __init__(self, dsn: str, table: str, rows: int) -> None:
        self.other = OtherCPU()
        self.other_share = 0.0
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.queue: Any = ctx.Queue()
        self.proc = ctx.Process(target=_reader, args=(dsn, table, rows, self.stop_event, self.queue))
        self.proc.start()

    def stop(self) -> list[float]:
        self.other_share = self.other.share()
        self.stop_event.set()
        latencies: list[float] = self.queue.get(timeout=120)
        self.proc.join(timeout=60)
        return latencies


def _cpu_ticks() -> dict[int, tuple[int, int]]:
    """Every process's (parent, user+system clock ticks), from /proc."""
    found: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return found


class OtherCPU:
    """CPU seconds used by processes outside this benchmark's own tree while it measures (the
    machine is shared: a busy neighbour shows here, next to the latencies it disturbed)."""

    def __init__(self) -> None:
        self.before = _cpu_ticks() if Path("/proc/self/stat").exists() else {}
        self.began = time.monotonic()

    def share(self) -> float:
        """Cores' worth of CPU the other processes used since this object was made."""
        if not self.before:
            return 0.0
        after = _cpu_ticks()
        mine = {os.getpid()}
        for _ in range(8):  # the tree: the reader, PostgreSQL and its backends, the probe
            mine |= {pid for pid, (parent, _) in after.items() if parent in mine}
        ticks = sum(t - self.before[pid][1] for pid, (_, t) in after.items()
                    if pid not in mine and pid in self.before)
        elapsed = time.monotonic() - self.began
        return ticks / os.sysconf("SC_CLK_TCK") / elapsed if elapsed > 0 else 0.0


def _pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000 if ordered else 0.0


# --- data -----------------------------------------------------------------------------------


def _load(conn: psycopg.Connection[Any], table: str, rows: int, cipher: FieldCipher) -> None:
    conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, name text NOT NULL, "
                         "payload bytea)").format(sql.Identifier(table)))
    with conn.cursor() as cur, cur.copy(
        sql.SQL("COPY {} (id, name, payload) FROM STDIN").format(sql.Identifier(table))
    ) as copy:
        for i in range(1, rows + 1):
            password = f"ds-password-{i}-{secrets.token_hex(8)}".encode()
            copy.write_row((i, f"datasource-{i}", cipher.encrypt(password, context=CONTEXT)))
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def _clone(conn: psycopg.Connection[Any], source: str, target: str, rows: int) -> None:
    conn.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM {} WHERE id <= %s").format(
        sql.Identifier(target), sql.Identifier(source)), (rows,))
    conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(sql.Identifier(target)))
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(target)))


# --- the two jobs --------------------------------------------------------------------------


@dataclass
class Outcome:
    rows: int
    seconds: float
    longest_ms: float
    reader: list[float]
    other: float = 0.0  # cores the rest of the machine used meanwhile

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def naive(dsn: str, table: str, cipher: FieldCipher) -> tuple[int, float, float]:
    """Seed 001's script: read every row, decrypt with the old key, encrypt, UPDATE each."""
    longest = 0.0
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        began = time.perf_counter()
        rows = conn.execute(sql.SQL("SELECT id, payload FROM {}").format(
            sql.Identifier(table))).fetchall()
        longest = time.perf_counter() - began
        update = sql.SQL("UPDATE {} SET payload = %s WHERE id = %s").format(sql.Identifier(table))
        for key, payload in rows:
            new = cipher.encrypt(cipher.decrypt(payload, context=CONTEXT), context=CONTEXT)
            began = time.perf_counter()
            conn.execute(update, (new, key))
            longest = max(longest, time.perf_counter() - began)
    return len(rows), time.perf_counter() - started, longest * 1000


class TimedDatabase(Database):
    """The real adapter; times every statement (each one is a whole transaction)."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.longest = 0.0

    def _timed(self, call: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        try:
            return call()
        finally:
            self.longest = max(self.longest, time.perf_counter() - began)

    def resolve(self, table: str, key: str, column: str) -> Column:
        return self.inner.resolve(table, key, column)

    def scan(self, column: Column, after: Any, limit: int, current: HeaderMatch) -> Window:
        result: Window = self._timed(lambda: self.inner.scan(column, after, limit, current))
        return result

    def compare_and_set(self, column: Column, updates: Sequence[Update]) -> int:
        result: int = self._timed(lambda: self.inner.compare_and_set(column, updates))
        return result

    def _bound(self, column: Column, after: Any, n: int) -> Any:
        return self._timed(lambda: self.inner._bound(column, after, n))

    def _count_range(self, column: Column, lower: Any, upper: Any, current: HeaderMatch) -> int:
        result: int = self._timed(lambda: self.inner._count_range(column, lower, upper, current))
        return result

    def _census_range(self, column: Column, lower: Any, upper: Any) -> Any:
        return self._timed(lambda: self.inner._census_range(column, lower, upper))

    def probe(self, column: Column, *, interval: float) -> Any:
        return self.inner.probe(column, interval=interval)

    def health(self) -> Any:
        return self._timed(self.inner.health)

    def close(self) -> None:
        self.inner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--naive-rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--pause-ms", type=int, default=0)
    parser.add_argument("--nice", type=int, default=0,
                        help="run keyroll's job at this CPU niceness (the reader keeps 0)")
    parser.add_argument("--replica-rows", type=int, default=100_000,
                        help="rows of the replica case (0: skip it)")
    parser.add_argument("--max-lag", type=float, default=1.0,
                        help="--max-lag of the replica case, seconds")
    parser.add_argument("--shared-buffers", default="128MB",
                        help="the server's shared_buffers (default: PostgreSQL's own default; "
                        "the test fixture's is 32MB)")
    args = parser.parse_args()
    naive_rows = args.naive_rows or args.rows
    load_before = os.getloadavg()

    server = PostgresServer().start()
    tmp = Path(tempfile.mkdtemp(prefix="keyroll-bench-"))
    try:
        with psycopg.connect(server.superuser_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(
                sql.Literal(args.shared_buffers)))
        server.pause()  # shared_buffers takes a restart
        server.resume()
        with psycopg.connect(server.superuser_dsn, autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
            # the test server logs every statement; a benchmark must not measure its logging
            admin.execute("ALTER DATABASE bench SET log_statement = 'none'")
        dsn = server.dsn("bench")

        store = SQLiteStore(tmp / "store.db", secrets.token_bytes(32))
        ref = SecretRef("prod", "field-encryption")
        old = store.put_version(ref, generate("key-32"))
        new = store.put_version(ref, generate("key-32"))
        store.set_labels(ref, expected={}, new={Label.CURRENT: new.number,
                                                Label.PREVIOUS: old.number})
        old_only = FieldCipher(StaticKeySource([Key(old.kid, store.read_value(ref, old.number))]))
        cipher = FieldCipher(StoreKeySource(store, ref, refresh_interval=float("inf")))

        t0 = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            _load(conn, "datasources", args.rows, old_only)
            _clone(conn, "datasources", "datasources_naive", naive_rows)
            _clone(conn, "datasources", "datasources_throttled", args.rows)
        print(f"loaded {args.rows:,} rows (+{naive_rows:,} for the naive script) in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)

        reader = Reader(dsn, "datasources", args.rows)
        time.sleep(BASELINE_SECONDS)
        baseline = reader.stop()
        other_base = reader.other_share

        reader = Reader(dsn, "datasources_naive", naive_rows)
        time.sleep(1.0)
        n_rows, n_seconds, n_longest = naive(dsn, "datasources_naive", cipher)
        naive_out = Outcome(n_rows, n_seconds, n_longest, reader.stop(), reader.other_share)
        print(f"naive: {n_rows:,} rows in {n_seconds:.1f} s", flush=True)

        timed: list[TimedDatabase] = []

        def connect(dsn_: str, env_var: str) -> Database:
            timed.append(TimedDatabase(open_database(dsn_, env_var=env_var)))
            return timed[-1]

        column = EncryptionColumn(table="datasources", column="payload", context=CONTEXT,
                                  database_env=DSN_ENV)
        job = Reencryptor(cipher, store=store, ref=ref, batch_size=args.batch_size,
                          pause=args.pause_ms / 1000, environ={DSN_ENV: dsn}, connect=connect)
        throttled_job = Reencryptor(cipher, store=store, ref=ref, batch_size=args.batch_size,
                                    pause=args.pause_ms / 1000, environ={DSN_ENV: dsn},
                                    connect=connect, throttle=ThrottlePolicy(),
                                    priority="idle")
        reader = Reader(dsn, "datasources", args.rows)
        time.sleep(1.0)
        if args.nice:
            os.nice(args.nice)  # this process only: the reader (spawned already) keeps 0
        began = time.perf_counter()
        report = job.run([column])
        k_seconds = time.perf_counter() - began
        ours = Outcome(report.columns[0].rewritten, k_seconds, timed[0].longest * 1000,
                       reader.stop(), reader.other_share)
        result = report.columns[0]
        print(f"keyroll: {ours.rows:,} rows in {k_seconds:.1f} s, remaining {result.remaining}, "
              f"failed {result.failed}, passes {result.passes}", flush=True)

        t_column = EncryptionColumn(table="datasources_throttled", column="payload",
                                    context=CONTEXT, database_env=DSN_ENV)
        # the machine is shared and its noise drifts: the reader alone again, just before
        reader = Reader(dsn, "datasources_throttled", args.rows)
        time.sleep(BASELINE_SECONDS / 2)
        baseline_near = reader.stop()
        other_near = reader.other_share
        reader = Reader(dsn, "datasources_throttled", args.rows)
        time.sleep(1.0)
        began = time.perf_counter()
        t_report = throttled_job.run([t_column])
        t_seconds = time.perf_counter() - began
        t_result = t_report.columns[0]
        throttled = Outcome(t_result.rewritten, t_seconds, timed[-1].longest * 1000,
                            reader.stop(), reader.other_share)
        (t_summary,) = t_report.throttle.values()
        print(f"keyroll throttled: {throttled.rows:,} rows in {t_seconds:.1f} s, remaining "
              f"{t_result.remaining}, failed {t_result.failed}; throttle {t_summary}",
              flush=True)
        if args.nice:
            print("note: with --nice the second baseline's reader inherits the niceness")
        reader = Reader(dsn, "datasources", args.rows)  # the machine is shared: measure again
        time.sleep(BASELINE_SECONDS)
        baseline_after = reader.stop()
        other_after = reader.other_share

        base_p50, base_p99 = _pct(baseline, 0.5), _pct(baseline, 0.99)
        print()
        print(f"PostgreSQL {server.bin_dir.parent.name}, {os.cpu_count()} cores, shared_buffers "
              f"{args.shared_buffers}, batch {args.batch_size}, pause {args.pause_ms} ms, job "
              f"niceness {args.nice}, bytea column, context AAD; load average before "
              f"{' '.join(f'{x:.2f}' for x in load_before)}, after "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print()
        print("| job | rows | seconds | rows/s | vs naive | longest transaction | "
              "reader p50 | reader p99 | p99 vs baseline | other processes |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| reader alone (baseline, before) | | {BASELINE_SECONDS:.0f} | | | | "
              f"{base_p50:.2f} ms | {base_p99:.2f} ms | 1.00x | {other_base:.2f} cores |")
        near_p99 = _pct(baseline_near, 0.99)
        print(f"| reader alone (just before the throttled run) | | {BASELINE_SECONDS / 2:.0f} | "
              f"| | | {_pct(baseline_near, 0.5):.2f} ms | {near_p99:.2f} ms | "
              f"{near_p99 / base_p99 if base_p99 else 0:.2f}x | {other_near:.2f} cores |")
        after_p99 = _pct(baseline_after, 0.99)
        print(f"| reader alone (again, after) | | {BASELINE_SECONDS:.0f} | | | | "
              f"{_pct(baseline_after, 0.5):.2f} ms | {after_p99:.2f} ms | "
              f"{after_p99 / base_p99 if base_p99 else 0:.2f}x | {other_after:.2f} cores |")
        for name, out in ((f"naive (seed 001), sample of {naive_rows:,}", naive_out),
                          ("keyroll reencrypt --no-throttle", ours),
                          ("keyroll reencrypt (default throttle)", throttled)):
            p99 = _pct(out.reader, 0.99)
            print(f"| {name} | {out.rows:,} | {out.seconds:.1f} | {out.rate:,.0f} | "
                  f"{out.rate / naive_out.rate:.2f}x | {out.longest_ms:.1f} ms | "
                  f"{_pct(out.reader, 0.5):.2f} ms | {p99:.2f} ms | "
                  f"{p99 / base_p99 if base_p99 else 0:.2f}x | {out.other:.2f} cores |")
        print()
        print(f"reader samples: baseline {len(baseline):,}, naive {len(naive_out.reader):,}, "
              f"keyroll {len(ours.reader):,}, throttled {len(throttled.reader):,}; keyroll's "
              f"longest compare-and-set {result.longest_batch_ms:.1f} ms; its time includes the "
              "census and two counts (before and after, windowed) and a checkpoint write at "
              "most every second; the throttled run's also its 3 s baseline")
        print(f"throttle: probe baseline p99 {t_summary['baseline_p99_ms']} ms, target "
              f"{t_summary['target_p99_ms']} ms, probe p99 during {t_summary['probe_p99_ms']} "
              f"ms, slowed {t_summary['backoffs']} times, paused {t_summary['paused_seconds']} "
              f"s, final batch {t_summary['final_batch']}")
        speedup = throttled.rate / naive_out.rate if naive_out.rate else 0.0
        t_p99 = _pct(throttled.reader, 0.99)
        slowdown = t_p99 / base_p99 if base_p99 else 0.0
        print()
        print(f"target 1: throttled rows/s >= 5x naive: {speedup:.2f}x -> "
              f"{'MET' if speedup >= 5 else 'NOT MET'}")
        print(f"target 2: reader p99 during the throttled job <= 1.5x baseline: "
              f"{slowdown:.2f}x ({t_p99:.2f} ms vs {base_p99:.2f} ms) -> "
              f"{'MET' if slowdown <= 1.5 else 'NOT MET'}")
        near = t_p99 / near_p99 if near_p99 else 0.0
        print(f"          against the reader alone just before the throttled run: {near:.2f}x "
              f"({t_p99:.2f} ms vs {near_p99:.2f} ms) -> {'MET' if near <= 1.5 else 'NOT MET'}")
        store.close()
    finally:
        server.stop()
        for path in tmp.glob("*"):
            path.unlink()
        tmp.rmdir()
    if args.replica_rows:
        replica_case(args.replica_rows, args.batch_size, args.max_lag)


# --- the replica case -------------------------------------------------------------------------

REPLAY_PAUSE_AFTER = 0.2   # seconds after the job's first batch
REPLAY_PAUSE_FOR = 4.0     # seconds the replica stops replaying


def replica_case(rows: int, batch_size: int, max_lag: float) -> None:
    """A throttled job beside a streaming replica whose replay stops for a while."""
    primary = PostgresServer().start()
    standby: StandbyServer | None = None
    tmp = Path(tempfile.mkdtemp(prefix="keyroll-bench-"))
    try:
        with psycopg.connect(primary.superuser_dsn, autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
            admin.execute("ALTER DATABASE bench SET log_statement = 'none'")
        dsn = primary.dsn("bench")
        store = SQLiteStore(tmp / "replica-store.db", secrets.token_bytes(32))
        ref = SecretRef("prod", "field-encryption")
        old = store.put_version(ref, generate("key-32"))
        new = store.put_version(ref, generate("key-32"))
        store.set_labels(ref, expected={}, new={Label.CURRENT: new.number,
                                                Label.PREVIOUS: old.number})
        old_only = FieldCipher(StaticKeySource([Key(old.kid, store.read_value(ref, old.number))]))
        cipher = FieldCipher(StoreKeySource(store, ref, refresh_interval=float("inf")))
        with psycopg.connect(dsn, autocommit=True) as conn:
            _load(conn, "datasources", rows, old_only)
        standby = StandbyServer(primary).start()

        events: list[tuple[float, int, str | None]] = []
        started = time.monotonic()

        first_batch = threading.Event()

        def progress(update: Progress) -> None:
            events.append((time.monotonic() - started, update.rewritten, update.throttled))
            first_batch.set()

        delays: list[float] = []
        stop = threading.Event()

        def replica_side() -> None:
            assert standby is not None
            first_batch.wait(600)
            stop.wait(REPLAY_PAUSE_AFTER)
            standby.pause_replay()
            paused_until = time.monotonic() + REPLAY_PAUSE_FOR
            resumed = False
            for _ in range(100_000):
                if stop.is_set() and resumed:
                    break
                if not resumed and time.monotonic() >= paused_until:
                    standby.resume_replay()
                    resumed = True
                delays.append(standby.replay_delay())
                time.sleep(0.1)
            if not resumed:
                standby.resume_replay()

        column = EncryptionColumn(table="datasources", column="payload", context=CONTEXT,
                                  database_env=DSN_ENV)
        job = Reencryptor(cipher, store=store, ref=ref, batch_size=batch_size,
                          environ={DSN_ENV: dsn}, progress=progress,
                          throttle=ThrottlePolicy(max_lag=max_lag))
        side = threading.Thread(target=replica_side, daemon=True)
        started = time.monotonic()
        side.start()
        report = job.run([column])
        seconds = time.monotonic() - started
        stop.set()
        side.join(timeout=60)
        (summary,) = report.throttle.values()
        result = report.columns[0]
        written_while_held = sum(
            max(0, b[1] - a[1]) for a, b in itertools.pairwise(events)
            if b[2] is not None and "replica lag" in b[2])
        print()
        print(f"replica case: {rows:,} rows, 1 streaming replica, replay paused "
              f"{REPLAY_PAUSE_AFTER:g} s after the job's first batch for "
              f"{REPLAY_PAUSE_FOR:.0f} s, --max-lag {max_lag:g} s")
        print()
        print("| job | rows | seconds | rows/s | holds | held | max lag the job saw | "
              "replica's own max delay | rows written while held |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| keyroll reencrypt --max-lag {max_lag:g} | {result.rewritten:,} | "
              f"{seconds:.1f} | {result.rewritten / seconds:,.0f} | {summary['holds']} | "
              f"{summary['held_seconds']:.1f} s | {summary['max_lag_s']} s | "
              f"{max(delays, default=0):.1f} s | {written_while_held} |")
        held = summary["holds"] >= 1 and written_while_held == 0
        print()
        print(f"--max-lag held (the job stopped writing while the replica lagged more than "
              f"{max_lag:g} s, and resumed after): {'YES' if held else 'NO'}; remaining "
              f"{result.remaining}, failed {result.failed}")
        store.close()
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()
        for path in tmp.glob("*"):
            path.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
