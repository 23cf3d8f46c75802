"""SIGKILL a rotation after every durable write, then resume it and check the invariants.

The rotation runs in a forked child whose store (`KillingStore`, a fake at a boundary the
project owns) kills the process with SIGKILL right after its n-th write returns: the state a
power cut or an OOM kill would leave at that step boundary. The parent then finishes the
rotation with a fresh engine, as the next ``keyroll`` command would, and checks that:

- the rotation ends (done or rolled back) without a person repairing anything;
- the store's ``current`` is a live version whose value is readable (and, for targets, that
  the target accepts: strategies with a target pass ``check_target``);
- no labelled version was lost, the lock is released, and the journal still verifies.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from keyroll.audit import Journal
from keyroll.errors import LeaseLost
from keyroll.generate import generate
from keyroll.inventory import Inventory
from keyroll.model import Label, SecretRef, SecretValue, utcnow
from keyroll.rotation.engine import ACTIVE, AWAITING_CONFIRMATION, TERMINAL, Engine
from keyroll.rotation.lock import LEASE_TTL
from keyroll.rotation.record import Rotation
from keyroll.stores.sqlite import SQLiteStore
from tests.world import Clock

__all__ = ["CrashPoint", "KillingStore", "drive", "run_crash_matrix", "run_pause_matrix",
           "seed_version"]

_WRITES = (
    "put_version", "set_labels", "destroy_version", "acquire_lock", "release_lock",
    "create_rotation", "save_rotation", "audit_append", "put_meta",
)


class KillingStore(SQLiteStore):
    """The local store, which SIGKILLs its own process right after its n-th write (or, with
    ``sig=SIGSTOP``, stops it there: a paused process, resumed later with SIGCONT)."""

    def __init__(self, path: Path, key: bytes, kill_at: int | None,
                 sig: signal.Signals = signal.SIGKILL) -> None:
        super().__init__(path, key)
        self.kill_at = kill_at
        self.sig = sig
        self.writes: list[str] = []

    def _wrote(self, name: str) -> None:
        self.writes.append(name)
        if self.kill_at is not None and len(self.writes) == self.kill_at:
            os.kill(os.getpid(), self.sig)


def _wrap(name: str) -> Callable[..., Any]:
    original = getattr(SQLiteStore, name)

    def write(self: KillingStore, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        self._wrote(name)
        return result

    write.__name__ = name
    return write


for _name in _WRITES:
    setattr(KillingStore, _name, _wrap(_name))


def drive(store: SQLiteStore, inventory: Inventory, workdir: Path, name: str, env: str,
          entered: str, rollback_at: str | None = None,
          wall_clock: Callable[[], datetime] = utcnow) -> Rotation:
    """Start (or resume) the rotation of ``name`` and push it to its end, like an operator
    would: confirm pauses, let time pass over the overlap, or (``rollback_at``) run
    ``keyroll rollback`` once the rotation reaches that state. Bounded."""
    clock = Clock()
    def sleep(seconds: float) -> None:
        clock.now += timedelta(seconds=seconds)

    engine = Engine(store, inventory, journal=Journal(store, actor="ops", clock=clock),
                    clock=clock, workdir=workdir, sleep=sleep, wall_clock=wall_clock)
    ref = SecretRef(env, name)
    active = [r for r in store.list_rotations(ref) if r.state in ACTIVE]
    if active:
        record = active[-1]
    elif store.list_rotations(ref):
        return engine.run(store.list_rotations(ref)[-1].id)  # ended before the crash
    else:
        record = engine.start(name, env)
    for _ in range(30):
        record = engine.run(record.id)
        if record.state in TERMINAL:
            return record
        if (rollback_at is not None and record.state in (rollback_at, "rolling-back")
                and not record.reverted):
            record = engine.rollback(record.id, reason="operator")
            continue
        if record.state == AWAITING_CONFIRMATION:
            step = str(record.body.awaiting)
            value = SecretValue(entered) if step == "enter" else None
            engine.confirm(record.id, step, value)
        elif record.state == "overlap":
            clock.now += timedelta(days=2)
    raise AssertionError(f"rotation {record.id} did not end: {record.state}")


@dataclass(frozen=True)
class CrashPoint:
    kill_at: int
    write: str
    state_after_crash: str
    final: str


def seed_version(store: SQLiteStore, inventory: Inventory, name: str, env: str) -> SecretRef:
    cls = inventory.classes[name]
    ref = SecretRef(env, name)
    value = generate(cls.generator.value if cls.generator else "base64-48", prefix=cls.prefix)
    version = store.put_version(ref, value)
    store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
    return ref


def run_crash_matrix(
    make_world: Callable[[], tuple[Path, Inventory]],
    name: str,
    env: str = "dev",
    check_target: Callable[[SQLiteStore, SecretRef], None] | None = None,
    seed: Callable[[SQLiteStore, Inventory, str, str], SecretRef] | None = None,
    rollback_at: str | None = None,
    start: int = 1,
    kinds: Collection[str] | None = None,
) -> list[CrashPoint]:
    """Kill after every write of a full rotation, one fresh world per point; resume; check.

    Args:
        seed: stores the first version (default `seed_version`); strategies with a target
            wrap it to put the same credential on the target.
        rollback_at: the operator rolls the rotation back once it reaches this state.
        start: the first kill point (a rollback matrix may skip the points a forward matrix
            of the same class already killed at, before the rotation reached ``rollback_at``).
        kinds: kill only after these writes (``put_meta``, ``save_rotation`` …): a strategy's
            matrix may leave the engine's own lock and journal points to the engine's matrix.
    """
    seed = seed or seed_version
    key = os.urandom(32)
    entered = "entered-from-portal-" + os.urandom(12).hex()

    # 1. a clean run counts the writes
    folder, inventory = make_world()
    with KillingStore(folder / "store.db", key, None) as store:
        seed(store, inventory, name, env)
        baseline = len(store.writes)
        drive(store, inventory, folder, name, env, entered, rollback_at)
        writes = store.writes[baseline:]
    points = []
    for n in range(start, len(writes) + 1):
        if kinds is not None and writes[n - 1] not in kinds:
            continue
        folder, inventory = make_world()
        with SQLiteStore(folder / "store.db", key) as store:
            ref = seed(store, inventory, name, env)
        pid = os.fork()
        if pid == 0:  # the child: rotate until the n-th write kills it
            try:
                with KillingStore(folder / "store.db", key, baseline + n) as child:
                    child.writes = ["seed"] * baseline
                    drive(child, inventory, folder, name, env, entered, rollback_at)
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
            f"kill point {n} ({writes[n - 1]}): the child was not killed (status {status})"
        )
        with SQLiteStore(folder / "store.db", key) as store:
            crashed = store.list_rotations(ref)
            state_after = crashed[-1].state if crashed else "-"
            final = drive(store, inventory, folder, name, env, entered, rollback_at)
            _check(store, ref, final, check_target)
        points.append(CrashPoint(n, writes[n - 1], state_after, final.state))
    return points


def run_pause_matrix(
    make_world: Callable[[], tuple[Path, Inventory]],
    name: str,
    env: str = "dev",
    check_target: Callable[[SQLiteStore, SecretRef], None] | None = None,
    seed: Callable[[SQLiteStore, Inventory, str, str], SecretRef] | None = None,
) -> list[CrashPoint]:
    """Stop the rotation's process (SIGSTOP) after every write; while it sleeps past its lease,
    the next ``keyroll`` command takes the rotation over and finishes it; then the sleeper
    wakes (SIGCONT). It must write nothing more: the record, labels, journal and target are
    what the taker left, and the sleeper exits with `LeaseLost` (or had nothing left to do).
    """
    seed = seed or seed_version
    key = os.urandom(32)
    entered = "entered-from-portal-" + os.urandom(12).hex()
    folder, inventory = make_world()
    with KillingStore(folder / "store.db", key, None) as store:
        seed(store, inventory, name, env)
        baseline = len(store.writes)
        drive(store, inventory, folder, name, env, entered)
        writes = store.writes[baseline:]
    after_lease = lambda: utcnow() + LEASE_TTL + timedelta(seconds=5)  # noqa: E731
    points = []
    for n in range(1, len(writes) + 1):
        folder, inventory = make_world()
        with SQLiteStore(folder / "store.db", key) as store:
            ref = seed(store, inventory, name, env)
        pid = os.fork()
        if pid == 0:  # the child: rotate until the n-th write stops it; then carry on
            code = 0
            try:
                with KillingStore(folder / "store.db", key, baseline + n, signal.SIGSTOP) as child:
                    child.writes = ["seed"] * baseline
                    drive(child, inventory, folder, name, env, entered)
            except LeaseLost:
                code = 4
            except BaseException:  # noqa: BLE001  (any other end is a failure, reported below)
                code = 5
            os._exit(code)
        _, status = os.waitpid(pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), f"pause point {n}: the child did not stop ({status})"
        with SQLiteStore(folder / "store.db", key) as store:
            paused = store.list_rotations(ref)
            state_after = paused[-1].state if paused else "-"
            before = (paused[-1].id, paused[-1].revision) if paused else None
            final = drive(store, inventory, folder, name, env, entered, wall_clock=after_lease)
            taken = store.get_rotation(final.id)
            labels = store.get_labels(ref)
            entries = sum(1 for _ in store.audit_entries())
        # the taker found nothing left to do (the sleeper had saved the last state): the
        # sleeper may finish its own bookkeeping; otherwise it must write nothing at all
        took_over = before != (taken.id, taken.revision)
        os.kill(pid, signal.SIGCONT)
        _, status = os.waitpid(pid, 0)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        assert code in (0, 4), f"pause point {n} ({writes[n - 1]}): the sleeper ended with {code}"
        with SQLiteStore(folder / "store.db", key) as store:
            woke = store.get_rotation(final.id)
            assert (woke.state, woke.revision) == (taken.state, taken.revision), (
                f"pause point {n} ({writes[n - 1]}): the woken process wrote over the record")
            assert store.get_labels(ref) == labels
            if took_over:
                assert sum(1 for _ in store.audit_entries()) == entries, (
                    f"pause point {n} ({writes[n - 1]}): the woken process wrote to the journal")
            _check(store, ref, Rotation.parse(woke), check_target)
        points.append(CrashPoint(n, writes[n - 1], state_after,
                                 f"{final.state} (sleeper exit {code})"))
    return points


def _check(store: SQLiteStore, ref: SecretRef, final: Rotation,
           check_target: Callable[[SQLiteStore, SecretRef], None] | None) -> None:
    assert final.state in TERMINAL, final.state
    labels = store.get_labels(ref)
    current = labels[Label.CURRENT]
    store.read_value(ref, current)  # live, decryptable
    if final.state == "done":
        assert labels == {Label.CURRENT: final.body.new_version}, labels
    else:
        before = {Label(k): v for k, v in final.body.labels_before.items()}
        assert labels == before, (labels, before)
    assert store.get_lock(ref, now=Clock()()) is None, "the lock outlived the rotation"
    assert all(store.read_value(ref, n) for n in labels.values())
    assert Journal(store).verify().ok
    if check_target is not None:
        check_target(store, ref)


def format_table(name: str, points: list[CrashPoint]) -> str:
    lines = [f"crash matrix: {name}: {len(points)} kill points",
             f"{'#':>3}  {'killed after':<16} {'state at crash':<22} final"]
    lines += [f"{p.kill_at:>3}  {p.write:<16} {p.state_after_crash:<22} {p.final}" for p in points]
    return "\n".join(lines)
