"""The re-encryption throttle on real PostgreSQL 15: the latency probe, and ``--max-lag``
against a real streaming replica whose replay the test pauses.

Nothing here asserts a timing: the tests check that the throttle measured what it says
(baseline, probe samples, lag), that it wrote nothing while it held, and that every row ends
under the current key, on the primary and on the replica.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from keyroll.model import Label
from keyroll.reencrypt import Progress, Reencryptor, cipher_for_class
from keyroll.reencrypt.throttle import ThrottlePolicy
from tests.integration.conftest import _make, _start
from tests.integration.test_reencrypt import CLI
from tests.leaks import assert_no_leak
from tests.pg_standby import StandbyServer
from tests.reencrypt_world import AppDatabase, World, make_world
from tests.servers import PostgresServer

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(capsys)


def _world(tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch) -> World:
    project = tmp_path / "project"
    project.mkdir()
    world = make_world(project, AppDatabase("postgres", dsn))
    for var in ("KEYROLL_STORE", "KEYROLL_NOW"):
        monkeypatch.delenv(var, raising=False)
    for var, value in world.env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(project)
    return world


def test_default_throttle_measures_a_baseline_and_reports(
    tmp_path: Path, fresh_db: object, postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch, cli: CLI,
) -> None:
    world = _world(tmp_path, fresh_db.dsn, monkeypatch)  # type: ignore[attr-defined]
    world.populate(400, legacy_every=1000)
    world.rotate()
    code, stdout, stderr = cli("reencrypt", "field", "--env", "dev", "--json",
                               "--batch-size", "50")
    assert code == 0, stderr
    summary = json.loads(stdout)
    (throttle,) = summary["throttle"].values()
    assert throttle["enabled"] is True and throttle["probe"] == "process"
    assert throttle["baseline_samples"] > 0
    assert throttle["baseline_p99_ms"] > 0
    assert throttle["target_p99_ms"] == pytest.approx(throttle["baseline_p99_ms"] * 1.5,
                                                      abs=0.002)
    assert throttle["replicas"] == 0 and throttle["final_batch"] <= 50
    assert summary["priority"] == "idle"  # the throttled job's own thread gives way
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # ...and the caller's thread is unchanged
    world.check_all_current()
    code, stdout, _ = cli("reencrypt", "field", "--env", "dev", "--no-throttle", "--json")
    assert code == 0 and json.loads(stdout)["priority"] == "normal"
    assert json.loads(stdout)["throttle"] == {}
    code, _, stderr = cli("reencrypt", "field", "--env", "dev", "--priority", "high")
    assert code == 2 and stderr.count("\n") == 1 and "--priority must be one of" in stderr
    assert_no_leak([*cli.transcript, postgres_server.log_text()], world.planted(),
                   where="throttled reencrypt outputs")


# --- a primary with a streaming replica ----------------------------------------------------


@pytest.fixture(scope="module")
def replicated() -> Iterator[tuple[PostgresServer, StandbyServer]]:
    primary = _start(_make(PostgresServer))
    standby = _make(StandbyServer, primary)
    try:
        _start(standby)
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()


class SyntheticClock:
    """Monotonic seconds that advance with every reading and every sleep (the lag it
    measures grows deterministically); each sleep also yields a little real time, so the
    replica makes progress once resumed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.05
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        time.sleep(min(seconds, 0.05))


def test_max_lag_holds_while_the_replica_does_not_replay(
    tmp_path: Path, replicated: tuple[PostgresServer, StandbyServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary, standby = replicated
    name = f"kr_lag_{secrets.token_hex(4)}"
    with psycopg.connect(primary.superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    world = _world(tmp_path, primary.dsn(name), monkeypatch)
    world.populate(600, legacy_every=1000)
    world.rotate()
    standby.pause_replay()

    events: list[Progress] = []
    resumed = threading.Event()

    def progress(update: Progress) -> None:
        events.append(update)
        if update.throttled and "replica lag" in update.throttled and not resumed.is_set():
            resumed.set()
            standby.resume_replay()

    clock = SyntheticClock()
    cipher = cipher_for_class(world.store, world.ref, world.inventory.classes["field"])
    job = Reencryptor(cipher, store=world.store, ref=world.ref, batch_size=20,
                      throttle=ThrottlePolicy(max_lag=0.5, max_p99_ms=10_000, max_pause=0.1,
                                              baseline_seconds=0.1, max_hold=600),
                      progress=progress, clock=clock, sleep=clock.sleep)
    try:
        report = job.run(world.inventory.classes["field"].columns)
    finally:
        if not resumed.is_set():
            standby.resume_replay()
    assert report.ok
    (throttle,) = report.throttle.values()
    assert throttle["replicas"] == 1
    assert throttle["holds"] >= 1 and throttle["max_lag_s"] > 0.5
    assert throttle["reasons"]["replica lag"] >= 1
    # nothing was written while it held: every hold report has the count of the one before
    for before, after in itertools.pairwise(events):
        if after.throttled and "replica lag" in after.throttled:
            assert after.rewritten == before.rewritten
    world.check_all_current()
    # the replica replays it all: the same rows, every one under the current key
    current = world.version(Label.CURRENT).kid
    for _ in range(600):  # bounded wait for the replica to catch up (not a timing assertion)
        if standby.replay_delay() == 0:
            rows = AppDatabase("postgres", standby.dsn(name)).rows()
            if rows and all(cipher.kid_of(d) == current for _, d in rows.values()):
                break
        time.sleep(0.1)
    else:
        pytest.fail("the replica did not replay the re-encrypted rows")
    assert set(rows) == set(world.plaintexts)
