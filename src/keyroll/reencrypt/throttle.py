"""The adaptive throttle of a re-encryption job: slow down when the database feels it.

Like gh-ost and pt-online-schema-change, the job watches what the application would feel and
adapts its batch size and the pause between batches:

- **a probe query's latency**, measured by a sampler that runs beside the job (on PostgreSQL
  a separate process with its own connection, so the job's own CPU use does not skew the
  clock: `keyroll.reencrypt.probe`). Before the first batch the sampler measures a
  *baseline* with the job idle; the target is ``max_p99_ms`` if given, else
  ``max_slowdown × baseline p99`` (default 1.5×);
- **sessions waiting on a lock** (``pg_stat_activity``);
- **replication lag** where replicas exist (``pg_stat_replication``): the seconds since the
  oldest WAL position the job saw written that the slowest replica has not replayed yet
  (`LagTracker`), or the replica's own ``replay_lag`` if larger.

The controller (`Throttle`) sets a *sleep ratio* (gh-ost's nice ratio): after a batch that
took ``t`` seconds of work the job sleeps ``ratio × t`` (at least ``--pause-ms``, at most
``max_pause``), so its duty cycle is ``1 / (1 + ratio)`` whatever the machine's speed. It
adapts the ratio like TCP's congestion window (additive increase, multiplicative decrease),
starting gently: at ``initial_ratio`` 1.0 (half the time idle), because every batch run
before the probe has judged it counts in the application's tail.

It judges once per ``window`` fresh probe samples (200: about a second and a half at the
default interval), each judgement on samples of its own. A p99 allows 1 % of the samples
over the target, and a tail estimated from a few hundred samples is noisy: the
second-largest of 200 samples (what a plain p99 of 200 is) exceeds 1.5× the baseline's p99
in a tenth of the windows or more for a heavy tail even when nothing changed (Pareto of
shape 2: 11 %), so a controller reading it slows down for noise alone, and its ratio wanders
whatever the job does. So the throttle slows down only on *evidence*: when more samples are
over the target than a p99 exactly at target would give with a chance of 1 %
(`exceedances_allowed`: 7 of 200). Then it multiplies the ratio by 1.5 (plus 0.2, up
to `MAX_RATIO`) and shrinks the batch by a quarter (down to ``min_batch``: shorter bursts).
When the window's p99 is under 80 % of the target it lowers the ratio by 15 % or by
``ratio_step``, whichever is more (a step of 0.1 near the operating point, down to 0), and
grows the batch back by a tenth; in between it keeps what it has.
Lag over ``max_lag`` or too many lock waiters *hold* the job (pause repeatedly, nothing
written) until they recover, at most ``max_hold`` seconds, then it stops with an error (the
checkpoint lets the next run resume).

Clocks and sleeps are the job's parameters; the controller itself never sleeps or reads a
clock, so it is tested with plain numbers.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from keyroll.errors import UsageError

__all__ = [
    "MAX_RATIO",
    "DatabaseHealth",
    "Decision",
    "Governor",
    "Health",
    "LagTracker",
    "ProbeSampler",
    "Throttle",
    "ThrottlePolicy",
    "exceedances_allowed",
    "percentile",
]


#: The largest sleep ratio: the job then works 1/21 of the time.
MAX_RATIO = 20.0
#: The probe's p99 under this fraction of the target lets the job speed up.
_INCREASE_BELOW = 0.8
#: The share of samples a p99 target allows over it.
_TAIL = 0.01
#: The chance, per judgement, that a job keeping the probe's p99 exactly at target is slowed.
_FALSE_ALARM = 0.01


@functools.cache
def exceedances_allowed(n: int) -> int:
    """The fewest samples over target, of ``n``, that make the throttle slow down: a p99 exactly
    at target (1 % of samples over it) gives this many or more with a chance under 1 %
    (the binomial distribution's upper tail)."""
    pmf = (1.0 - _TAIL) ** n  # P(K = 0)
    below = 0.0
    for k in range(n + 1):
        below += pmf
        if 1.0 - below < _FALSE_ALARM:
            return k + 1
        pmf *= (n - k) / (k + 1) * _TAIL / (1.0 - _TAIL)
    return n + 1


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p`` quantile (0..1) of ``values``: the nearest-rank value (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """What the throttle keeps within bounds (CLI: ``--max-p99-ms``, ``--max-slowdown``,
    ``--max-lag``, ``--max-waiting``, ``--no-throttle``).

    Attributes:
        enabled: False runs at full speed (the batch size and ``--pause-ms`` as given).
        max_p99_ms: the probe's p99 target in milliseconds (overrides ``max_slowdown``).
        max_slowdown: the target as a multiple of the baseline p99.
        max_lag: seconds of replication lag that hold the job.
        max_waiting: sessions waiting on a lock that hold the job.
        min_batch: the smallest batch the throttle shrinks to.
        max_pause: the longest pause between batches, seconds.
        max_hold: how long a hold may last before the job stops, seconds.
        baseline_seconds: how long the baseline is measured with the job idle.
        window: fresh probe samples each judgement is made on.
        probe_interval: seconds between two probes.
        initial_ratio: the sleep ratio the job starts with.
        ratio_step: the least the ratio drops by when the probe is well under target.
    """

    enabled: bool = True
    max_p99_ms: float | None = None
    max_slowdown: float = 1.5
    max_lag: float = 5.0
    max_waiting: int = 5
    min_batch: int = 50
    max_pause: float = 1.0
    max_hold: float = 600.0
    baseline_seconds: float = 3.0
    window: int = 200
    probe_interval: float = 0.005
    initial_ratio: float = 1.0
    ratio_step: float = 0.1

    def __post_init__(self) -> None:
        if self.max_p99_ms is not None and not 0 < self.max_p99_ms <= 60_000:
            raise UsageError("--max-p99-ms must be between 0 and 60000 milliseconds")
        if not 1.0 <= self.max_slowdown <= 100:
            raise UsageError("--max-slowdown must be between 1.0 and 100")
        if not 0 < self.max_lag <= 86_400:
            raise UsageError("--max-lag must be between 0 and 86400 seconds")
        if not 0 <= self.max_waiting <= 10_000:
            raise UsageError("--max-waiting must be between 0 and 10000 sessions")
        if self.min_batch < 1 or self.max_pause < 0 or self.max_hold <= 0:
            raise UsageError("throttle bounds must be positive")
        if not 0 <= self.initial_ratio <= MAX_RATIO or not 0 < self.ratio_step <= MAX_RATIO:
            raise UsageError("throttle ratios must be between 0 and 20")
        if self.window < 10 or self.baseline_seconds < 0 or self.probe_interval <= 0:
            raise UsageError("throttle window and baseline must be positive")


@dataclass(frozen=True, slots=True)
class Health:
    """One reading of the database between two batches.

    Attributes:
        probe_ms: probe latencies (ms) measured since the previous reading.
        waiting: sessions waiting on a lock (None when not measurable).
        lag: replication lag in seconds of the slowest replica (None without replicas or
            without the privilege to see them).
        replicas: replicas streaming from the database (None when not measurable).
    """

    probe_ms: Sequence[float] = ()
    waiting: int | None = None
    lag: float | None = None
    replicas: int | None = None


@dataclass(frozen=True, slots=True)
class DatabaseHealth:
    """What a database adapter reads between batches (`Database.health`).

    Attributes:
        waiting: sessions of the database waiting on a lock (not counting the job's).
        wal_position: the primary's current WAL position, bytes.
        replicas: replicas streaming from it.
        replayed: the slowest replica's replay position, bytes (None when no replica or not
            visible: PostgreSQL shows it to superusers and ``pg_monitor`` members only).
    """

    waiting: int | None = None
    wal_position: int | None = None
    replicas: int = 0
    replayed: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the job does next: the next batch's size, the pause before it, and why.

    ``hold`` is True when nothing may be written yet (lag or lock waiters over their bound):
    the job pauses and reads the health again before writing.
    """

    batch: int
    pause: float
    reason: str | None = None
    hold: bool = False


class ProbeSampler(Protocol):
    """Runs a probe query beside the job; `drain` returns the latencies (ms) since last."""

    def drain(self) -> list[float]: ...

    def close(self) -> None: ...


class LagTracker:
    """Replication lag in seconds, from the primary alone.

    Each reading gives the primary's current WAL position and the slowest replica's replay
    position (bytes). The tracker remembers when it first saw each position written; the lag
    is how long ago the oldest position the replica has not replayed yet was first seen. So a
    replica that stops replaying shows a lag that grows with time, even though its own
    ``replay_lag`` column stops updating.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.seen: deque[tuple[float, int]] = deque(maxlen=limit)

    def observe(self, now: float, current: int, replayed: int | None) -> float:
        if not self.seen or current > self.seen[-1][1]:
            self.seen.append((now, current))
        if replayed is None:
            return 0.0
        while self.seen and self.seen[0][1] <= replayed:
            self.seen.popleft()
        return now - self.seen[0][0] if self.seen else 0.0


@dataclass
class Throttle:
    """The controller: feed it the baseline, then one `Health` per batch (see module doc)."""

    policy: ThrottlePolicy
    max_batch: int
    min_pause: float = 0.0
    batch: int = 0
    ratio: float = 0.0
    pause: float = 0.0
    baseline_p99_ms: float | None = None
    baseline_samples: int = 0
    samples: deque[float] = field(default_factory=deque)
    since_change: int = 0
    judged_p99_ms: float | None = None
    backoffs: int = 0
    holds: int = 0
    held_seconds: float = 0.0
    paused_seconds: float = 0.0
    max_lag_seen: float | None = None
    max_waiting_seen: int | None = None
    replicas: int | None = None
    all_samples: list[float] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.batch = self.max_batch
        self.ratio = self.policy.initial_ratio
        self.pause = self.min_pause
        self.samples = deque(maxlen=self.policy.window)

    @property
    def target_ms(self) -> float | None:
        if self.policy.max_p99_ms is not None:
            return self.policy.max_p99_ms
        if self.baseline_p99_ms is None:
            return None
        return self.baseline_p99_ms * self.policy.max_slowdown

    def set_baseline(self, probe_ms: Sequence[float]) -> None:
        """The probe's latencies with the job idle (no baseline without samples)."""
        if probe_ms:
            self.baseline_p99_ms = percentile(probe_ms, 0.99)
            self.baseline_samples = len(probe_ms)

    @property
    def p99_ms(self) -> float | None:
        """The probe's p99 over the samples since the last judgement (the last judged window's
        until a quarter of a new one is in)."""
        if len(self.samples) >= max(1, self.policy.window // 4) or self.judged_p99_ms is None:
            return percentile(list(self.samples), 0.99) if self.samples else None
        return self.judged_p99_ms

    def _count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def _pause(self, work: float) -> float:
        self.pause = min(self.policy.max_pause, max(self.min_pause, self.ratio * work))
        return self.pause

    def decide(self, health: Health, work: float = 0.0) -> Decision:
        """The next batch size and pause, from one reading and the last batch's work time
        (seconds)."""
        self.samples.extend(health.probe_ms)
        self.all_samples.extend(health.probe_ms)
        self.since_change += len(health.probe_ms)
        if health.replicas is not None:
            self.replicas = health.replicas
        if health.lag is not None:
            self.max_lag_seen = max(self.max_lag_seen or 0.0, health.lag)
        if health.waiting is not None:
            self.max_waiting_seen = max(self.max_waiting_seen or 0, health.waiting)
        policy = self.policy
        if health.lag is not None and health.lag > policy.max_lag:
            self._count("replica lag")
            return Decision(self.batch, policy.max_pause, f"replica lag {health.lag:.1f} s > "
                            f"{policy.max_lag:g} s", hold=True)
        if health.waiting is not None and health.waiting > policy.max_waiting:
            self._count("lock waiters")
            return Decision(self.batch, policy.max_pause, f"{health.waiting} sessions wait on "
                            f"locks > {policy.max_waiting}", hold=True)
        target, p99 = self.target_ms, self.p99_ms
        if target is None or p99 is None or self.since_change < policy.window:
            return Decision(self.batch, self._pause(work))  # too few fresh samples to judge
        over = sum(1 for ms in self.samples if ms > target)
        self.judged_p99_ms = p99
        self.since_change = 0
        self.samples.clear()  # each judgement on samples of its own
        if over >= exceedances_allowed(policy.window):
            self.backoffs += 1
            self._count("probe p99")
            self.batch = max(policy.min_batch, self.batch * 3 // 4)
            self.ratio = min(MAX_RATIO, self.ratio * 1.5 + 0.2)
            return Decision(self.batch, self._pause(work),
                            f"probe p99 {p99:.2f} ms > target {target:.2f} ms "
                            f"({over} of {policy.window} samples over it)")
        if p99 < _INCREASE_BELOW * target:
            self.batch = min(self.max_batch, self.batch + max(1, self.max_batch // 10))
            self.ratio = max(0.0, min(self.ratio * 0.85, self.ratio - policy.ratio_step))
        return Decision(self.batch, self._pause(work))

    def summary(self) -> dict[str, Any]:
        """What the throttle did, for the report (``--json``: ``throttle``)."""
        target = self.target_ms
        during = percentile(self.all_samples, 0.99) if self.all_samples else None
        return {
            "enabled": self.policy.enabled,
            "baseline_p99_ms": _round(self.baseline_p99_ms),
            "target_p99_ms": _round(target),
            "probe_p99_ms": _round(during),
            "baseline_samples": self.baseline_samples,
            "probe_samples": len(self.all_samples),
            "backoffs": self.backoffs,
            "holds": self.holds,
            "held_seconds": round(self.held_seconds, 2),
            "paused_seconds": round(self.paused_seconds, 2),
            "final_batch": self.batch,
            "final_pause_ms": round(self.pause * 1000, 1),
            "final_ratio": round(self.ratio, 2),
            "replicas": self.replicas,
            "max_lag_s": _round(self.max_lag_seen),
            "max_lag_allowed_s": self.policy.max_lag,
            "max_waiting_seen": self.max_waiting_seen,
            "reasons": dict(self.reasons),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


#: Probe samples dropped at the start of the baseline (connection warm-up, plan cache).
_WARMUP_SAMPLES = 10
_BASELINE_STEP = 0.05


class Governor:
    """Runs a `Throttle` against one database: baseline, then a reading after every batch.

    Args:
        policy: the bounds.
        max_batch: the job's ``--batch-size`` (the throttle never exceeds it).
        min_pause: the job's ``--pause-ms`` (the throttle never pauses less).
        sampler: the probe beside the job, or None (then only lag and lock waiters count).
        health: reads `DatabaseHealth` (None when not measurable).
        clock: monotonic seconds. sleep: how to pause.
        notify: told about every decision that holds or slows the job (progress bar).
    """

    def __init__(self, policy: ThrottlePolicy, *, max_batch: int, min_pause: float,
                 sampler: ProbeSampler | None, health: Callable[[], DatabaseHealth | None],
                 clock: Callable[[], float], sleep: Callable[[float], None],
                 notify: Callable[[Decision], None] | None = None) -> None:
        self.throttle = Throttle(policy, max_batch=max_batch, min_pause=min_pause)
        self.policy = policy
        self.sampler = sampler
        self.health = health
        self.clock = clock
        self.sleep = sleep
        self.notify = notify
        self.lag = LagTracker()
        self.last: Decision = Decision(max_batch, min_pause)

    def baseline(self) -> None:
        """Measure the probe with the job idle for ``baseline_seconds``."""
        if self.sampler is None:
            return
        samples: list[float] = []
        began = self.clock()
        for _ in range(int(self.policy.baseline_seconds / _BASELINE_STEP) + 2):
            if self.clock() - began >= self.policy.baseline_seconds:
                break
            self.sleep(_BASELINE_STEP)
            samples += self.sampler.drain()
        samples += self.sampler.drain()
        self.throttle.set_baseline(samples[_WARMUP_SAMPLES:] or samples)

    def _read(self) -> Health:
        probe = self.sampler.drain() if self.sampler is not None else []
        db = self.health()
        lag = None
        replicas = None
        if db is not None:
            replicas = db.replicas
            if db.replicas and db.wal_position is not None and db.replayed is not None:
                lag = self.lag.observe(self.clock(), db.wal_position, db.replayed)
        return Health(probe, None if db is None else db.waiting, lag, replicas)

    def pace(self, work: float) -> None:
        """Pause after a count window that took ``work`` seconds, at the sleep ratio the
        throttle has now (counts do not read the probe: they only keep the duty cycle)."""
        pause = min(self.policy.max_pause, max(self.throttle.min_pause,
                                               self.throttle.ratio * work))
        if pause > 0:
            self.sleep(pause)
            self.throttle.paused_seconds += pause

    def after_batch(self, work: float = 0.0) -> Decision:
        """Read the database, hold while lag or lock waiters are over bound, then pause.

        Args:
            work: seconds the last batch took (scan, crypto, compare-and-set, checkpoint).

        Raises:
            TargetError: a hold lasted longer than ``max_hold`` (the checkpoint is saved:
                running the job again resumes).
        """
        from keyroll.errors import TargetError

        decision = self.throttle.decide(self._read(), work)
        if decision.hold:
            self.throttle.holds += 1
            began = self.clock()
            for _ in range(10**7):  # bounded by max_hold below
                if self.notify is not None:
                    self.notify(decision)
                self.sleep(decision.pause)
                waited = self.clock() - began
                if waited > self.policy.max_hold:
                    self.throttle.held_seconds += waited
                    raise TargetError(
                        f"re-encryption held for {waited:.0f} s ({decision.reason}): stopped; "
                        "run it again once the database recovers (it resumes)")
                decision = self.throttle.decide(self._read(), work)
                if not decision.hold:
                    break
            self.throttle.held_seconds += self.clock() - began
        if decision.pause > 0:
            self.sleep(decision.pause)
            self.throttle.paused_seconds += decision.pause
        if decision.reason is not None and self.notify is not None:
            self.notify(decision)
        self.last = decision
        return decision

    def summary(self) -> dict[str, Any]:
        doc = self.throttle.summary()
        doc["probe"] = "process" if self.sampler is not None else "none"
        if self.sampler is not None and getattr(self.sampler, "error", None):
            doc["probe_error"] = self.sampler.error  # type: ignore[attr-defined]
        return doc

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()
