"""The re-encryption job: rewrite every row not under the current key, resumably, online.

For each column of an ``encryption-key`` class (``columns`` in keyroll.toml):

1. *Resolve* every column against its database first (unknown table or column: one-line
   `UsageError`, nothing written anywhere).
2. *Scan* in key order, one keyset window of ``batch_size`` rows at a time; the database
   returns ciphertexts only for rows whose header is not the current kid's
   (`keyroll.reencrypt.headers`), so up-to-date rows cost a key each.
3. *Rewrite* each stale value: decrypt under any retained key (or a legacy Fernet key),
   encrypt under the current one, same form (binary or ``kr1.`` text), same AAD context.
   A value no key opens is reported by its row key (never its content) and skipped.
4. *Compare-and-set* the batch in one short transaction: ``WHERE key = ? AND col = old``.
   A row the application wrote in between is left alone (its new value is the truth; if it
   is still stale, the next pass takes it).
5. *Checkpoint* the position in the store (``reencrypt:{env}/{class}:{table}.{column}``) after
   the first batch, then at most every ``checkpoint_every`` seconds (default 1 s: a store
   write per batch cost more than the batch), and when the job stops on an error: a killed
   job resumes after the last checkpoint and replays at most that second of batches, which is
   harmless: their rows are current now, so the scan skips them.
6. When a pass ends, *count* what is still stale. Rows can appear behind the cursor (an
   application process that has not refreshed its keys yet wrote under the old key, or a
   compare-and-set lost), so another full pass runs, up to ``max_passes``.

The job pins its key set for the whole run (a promotion in the middle is picked up by the next
run). The core reports progress through a callback; the CLI draws the progress bar.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keyroll import escrow
from keyroll.errors import UsageError
from keyroll.inventory import EncryptionColumn
from keyroll.model import SecretRef, format_kid
from keyroll.reencrypt.connect import open_database
from keyroll.reencrypt.database import Column, Database, KeyValue, Pace, Update, Window
from keyroll.reencrypt.headers import HeaderMatch
from keyroll.reencrypt.priority import check_priority, run_at
from keyroll.reencrypt.throttle import Decision, Governor, ThrottlePolicy
from keyroll.reencrypt.writer import BatchWriter, Written
from keyroll.runtime.fields import Context, FieldCipher
from keyroll.stores.base import Store

__all__ = [
    "MAX_REPORTED_KEYS",
    "ColumnResult",
    "Progress",
    "ProgressCallback",
    "ReencryptReport",
    "Reencryptor",
    "checkpoint_key",
    "row_context",
]

#: At most this many failing row keys are listed per column (the count is always exact).
MAX_REPORTED_KEYS = 1000
_KEY_PLACEHOLDER = "{key}"


def checkpoint_key(ref: SecretRef, table: str, column: str) -> str:
    """The store's bookkeeping key of one column's checkpoint."""
    return f"reencrypt:{ref}:{table}.{column}"


def row_context(template: str | None, key: KeyValue) -> Context:
    """The AAD context of one row, from the column's ``context`` setting.

    ``context`` lists the parts the application passes to `FieldCipher` (its ``context=``),
    separated by commas; a part ``{key}`` is the row's key (``"users,email,{key}"`` is the
    application's ``context=("users", "email", user.id)``; an int and its decimal text encode
    the same). Without commas the whole string is one part (``"users.phone"``); unset means
    no context.
    """
    if template is None:
        return None
    if _KEY_PLACEHOLDER not in template:
        return _fixed_context(template)
    parts: list[str | bytes | int] = []
    for raw in template.split(","):
        part = raw.strip()
        if part == _KEY_PLACEHOLDER:
            if isinstance(key, (int, bytes)) and not isinstance(key, bool):
                parts.append(key)
            else:
                parts.append(str(key))
        else:
            parts.append(part.replace(_KEY_PLACEHOLDER, str(key)))
    return parts[0] if len(parts) == 1 else tuple(parts)


@functools.lru_cache(maxsize=64)
def _fixed_context(template: str) -> Context:
    """A context without ``{key}``: the same for every row, parsed once."""
    parts = tuple(part.strip() for part in template.split(","))
    return parts[0] if len(parts) == 1 else parts


def _key_text(key: KeyValue) -> str:
    """How a row key is shown in reports (its value, never the row's content)."""
    return key.hex() if isinstance(key, bytes) else str(key)


def _dump_key(key: KeyValue) -> dict[str, Any]:
    if isinstance(key, bool):
        return {"str": str(key)}
    if isinstance(key, int):
        return {"int": key}
    if isinstance(key, bytes):
        return {"hex": key.hex()}
    return {"str": str(key)}  # text, uuid.UUID, dates: the database casts it back


def _load_key(doc: Mapping[str, Any]) -> KeyValue:
    if "int" in doc:
        return int(doc["int"])
    if "hex" in doc:
        return bytes.fromhex(str(doc["hex"]))
    return str(doc["str"])


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report, after each batch.

    Attributes:
        column: ``table.column``.
        done: stale rows handled so far in this run (rewritten, lost to the app, failed).
        total: stale rows counted when the column started (grows if more appear).
        rewritten: rows now under the current key.
        failed: rows no retained key opens.
        conflicts: rows the application changed meanwhile (left alone).
        passes: the pass under way (1-based).
        batch_size: the throttle's current batch size (the configured one unthrottled).
        pause_ms: the pause before the next batch.
        probe_p99_ms: the latency probe's recent p99, when throttled.
        target_p99_ms: the p99 the throttle keeps the probe under.
        throttled: why the throttle slowed or holds the job now (None: it does not).
    """

    column: str
    done: int
    total: int
    rewritten: int
    failed: int
    conflicts: int
    passes: int
    batch_size: int = 0
    pause_ms: float = 0.0
    probe_p99_ms: float | None = None
    target_p99_ms: float | None = None
    throttled: str | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass
class ColumnResult:
    """What the job did to one column (no values in it: counts and row keys only).

    Attributes:
        table, key, column: from the inventory.
        form: ``binary``, ``text`` or ``mixed`` (SQLite).
        census: rows per kid (8 hex digits), ``legacy-fernet``, ``malformed``, ``null``.
        stale_before: rows not under the current key when the column started.
        rewritten: rows rewritten under the current key by this run.
        conflicts: compare-and-sets lost to an application write (never overwritten).
        failed: rows no retained key opens (after the last pass).
        failed_keys: their row keys (at most `MAX_REPORTED_KEYS`).
        remaining: rows still not under the current key at the end.
        passes: scans run.
        resumed_after: the checkpoint's row key this run resumed after, if any.
        seconds: wall time spent on the column.
        longest_batch_ms: the longest compare-and-set transaction, as the client saw it.
    """

    table: str
    key: str
    column: str
    form: str = "unknown"
    census: dict[str, int] = field(default_factory=dict)
    stale_before: int = 0
    rewritten: int = 0
    conflicts: int = 0
    failed: int = 0
    failed_keys: list[str] = field(default_factory=list)
    remaining: int = 0
    passes: int = 0
    resumed_after: str | None = None
    seconds: float = 0.0
    longest_batch_ms: float = 0.0
    missing_keys: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``table.column``."""
        return f"{self.table}.{self.column}"

    @property
    def rows_per_second(self) -> float:
        """Rewritten rows per second of this run."""
        return self.rewritten / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "table": self.table, "key": self.key, "column": self.column, "form": self.form,
            "census": self.census, "stale_before": self.stale_before,
            "rewritten": self.rewritten, "conflicts": self.conflicts, "failed": self.failed,
            "failed_keys": self.failed_keys, "remaining": self.remaining, "passes": self.passes,
            "resumed_after": self.resumed_after, "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "longest_batch_ms": round(self.longest_batch_ms, 1),
            "missing_keys": self.missing_keys,
        }


@dataclass
class ReencryptReport:
    """The job's outcome.

    Attributes:
        secret: ``environment/class``.
        current_kid: the kid every row is rewritten under (8 hex digits).
        dry_run: counts only, nothing written.
        columns: one result per column.
        throttle: per database (by its DSN variable), what the throttle did
            (`keyroll.reencrypt.throttle.Throttle.summary`); empty when unthrottled.
        priority: the CPU priority the job ran at (`keyroll.reencrypt.priority`).
    """

    secret: str
    current_kid: str
    dry_run: bool
    columns: list[ColumnResult] = field(default_factory=list)
    throttle: dict[str, dict[str, Any]] = field(default_factory=dict)
    priority: str = "normal"

    @property
    def ok(self) -> bool:
        """True when nothing failed and (unless a dry run) nothing is left to rewrite."""
        if self.dry_run:
            return True
        return all(c.failed == 0 and c.remaining == 0 for c in self.columns)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (``--json``)."""
        return {
            "secret": self.secret, "current_kid": self.current_kid, "dry_run": self.dry_run,
            "ok": self.ok, "columns": [c.to_json() for c in self.columns],
            "rewritten": sum(c.rewritten for c in self.columns),
            "failed": sum(c.failed for c in self.columns),
            "remaining": sum(c.remaining for c in self.columns),
            "throttle": self.throttle, "priority": self.priority,
        }


@dataclass
class _Cursor:
    """Where one pass over one column stands."""

    name: str  # the checkpoint's key
    pass_number: int
    after: KeyValue | None  # the last committed window's last key
    failed: dict[str, None]  # row keys no key opens, across passes
    total: int
    failed_this_pass: int = 0
    saved: tuple[KeyValue, float] | None = None  # the position last checkpointed, and when


class Reencryptor:
    """Rewrites an encryption-key class's columns under its current key.

    Args:
        cipher: the class's `FieldCipher` (current + retained keys, optional legacy Fernet
            keys); its key set is read once and used for the whole run.
        store: where checkpoints live (`Store.put_meta`).
        ref: the secret (environment, class), for checkpoint names and the report.
        batch_size: rows per keyset window and per transaction.
        max_passes: full scans at most per column (see the module docstring, step 6).
        pause: seconds to sleep between batches, to leave room for the application (with a
            throttle: the least it pauses).
        throttle: adapt batch size and pause to the database's response
            (`keyroll.reencrypt.throttle`); None runs at ``batch_size`` and ``pause``.
        progress: called after every batch.
        checkpoint_every: seconds between two checkpoint writes (0: after every batch).
        priority: ``idle``, ``low`` or ``normal`` (`keyroll.reencrypt.priority`): the job's
            own CPU priority; other than ``normal`` it runs in a thread of its own.
        environ: where DSNs are read (default ``os.environ``).
        clock: monotonic seconds (timings in the report).
        sleep: how to pause.
        connect: opens a database from ``(dsn, env_var)`` (`open_database`; tests wrap it).
    """

    def __init__(
        self,
        cipher: FieldCipher,
        *,
        store: Store,
        ref: SecretRef,
        batch_size: int = 1000,
        max_passes: int = 3,
        pause: float = 0.0,
        throttle: ThrottlePolicy | None = None,
        progress: ProgressCallback | None = None,
        checkpoint_every: float = 1.0,
        priority: str = "normal",
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        connect: Callable[[str, str], Database] | None = None,
    ) -> None:
        if not 1 <= batch_size <= 100_000:
            raise UsageError("--batch-size must be between 1 and 100000 rows")
        if not 1 <= max_passes <= 100:
            raise UsageError("max passes must be between 1 and 100")
        if pause < 0:
            raise UsageError("the pause between batches cannot be negative")
        if not 0 <= checkpoint_every <= 3600:
            raise UsageError("the checkpoint interval must be between 0 and 3600 seconds")
        self.cipher = cipher
        self.store = store
        self.ref = ref
        self.batch_size = batch_size
        self.max_passes = max_passes
        self.pause = pause
        self.throttle = throttle if throttle is not None and throttle.enabled else None
        self._governors: dict[int, Governor] = {}
        self.progress = progress
        self.checkpoint_every = checkpoint_every
        self.priority = check_priority(priority)  # before anything connects
        self._stop = threading.Event()
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.sleep = sleep
        self.connect = connect or (lambda dsn, env_var: open_database(dsn, env_var=env_var))
        self.current = HeaderMatch.for_kid(cipher.current_kid)

    def run(self, columns: Sequence[EncryptionColumn], *, dry_run: bool = False) -> ReencryptReport:
        """Re-encrypt (or with ``dry_run``, count) every column, at the job's ``priority``.

        Raises:
            UsageError: a DSN variable is unset, a table or column is unknown or unsuitable
                (raised before anything is written).
            TargetError: a database failed mid-way (committed batches stay committed and the
                checkpoint says where to resume).
        """
        self._stop.clear()
        report = ReencryptReport(str(self.ref), self.current.kid_hex, dry_run)
        databases: dict[str, Database] = {}
        self._governors = {}
        try:
            resolved: list[tuple[EncryptionColumn, Database, Column]] = []
            for spec in columns:
                var = spec.dsn_var(self.ref.environment)
                db = databases.get(var)
                if db is None:
                    dsn = self.environ.get(var)
                    if not dsn:
                        raise UsageError(
                            f"{spec.table}.{spec.column}: {var} is not set; export "
                            "the application's database URL in it"
                        )
                    db = databases[var] = self.connect(dsn, var)
                resolved.append((spec, db, db.resolve(spec.table, spec.key, spec.column)))
            if not dry_run:  # probes start here, at the caller's priority, before the job's
                for _spec, db, column in resolved:
                    self._governor(db, column)

            def work() -> None:
                for spec, db, column in resolved:
                    result = ColumnResult(spec.table, spec.key, spec.column, column.form)
                    report.columns.append(result)
                    started = self.clock()
                    pace = None if dry_run else self._pace(db)
                    result.census = db.census(column, pace=pace)
                    result.missing_keys = self._missing_keys(result.census)
                    result.stale_before = db.count_stale(column, self.current, pace=pace)
                    if dry_run:
                        result.remaining = result.stale_before
                    else:
                        self._rewrite(spec, db, column, result, self._governor(db, column))
                    result.seconds = self.clock() - started

            _, report.priority = run_at("normal" if dry_run else self.priority, work,
                                        self._stop)
        finally:
            for var, db in databases.items():
                governor = self._governors.pop(id(db), None)
                if governor is not None:
                    governor.close()
                    report.throttle[var] = governor.summary()
                db.close()
        return report

    def _pace(self, db: Database) -> Pace | None:
        """How a throttled job paces its counts on ``db`` (None unthrottled)."""
        governor = self._governors.get(id(db))
        return None if governor is None else governor.pace

    def _governor(self, db: Database, column: Column) -> Governor | None:
        """The throttle of one database, started (with its baseline) before any column."""
        if self.throttle is None:
            return None
        governor = self._governors.get(id(db))
        if governor is None:
            sampler = db.probe(column, interval=self.throttle.probe_interval)
            governor = self._governors[id(db)] = Governor(
                self.throttle, max_batch=self.batch_size, min_pause=self.pause,
                sampler=sampler, health=db.health, clock=self.clock, sleep=self.sleep)
            governor.baseline()
        return governor

    def _missing_keys(self, census: Mapping[str, int]) -> list[dict[str, Any]]:
        """Kids in the data that no key of the run opens, with what the store knows of them:
        which version had it, its fingerprint, whether it was destroyed, and whether an
        escrow record can bring it back (`keyroll escrow restore`)."""
        held = {format_kid(k.kid) for k in self.cipher.source.snapshot().keys}
        versions = {v.kid_hex: v for v in self.store.list_versions(self.ref)}
        missing = []
        for kid, rows in sorted(census.items()):
            if len(kid) != 8 or kid in held:
                continue  # legacy-fernet, malformed, null buckets; or a key we hold
            version = versions.get(kid)
            record = None if version is None else escrow.get_record(self.store, self.ref,
                                                                     version.number)
            missing.append({
                "kid": kid, "rows": rows,
                "version": None if version is None else version.number,
                "fingerprint": None if version is None else version.fingerprint,
                "destroyed": None if version is None else version.destroyed,
                "escrowed_until": None if record is None else record.expires_at,
            })
        return missing

    # --- one column -----------------------------------------------------------------------

    def _load_checkpoint(self, name: str) -> KeyValue | None:
        text = self.store.get_meta(name)
        if not text:
            return None
        try:
            doc = json.loads(text)
            if doc.get("kid") != self.current.kid_hex:
                return None  # written for another current key: rows before it are stale
            return _load_key(doc["after"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # unreadable bookkeeping: start over (always safe)

    def _rewrite(self, spec: EncryptionColumn, db: Database, column: Column,
                 result: ColumnResult, governor: Governor | None = None) -> None:
        name = checkpoint_key(self.ref, spec.table, spec.column)
        after = self._load_checkpoint(name)
        if after is not None:
            result.resumed_after = _key_text(after)
        failed: dict[str, None] = {}
        total = result.stale_before
        for pass_number in range(1, self.max_passes + 1):
            result.passes = pass_number
            cursor = _Cursor(name, pass_number, after, failed, total)
            self._pass(spec, db, column, result, governor, cursor)
            total = cursor.total
            self.store.put_meta(name, None)  # pass complete
            resumed = pass_number == 1 and result.resumed_after is not None
            after = None
            result.remaining = db.count_stale(column, self.current, pace=self._pace(db))
            if result.remaining == 0:
                failed.clear()
                break
            if not resumed and result.remaining <= cursor.failed_this_pass:
                break  # only rows no key opens are left: another pass cannot help
        result.failed = min(len(failed), result.remaining) if failed else 0
        result.failed_keys = list(failed)[:MAX_REPORTED_KEYS]

    def _pass(self, spec: EncryptionColumn, db: Database, column: Column, result: ColumnResult,
              governor: Governor | None, cursor: _Cursor) -> None:
        """One scan of the column from ``cursor.after``: each window's stale values encrypted
        while the database writes the previous window's (`BatchWriter`)."""
        writer = BatchWriter(db, column, self.clock)
        batch = self.batch_size if governor is None else governor.last.batch
        try:
            window = db.scan(column, cursor.after, batch, self.current)
            for _batch in range(10**9):  # bounded by the table: keys strictly increase
                self._check_stop()
                batch_began = self.clock()
                if window.last_key is None:
                    break
                updates = self._reencrypt_window(spec, window, cursor)
                self._committed(writer.wait(), batch, column, result, governor, cursor)
                batch = self.batch_size if governor is None else governor.last.batch
                following = db.scan(column, window.last_key, batch, self.current)
                writer.submit(updates, window.last_key)
                window = following
                if governor is not None:
                    governor.after_batch(self.clock() - batch_began)
                elif self.pause:
                    self.sleep(self.pause)
            self._committed(writer.wait(), batch, column, result, governor, cursor)
        except BaseException:
            with contextlib.suppress(Exception):  # the batch in flight may yet have committed
                self._committed(writer.wait(), batch, column, result, governor, cursor)
            if cursor.after is not None and (cursor.saved is None
                                             or cursor.saved[0] != cursor.after):
                self._checkpoint(cursor)  # what is committed stays done
            raise
        finally:
            writer.close()

    def _committed(self, written: Written | None, batch: int, column: Column,
                   result: ColumnResult, governor: Governor | None, cursor: _Cursor) -> None:
        """Account for a batch the database committed: counts, checkpoint, progress."""
        if written is None:
            return
        result.longest_batch_ms = max(result.longest_batch_ms, written.seconds * 1000)
        result.rewritten += written.changed
        result.conflicts += written.sent - written.changed
        cursor.after = written.last_key
        if cursor.saved is None or self.clock() - cursor.saved[1] >= self.checkpoint_every:
            self._checkpoint(cursor)
        done = result.rewritten + result.conflicts + cursor.failed_this_pass
        cursor.total = max(cursor.total, done)
        pause = self.pause if governor is None else governor.last.pause  # the throttle's
        report = functools.partial(
            self._report, Progress(column.label, done, cursor.total, result.rewritten,
                                   len(cursor.failed), result.conflicts, cursor.pass_number,
                                   batch_size=batch, pause_ms=pause * 1000),
            governor)
        report()
        if governor is not None:
            governor.notify = report

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise KeyboardInterrupt  # the caller's thread was interrupted: stop between batches

    def _checkpoint(self, cursor: _Cursor) -> None:
        assert cursor.after is not None
        self.store.put_meta(cursor.name, json.dumps({
            "kid": self.current.kid_hex, "after": _dump_key(cursor.after),
            "pass": cursor.pass_number,
        }))
        cursor.saved = (cursor.after, self.clock())

    def _report(self, base: Progress, governor: Governor | None,
                decision: Decision | None = None) -> None:
        """Tell the progress callback, with the throttle's state (and decision, if any)."""
        if self.progress is None:
            return
        throttle = None if governor is None else governor.throttle
        self.progress(dataclasses.replace(
            base,
            batch_size=base.batch_size if decision is None else decision.batch,
            pause_ms=base.pause_ms if decision is None else decision.pause * 1000,
            probe_p99_ms=None if throttle is None else throttle.p99_ms,
            target_p99_ms=None if throttle is None else throttle.target_ms,
            throttled=None if decision is None else decision.reason))

    def _reencrypt_window(self, spec: EncryptionColumn, window: Window,
                          cursor: _Cursor) -> list[Update]:
        """The window's stale values under the current key; rows no retained key opens (or
        not a ciphertext at all: a number in the column) are counted as failed."""
        rows = [(key, value) for key, value in window.stale if isinstance(value, (bytes, str))]
        if len(rows) < len(window.stale):
            for key, value in window.stale:
                if not isinstance(value, (bytes, str)):
                    self._failed(cursor, key)
        news = self.cipher.reencrypt_many(
            [(value, row_context(spec.context, key)) for key, value in rows])
        updates: list[Update] = []
        for (key, value), new in zip(rows, news, strict=True):
            if new is None:
                self._failed(cursor, key)
            else:
                updates.append(Update(key, value, new))
        return updates

    @staticmethod
    def _failed(cursor: _Cursor, key: KeyValue) -> None:
        cursor.failed_this_pass += 1
        cursor.failed.setdefault(_key_text(key))
