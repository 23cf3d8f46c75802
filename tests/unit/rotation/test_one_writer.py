"""One writer per rotation, even across pauses, hosts and PID namespaces (issue 10 §2).

The stale writer is played deterministically: engine A's strategy "pauses" inside a step
(its callback runs the whole takeover by engine B, whose wall clock is past A's lease), then
A resumes. A real paused process (SIGSTOP) is in the crash matrix (`tests/crash.py`), and the
same scenario against real PostgreSQL and PgBouncer in `tests/integration`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from keyroll.audit import Journal
from keyroll.errors import LeaseLost, LockHeld
from keyroll.model import Label, utcnow
from keyroll.rotation.engine import Engine
from keyroll.rotation.lock import LEASE_TTL, START_TTL, Holder
from keyroll.rotation.strategies.signing_key import ApiKeyStrategy
from keyroll.stores.sqlite import SQLiteStore
from tests.unit.conftest import World


def _later(delta: timedelta) -> Callable[..., object]:
    return lambda: utcnow() + delta


def _engine(world: World, **kwargs: object) -> Engine:
    journal = Journal(world.store, actor="ops", clock=world.clock)
    return Engine(world.store, world.inventory, journal=journal, clock=world.clock,
                  workdir=world.path, sleep=lambda s: world.clock.tick(timedelta(seconds=s)),
                  **kwargs)  # type: ignore[arg-type]


class _Pausing(ApiKeyStrategy):
    """The api-key strategy, whose ``step`` calls ``pause`` in the middle (the process is
    stopped there; whatever ``pause`` does happens while it sleeps)."""

    def __init__(self, step: str, pause: Callable[[], None]) -> None:
        self.step, self.pause = step, pause

    def _maybe(self) -> None:
        if self.pause is not None:
            pause, self.pause = self.pause, None  # type: ignore[assignment]
            pause()

    def promote(self, ctx):  # type: ignore[no-untyped-def]
        if self.step == "promote":
            self._maybe()

    def retire(self, ctx):  # type: ignore[no-untyped-def]
        if self.step == "retire":
            self._maybe()
        super().retire(ctx)


@pytest.mark.parametrize("step", ["promote", "retire"])
def test_a_process_paused_past_its_lease_writes_nothing_when_it_wakes(
    world: World, step: str
) -> None:
    ref = world.seed("api")
    taken_over: list[str] = []

    def paused() -> None:
        # while A sleeps: its lease expires, the cron tick (B) takes the rotation over and
        # finishes it
        b = _engine(world, wall_clock=_later(LEASE_TTL + timedelta(seconds=5)))
        record = b.run(rotation.id)
        for _ in range(3):
            if record.state == "done":
                break
            world.clock.tick(timedelta(hours=2))
            record = b.run(rotation.id)
        assert record.state == "done", record.state
        taken_over.append(record.state)

    a = _engine(world, strategies={"api-key": _Pausing(step, paused)})
    rotation = a.start("api", "dev")
    if step == "retire":
        assert a.run(rotation.id).state == "overlap"
        world.clock.tick(timedelta(hours=2))
    with pytest.raises(LeaseLost, match="lost its lock"):
        a.run(rotation.id)
    assert taken_over == ["done"]
    after = a.get(rotation.id)
    assert after.state == "done"  # not overlap again: the stale state was refused
    before_labels = world.store.get_labels(ref)
    assert before_labels == {Label.CURRENT: 2}
    assert world.store.read_value(ref, 2)
    journal = Journal(world.store)
    assert journal.verify().ok
    actions = [r.action for r in journal.records() if r.rotation == rotation.id]
    assert actions.count("rotation.done") == 1
    # nothing of A's after the takeover: every promote/retire entry is B's single run
    assert actions.count(f"rotation.{step}") == 1


def test_a_live_holder_in_another_pid_namespace_keeps_its_lock(world: World,
                                                                tmp_path: Path) -> None:
    """Same hostname, another PID namespace (a container sharing the host's UTS namespace): its
    PID means nothing here, so only the lease frees the lock."""
    ref = world.seed("api")
    # a PID that names no process here, so a PID-only check would call the holder dead
    free = next(n for n in range(300, 30000) if not Path(f"/proc/{n}").exists())
    script = tmp_path / "hold.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        sys.path[:0] = {sys.path!r}
        from keyroll.rotation.lock import Holder, LEASE_TTL
        from keyroll.stores.sqlite import SQLiteStore
        from keyroll.model import SecretRef
        store = SQLiteStore({str(world.store.path)!r}, bytes.fromhex({world.key.hex()!r}))
        holder = Holder.this_process("r-elsewhere", "feedbeef")
        store.acquire_lock(SecretRef("dev", "api"), holder.owner, ttl=LEASE_TTL)
        print(holder.pid, flush=True)
        time.sleep(60)
    """))
    # fork inside the new namespace until the holder's PID is one that is free out here
    shell = f"i=2; while [ $i -lt {free} ]; do /bin/true; i=$((i+1)); done; exec " \
            f"{sys.executable} {script}"
    try:
        child = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", shell],
                                 stdout=subprocess.PIPE, text=True)
    except FileNotFoundError:
        pytest.skip("unshare (util-linux) is not installed")
    try:
        line = child.stdout.readline() if child.stdout else ""  # type: ignore[union-attr]
        if not line.strip().isdigit():
            pytest.skip("this sandbox does not allow new PID namespaces")
        inner_pid = int(line)
        lock = world.store.get_lock(ref)
        assert lock is not None
        holder = Holder.parse(lock.owner)
        assert holder is not None and holder.host == socket.gethostname()
        assert not Path(f"/proc/{inner_pid}").exists() or inner_pid < 300
        with pytest.raises(LockHeld, match="another keyroll process is working on it"):
            _engine(world).start("api", "dev")
        # after its lease, it is taken over
        late = _engine(world, wall_clock=_later(LEASE_TTL + timedelta(seconds=5)))
        assert late.start("api", "dev").state == "plan"
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


def test_a_dead_holder_of_this_host_is_taken_over_at_once(world: World) -> None:
    ref = world.seed("api")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    here = Holder.this_process("r-crashed", "0badc0de")
    gone = Holder(here.rotation, here.token, here.host, dead.pid, here.scope, here.started)
    world.store.acquire_lock(ref, gone.owner, ttl=LEASE_TTL)
    assert _engine(world).start("api", "dev").state == "plan"


def test_a_lock_of_a_rotation_that_never_existed_frees_on_any_host(world: World) -> None:
    ref = world.seed("api")
    elsewhere = Holder("r-never-stored", "1234", "other-host", 4242, "otherboot.1", "99")
    world.store.acquire_lock(ref, elsewhere.owner, ttl=START_TTL)  # died inside `start`
    with pytest.raises(LockHeld):
        _engine(world).start("api", "dev")
    later = _engine(world, wall_clock=_later(START_TTL + timedelta(seconds=1)))
    assert later.start("api", "dev").state == "plan"


def test_a_lock_left_just_after_done_frees_on_any_host(world: World) -> None:
    ref = world.seed("api")
    engine = _engine(world)
    record = engine.run(engine.start("api", "dev").id)
    world.clock.tick(timedelta(hours=2))
    record = engine.run(record.id)
    assert record.state == "done"
    elsewhere = Holder(record.id, "1234", "other-host", 4242, "otherboot.1", "99")
    world.store.acquire_lock(ref, elsewhere.owner, ttl=LEASE_TTL)  # died after saving done
    assert _engine(world).start("api", "dev").state == "plan"


def test_a_moved_clock_never_takes_a_live_lease(world: World) -> None:
    """Leases run on the wall clock: a demo clock set to next year takes nothing."""
    ref = world.seed("api")
    holder = Holder.this_process("r-live", "cafe")
    world.store.acquire_lock(ref, holder.owner, ttl=LEASE_TTL)
    world.clock.tick(timedelta(days=365))
    with pytest.raises(LockHeld):
        _engine(world).start("api", "dev")


def test_the_heartbeat_keeps_a_long_step_leased(world: World) -> None:
    ref = world.seed("api")
    seen: list[int] = []

    def slow() -> None:  # a step longer than the lease (a big pg_dump)
        for _ in range(8):
            time.sleep(0.1)
            lock = world.store.get_lock(ref)
            seen.append(0 if lock is None else 1)

    engine = _engine(world, lease_ttl=timedelta(seconds=0.2),
                     strategies={"api-key": _Pausing("promote", slow)})
    record = engine.run(engine.start("api", "dev").id)
    assert record.state == "overlap"
    assert seen == [1] * 8  # renewed all along; never lost
    assert world.store.get_lock(ref) is None  # released at the end


def test_advance_reports_a_busy_rotation_without_failing(world: World) -> None:
    ref = world.seed("api")
    engine = _engine(world)
    record = engine.run(engine.start("api", "dev").id)
    holder = Holder.this_process(record.id, "busy")
    world.store.acquire_lock(ref, holder.owner, ttl=LEASE_TTL)  # another tick is on it
    world.clock.tick(timedelta(hours=2))
    report = _engine(world).advance()
    assert report.busy == (record.id,) and report.failed == ()


def test_store_reopened_sees_the_same_generation(world: World) -> None:
    """The fencing generation is in the store, not the process (another host sees it)."""
    ref = world.seed("api")
    first = world.store.acquire_lock(ref, "a", ttl=LEASE_TTL)
    world.store.release_lock(ref, "a")
    with SQLiteStore(world.store.path, world.key) as again:
        assert again.acquire_lock(ref, "b", ttl=LEASE_TTL).generation == first.generation + 1
    assert os.getpid() > 0
