"""The throttle's controller, lag tracker and governor, with plain numbers and a fake clock.

No database and no real sleep: the governor's clock and sleep are parameters. The probe
sampler and the health reader here are the project's own boundaries (what the PostgreSQL
adapter provides for real; `tests/integration/test_reencrypt_throttle.py` runs them).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

import pytest

from keyroll.errors import TargetError, UsageError
from keyroll.reencrypt.throttle import (
    MAX_RATIO,
    DatabaseHealth,
    Decision,
    Governor,
    Health,
    LagTracker,
    Throttle,
    ThrottlePolicy,
    exceedances_allowed,
    percentile,
)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.99) == 0.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert percentile([5.0], 0.5) == 5.0


def test_policy_bounds_are_usage_errors() -> None:
    for bad in ({"max_slowdown": 0.5}, {"max_p99_ms": 0}, {"max_lag": 0}, {"max_waiting": -1}):
        with pytest.raises(UsageError):
            ThrottlePolicy(**bad)  # type: ignore[arg-type]


def test_backs_off_over_target_and_recovers_under_it() -> None:
    policy = ThrottlePolicy(window=20, min_batch=100, initial_ratio=0.0)
    throttle = Throttle(policy, max_batch=1000)
    throttle.set_baseline([1.0] * 100)
    assert throttle.target_ms == 1.5
    # not enough fresh samples yet: no change
    assert throttle.decide(Health([5.0] * 5), work=0.01) == Decision(1000, 0.0)
    assert throttle.decide(Health([5.0] * 10), work=0.01) == Decision(1000, 0.0)  # 15 of 20
    slowed = throttle.decide(Health([5.0] * 5), work=0.01)
    assert (slowed.batch, slowed.pause) == (750, 0.002)
    assert slowed.reason == "probe p99 5.00 ms > target 1.50 ms (20 of 20 samples over it)"
    for _ in range(12):
        throttle.decide(Health([5.0] * 20), work=0.01)
    assert throttle.batch == 100 and throttle.ratio == MAX_RATIO
    assert throttle.decide(Health(), work=0.01).pause == pytest.approx(0.2)  # ratio times work
    assert throttle.decide(Health(), work=10.0).pause == policy.max_pause
    ratios = []
    for _ in range(200):  # bounded: recovers to the configured batch and no pause
        throttle.decide(Health([0.5] * 20), work=0.01)
        ratios.append(throttle.ratio)
    # it speeds up by 15 % a step far from the operating point, by 0.1 near it, to 0
    assert ratios[0] == pytest.approx(MAX_RATIO * 0.85)
    near = [r for r in ratios if 0 < r <= 0.6]
    assert len(near) == 6
    assert all(a - b == pytest.approx(0.1) for a, b in itertools.pairwise(near))
    assert ratios.index(0.0) < 40
    assert throttle.batch == 1000 and throttle.ratio == 0.0
    assert throttle.decide(Health(), work=0.01).pause == 0.0
    summary = throttle.summary()
    assert summary["baseline_p99_ms"] == 1.0 and summary["target_p99_ms"] == 1.5
    assert summary["reasons"]["probe p99"] == throttle.backoffs == 13


def test_exceedances_allowed_is_the_binomial_tail() -> None:
    """k samples over target of n: a p99 exactly at target gives k or more under 1 % of the
    time, and k - 1 or more at least 1 % of the time."""
    def at_least(k: int, n: int) -> float:
        return sum(math.comb(n, i) * 0.01**i * 0.99 ** (n - i) for i in range(k, n + 1))

    for n in (10, 20, 50, 200, 400, 1000):
        k = exceedances_allowed(n)
        assert at_least(k, n) < 0.01 <= at_least(k - 1, n)
    assert exceedances_allowed(200) == 7


def _judgements(throttle: Throttle, draw: Callable[[], float], n: int) -> list[Decision]:
    window = throttle.policy.window
    return [throttle.decide(Health([draw() for _ in range(window)]), work=0.01)
            for _ in range(n)]


def test_noise_alone_does_not_slow_it() -> None:
    """The job changes nothing: the probe's samples come from the baseline's own heavy-tailed
    distribution (a seeded Pareto, shape 2). Over 200 judgements it never slows down and ends
    at full speed. (Slowing down whenever the p99 of 200 samples is over the target, as this
    throttle did before, slows down in about a tenth of such windows.)"""
    rng = random.Random(17)

    def draw() -> float:
        return 0.1 * rng.paretovariate(2.0)

    throttle = Throttle(ThrottlePolicy(initial_ratio=1.0), max_batch=1000)
    throttle.set_baseline([draw() for _ in range(600)])
    decisions = _judgements(throttle, draw, 200)
    assert throttle.backoffs <= 2, [d.reason for d in decisions if d.reason]
    assert throttle.ratio == 0.0 and throttle.batch == 1000


def test_a_real_slowdown_slows_it() -> None:
    """The same distribution 3x slower while the job runs (its p99 twice the target): about
    half the judgements (of 200 samples each) slow down, and the job ends near its slowest.
    Twice slower (p99 1.33x the target) is caught less often: the throttle then never speeds
    up and drifts slower."""
    rng = random.Random(18)

    def draw(scale: float = 1.0) -> float:
        base = 0.1 * rng.paretovariate(3.0)
        return scale * (base * rng.uniform(5, 10) if rng.random() < 0.02 else base)

    baseline = [draw() for _ in range(600)]
    backoffs = {}
    for scale in (1.0, 2.0, 3.0):
        throttle = Throttle(ThrottlePolicy(initial_ratio=1.0), max_batch=1000)
        throttle.set_baseline(baseline)
        _judgements(throttle, lambda s=scale: draw(s), 50)  # type: ignore[misc]
        backoffs[scale] = throttle.backoffs
        if scale == 3.0:
            assert throttle.ratio >= 10
        if scale == 2.0:
            assert throttle.ratio > 1.0  # never sped up
    assert backoffs[1.0] <= 2 and backoffs[2.0] >= 3 and backoffs[3.0] >= 15, backoffs


def test_the_pause_is_never_under_pause_ms() -> None:
    throttle = Throttle(ThrottlePolicy(initial_ratio=0.0), max_batch=10, min_pause=0.05)
    assert throttle.decide(Health(), work=0.001).pause == 0.05


def test_an_absolute_target_overrides_the_slowdown() -> None:
    throttle = Throttle(ThrottlePolicy(max_p99_ms=10.0, window=10), max_batch=1000)
    throttle.set_baseline([1.0] * 10)
    assert throttle.target_ms == 10.0
    assert throttle.decide(Health([5.0] * 10)).reason is None  # 5 ms is under 10


def test_lag_and_lock_waiters_hold() -> None:
    throttle = Throttle(ThrottlePolicy(max_lag=2.0, max_waiting=3), max_batch=1000)
    held = throttle.decide(Health(lag=2.5, replicas=1))
    assert held.hold and "replica lag 2.5 s" in (held.reason or "")
    assert throttle.decide(Health(lag=1.0, replicas=1)).hold is False
    assert throttle.decide(Health(waiting=4)).hold
    assert throttle.max_lag_seen == 2.5 and throttle.replicas == 1


def test_lag_tracker_grows_while_a_replica_does_not_replay() -> None:
    lag = LagTracker()
    assert lag.observe(0.0, 100, 100) == 0.0
    assert lag.observe(1.0, 200, 100) == 0.0  # first seen now
    assert lag.observe(4.0, 300, 100) == 3.0  # position 200 is unreplayed since t=1
    assert lag.observe(5.0, 300, 250) == 1.0  # 200 replayed; 300 seen at t=4
    assert lag.observe(6.0, 300, 300) == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Samples:
    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.closed = False

    def drain(self) -> list[float]:
        out, self.values = self.values, []
        return out

    def close(self) -> None:
        self.closed = True


def test_governor_holds_until_the_replica_catches_up() -> None:
    clock = FakeClock()
    positions = iter([(100, 100), (200, 100), (300, 100), (300, 100), (300, 300)])
    seen: list[str | None] = []

    def health() -> DatabaseHealth:
        clock.now += 1.0  # a batch's worth of time between two readings
        wal, replayed = next(positions, (300, 300))
        return DatabaseHealth(0, wal, 1, replayed)

    governor = Governor(ThrottlePolicy(max_lag=0.5, max_pause=1.0, baseline_seconds=0.2),
                        max_batch=1000, min_pause=0.0, sampler=Samples([1.0] * 20),
                        health=health, clock=clock, sleep=clock.sleep,
                        notify=lambda d: seen.append(d.reason))
    governor.baseline()
    assert governor.throttle.baseline_p99_ms == 1.0
    governor.after_batch()  # (100, 100): caught up
    assert governor.after_batch().hold is False  # 200 first seen: no lag yet
    decision = governor.after_batch()  # 200 unreplayed for 1 s: hold until replayed
    assert decision.hold is False
    assert governor.throttle.holds == 1 and governor.throttle.held_seconds >= 1.0
    assert any(r is not None and "replica lag" in r for r in seen)
    governor.close()
    assert governor.summary()["holds"] == 1


def test_a_hold_is_bounded() -> None:
    clock = FakeClock()
    governor = Governor(ThrottlePolicy(max_waiting=0, max_hold=3.0, max_pause=1.0),
                        max_batch=100, min_pause=0.0, sampler=None,
                        health=lambda: DatabaseHealth(waiting=2), clock=clock,
                        sleep=clock.sleep)
    with pytest.raises(TargetError, match="held for"):
        governor.after_batch()
    assert clock.now <= 5.0


def test_counts_are_paced_at_the_throttle_s_ratio() -> None:
    clock = FakeClock()
    governor = Governor(ThrottlePolicy(initial_ratio=2.0, max_pause=1.0), max_batch=100,
                        min_pause=0.01, sampler=None, health=lambda: None, clock=clock,
                        sleep=clock.sleep)
    governor.pace(0.1)  # a count window of 100 ms: 200 ms of pause at ratio 2
    assert clock.now == pytest.approx(0.2)
    governor.pace(5.0)  # never more than max_pause
    assert clock.now == pytest.approx(1.2)
    governor.throttle.ratio = 0.0
    governor.pace(0.1)  # never less than --pause-ms
    assert clock.now == pytest.approx(1.21)
    assert governor.summary()["paused_seconds"] == pytest.approx(1.21)
