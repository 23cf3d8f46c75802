"""The long-running rotator behind ``keyroll serve``: `Engine.advance` on a jittered tick.

One tick at a time per store: before a tick the rotator takes a store-wide lease, the lock of
the reserved secret `ROTATOR_REF`, with the same `Lease` (random holder token, fencing
generation, heartbeat) that guards a secret's rotation. A replica that finds it held skips the
tick (``held``) and tries again at the next one, so several replicas never tick at once; the
per-secret leases still keep one writer per rotation if a rotator lease expires mid-tick.

Stopping: `Rotator.stop` (the CLI calls it on SIGTERM and SIGINT) is asked by the engine
between steps, so the step in progress finishes and is saved, no further step starts, the
lease is released, and `Rotator.run` returns. Nothing is left half done: a step is recorded
before its side effect and every step is idempotent, so the next tick resumes it.

After each successful tick the rotator writes `LAST_TICK_KEY` into the store's bookkeeping
(the dashboard's ``keyroll_rotator_last_tick_timestamp_seconds`` and ``/healthz`` read it).
Every loop is bounded: ``max_ticks`` and ``deadline`` end `run` (tests use both); the wait
between ticks is cut into short sleeps that check the stop flag.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from keyroll.audit import Journal, VerifyReport
from keyroll.audit_check import check_full, check_recent, last_full_check
from keyroll.errors import KeyrollError, LockHeld, UsageError
from keyroll.model import SecretRef, utcnow
from keyroll.rotation.lock import LEASE_TTL, Lease
from keyroll.stores.base import Store

if TYPE_CHECKING:
    from keyroll.rotation.engine import AdvanceReport, Engine

__all__ = ["LAST_TICK_KEY", "ROTATOR_REF", "Rotator", "TickResult", "last_tick"]

#: The reserved secret whose lock is the store-wide rotator lease (never holds a value; no
#: inventory may define an environment of this name: the dot keeps it out of ordinary names).
ROTATOR_REF = SecretRef("keyroll.internal", "rotator")
#: Bookkeeping key: the last successful tick (JSON: ``at``, ``host``, counts).
LAST_TICK_KEY = "rotator:last-tick"
_NAP = 0.2  # the longest single sleep: how soon a stop request is noticed while waiting


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick did.

    Attributes:
        at: when it began (wall clock).
        ran: False when another replica held the rotator lease (nothing was done).
        report: the engine's report, when it ran.
        error: a one-line reason when the tick could not run (store unreachable, lease lost).
        journal: the journal verification, when this tick ran one.
        stopped: a stop request cut the tick short between steps.
    """

    at: datetime
    ran: bool
    report: AdvanceReport | None = None
    error: str | None = None
    journal: VerifyReport | None = None
    stopped: bool = False


def last_tick(store: Store) -> datetime | None:
    """When the last successful tick began, as the rotator recorded it (None: never)."""
    text = store.get_meta(LAST_TICK_KEY)
    if not text:
        return None
    try:
        return datetime.fromisoformat(json.loads(text)["at"])
    except (ValueError, KeyError, TypeError):
        return None


class Rotator:
    """Ticks `Engine.advance` under the store-wide lease until stopped or bounded.

    Args:
        engine: the engine (its ``stopping`` is set to this rotator's stop flag).
        interval: time between ticks.
        jitter: each wait is ``interval × (1 ± jitter)``, so replicas started together drift
            apart (0 ≤ jitter < 1).
        environments: only these environments (default: all).
        start_due: also start due rotations where ``auto`` (as ``keyroll advance``).
        clock: the wall clock (leases, the deadline, ``last tick``); tests pass their own.
        sleep: how a wait passes (default `time.sleep`); called with at most 0.2 s at a time.
        max_ticks: stop after this many ticks (None: no limit).
        deadline: stop once this much time has passed since `run` began (None: no limit).
        verify_every: how often a tick runs a full check of the journal (None: never); every
            other tick checks only what follows the verified-head checkpoint
            (`keyroll.audit_check`).
        after_tick: called with every `TickResult` (the CLI prints it and sends events).
        lease_ttl: the rotator lease's length (renewed by a heartbeat while a tick runs).
        rng: the jitter's randomness (tests pass a seeded one).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        interval: timedelta = timedelta(minutes=1),
        jitter: float = 0.1,
        environments: Collection[str] | None = None,
        start_due: bool = True,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        max_ticks: int | None = None,
        deadline: timedelta | None = None,
        verify_every: timedelta | None = timedelta(hours=1),
        after_tick: Callable[[TickResult], None] = lambda _result: None,
        lease_ttl: timedelta = LEASE_TTL,
        rng: random.Random | None = None,
    ) -> None:
        if interval <= timedelta(0):
            raise UsageError("the rotator's interval must be positive (e.g. 60s)")
        if not 0 <= jitter < 1:
            raise UsageError("the rotator's jitter must be at least 0 and below 1 (e.g. 0.1)")
        if max_ticks is not None and max_ticks < 1:
            raise UsageError("--max-ticks must be at least 1")
        self.engine = engine
        self.store = engine.store
        self.interval = interval
        self.jitter = jitter
        self.environments = environments
        self.start_due = start_due
        self.clock = clock
        self.sleep = sleep
        self.max_ticks = max_ticks
        self.deadline = deadline
        self.verify_every = verify_every
        self.after_tick = after_tick
        self.lease_ttl = lease_ttl
        self._rng = rng or random.SystemRandom()
        self._token = Lease.new_token()
        self._stop = False
        engine.stopping = self.stopping

    # --- stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the rotator to stop after the step in progress (safe in a signal handler)."""
        self._stop = True

    def stopping(self) -> bool:
        return self._stop

    # --- one tick -------------------------------------------------------------------------

    def _lease(self) -> Lease:
        return Lease(self.store, ROTATOR_REF, "rotator", token=self._token, ttl=self.lease_ttl,
                     clock=self.clock)

    def tick(self) -> TickResult:
        """Run one tick if no other replica is ticking; record it in the bookkeeping."""
        at = self.clock()
        with ExitStack() as stack:
            try:
                lease = stack.enter_context(self._lease())  # acquire, heartbeat, release
            except LockHeld:
                return TickResult(at, ran=False)
            except KeyrollError as exc:
                return TickResult(at, ran=False, error=str(exc))
            try:
                report = self.engine.advance(start_due=self.start_due,
                                             environments=self.environments)
                journal = self._verify_journal(at)
                lease.check()  # still ours: only then is this tick the last one on record
                self.store.put_meta(LAST_TICK_KEY, json.dumps({
                    "at": at.isoformat(), "host": lease.holder.host, "pid": lease.holder.pid,
                    "moved": len(report.moved), "started": len(report.started),
                    "waiting": len(report.waiting), "failed": len(report.failed),
                    "busy": len(report.busy),
                }, sort_keys=True))
            except KeyrollError as exc:  # LeaseLost, the store gone: the next tick retries
                return TickResult(at, ran=True, error=str(exc), stopped=self._stop)
            return TickResult(at, ran=True, report=report, journal=journal, stopped=self._stop)
        raise AssertionError("unreachable")  # pragma: no cover  (ExitStack never swallows)

    def _verify_journal(self, at: datetime) -> VerifyReport | None:
        """Every tick: the incremental check, which moves the verified-head checkpoint; a full
        check when the last one recorded in the store (by any replica or `keyroll audit
        verify --full`) is ``verify_every`` old. Returns the report of a full check, or of an
        incremental one that found something new (a failed full check is reported once, on
        the tick that ran it, not on every tick after it)."""
        if self._stop:
            return None
        journal = Journal(self.store, actor=self.engine.actor)
        if self.verify_every is not None:
            last = last_full_check(self.store)
            if last is None or at - last.at >= self.verify_every:
                return check_full(journal, now=at).report
        check = check_recent(journal, advance=True, now=at)
        if check.ok or (check.last_full is not None and not check.last_full.ok):
            return None
        return check.report

    # --- the loop -------------------------------------------------------------------------

    def next_wait(self) -> float:
        """Seconds until the next tick: the interval, jittered."""
        spread = self._rng.uniform(-self.jitter, self.jitter)
        return self.interval.total_seconds() * (1 + spread)

    def _wait(self, seconds: float, until: datetime | None) -> None:
        """Sleep ``seconds`` in short naps, waking early on a stop request or the deadline."""
        left = seconds
        for _ in range(int(seconds / _NAP) + 2):  # bounded: the naps add up to ``seconds``
            if self._stop or left <= 0 or (until is not None and self.clock() >= until):
                return
            nap = min(_NAP, left)
            self.sleep(nap)
            left -= nap

    def run(self) -> list[TickResult]:
        """Tick until stopped, ``max_ticks`` or ``deadline``; return every tick's result."""
        began = self.clock()
        until = began + self.deadline if self.deadline is not None else None
        results: list[TickResult] = []
        while not self._stop:
            if until is not None and self.clock() >= until:
                break
            result = self.tick()
            results.append(result)
            self.after_tick(result)
            if self.max_ticks is not None and len(results) >= self.max_ticks:
                break
            self._wait(self.next_wait(), until)
        return results
