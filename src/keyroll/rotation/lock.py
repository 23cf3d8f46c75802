"""Who may work on a secret's rotation: a lease with a fencing generation (etcd, Chubby).

A process that works on a rotation holds the secret's lock as a *lease*: it expires unless
its holder renews it, and a background heartbeat renews it while the holder is alive. Each
new owner gets the next *fencing generation*; every record save carries it and the store
refuses a save whose generation is no longer the lock's (`keyroll.errors.LeaseLost`). So a
process that is paused (Ctrl-Z, a suspended laptop, a stopped container) past its lease, while
another process takes the rotation over, writes nothing when it wakes up: it stops.

Holders are identified by a random token, never by PID and hostname alone: two containers
can share a hostname and see the same PID for different processes. A holder's PID is used for
one thing only, detecting a holder that died: when it names a process in *our* PID namespace
on *this* boot (``/proc/sys/kernel/random/boot_id`` and the inode of ``/proc/self/ns/pid``,
which a namespace cannot fake for another), and that process is gone or started at another
time (a reused PID), the lock is taken over at once. Anything else waits for the lease.

Leases run on the wall clock, never on a moved clock (``KEYROLL_NOW``, ``--now``): a demo
clock set to next year must not take a live holder's lock.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from keyroll.errors import LeaseLost, LockHeld, NotFound
from keyroll.model import SecretRef, utcnow
from keyroll.rotation.record import TERMINAL
from keyroll.stores.base import Fence, LockInfo, Store

__all__ = ["LEASE_TTL", "START_TTL", "Holder", "Lease", "rotation_ended", "rotation_of"]

#: How long a lease lasts without renewal. The heartbeat renews it every quarter of that.
LEASE_TTL = timedelta(minutes=2)
#: The lease ``start`` takes only to make its busy check exact (milliseconds of work): a
#: process that dies before its record exists frees the secret for every host after this.
START_TTL = timedelta(seconds=30)

_PROC = Path("/proc")


def _scope() -> str:
    """Boot id and PID namespace of this process: where a PID names the same process."""
    try:
        boot = (_PROC / "sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:16]
        pidns = os.stat(_PROC / "self/ns/pid").st_ino
    except OSError:
        return ""  # no /proc: a holder's PID can never be trusted, only its lease
    return f"{boot}.{pidns}"


def _start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lock, as written into it (``owner``).

    Attributes:
        rotation: the rotation the holder works on.
        token: random, 96 bits: the holder's identity.
        host: the hostname (for people reading `keyroll rotations`; never trusted alone).
        pid: the holder's process id, meaningful only within ``scope``.
        scope: boot id and PID namespace of the holder ("" when unknown).
        started: the holder's start time (clock ticks since boot), against PID reuse.
    """

    rotation: str
    token: str
    host: str
    pid: int
    scope: str
    started: str

    @classmethod
    def this_process(cls, rotation: str, token: str) -> Holder:
        return cls(rotation, token, socket.gethostname(), os.getpid(), _scope(),
                   _start_time(os.getpid()) or "")

    @property
    def owner(self) -> str:
        return f"{self.rotation} {self.token} {self.host}:{self.pid}@{self.scope}/{self.started}"

    @classmethod
    def parse(cls, owner: str) -> Holder | None:
        """The holder written in a lock, or None for an owner in another format."""
        parts = owner.split(" ")
        if len(parts) != 3:
            return None
        rotation, token, where = parts
        host, _, rest = where.rpartition(":")
        pid, _, place = rest.partition("@")
        scope, _, started = place.partition("/")
        if not pid.isdigit():
            return None
        return cls(rotation, token, host, int(pid), scope, started)

    def gone(self) -> bool:
        """True only when the holder is certainly dead: its PID lives in our namespace on
        this boot, and no process with that PID and start time exists."""
        if not self.scope or self.scope != _scope() or not self.started:
            return False
        return _start_time(self.pid) != self.started


def rotation_of(owner: str) -> str:
    """The rotation id a lock's owner works on (every format keyroll wrote puts it first)."""
    return owner.partition(" ")[0]


class Lease:
    """This process's hold on one secret's lock, for one rotation.

    Use as a context manager: ``with Lease(...) as lease:`` acquires (taking over from a
    holder that is gone), renews in the background while the block runs, and releases.

    Args:
        store: where the lock lives.
        ref: the secret.
        rotation: the rotation id this process works on.
        token: this process's random holder token (one per engine).
        ttl: the lease's length; the heartbeat renews every quarter of it (0: no heartbeat).
        clock: the wall clock (tests pass their own to expire leases without sleeping).
        ended: tells whether a rotation has ended (its lock is then free to take).
    """

    def __init__(
        self,
        store: Store,
        ref: SecretRef,
        rotation: str,
        *,
        token: str,
        ttl: timedelta = LEASE_TTL,
        clock: Callable[[], datetime] = utcnow,
        ended: Callable[[str], bool] = lambda _rotation: False,
        heartbeat: bool = True,
    ) -> None:
        self.store = store
        self.ref = ref
        self.holder = Holder.this_process(rotation, token)
        self.ttl = ttl
        self.clock = clock
        self._ended = ended
        self._heartbeat = heartbeat
        self._info: LockInfo | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    @staticmethod
    def new_token() -> str:
        return secrets.token_hex(12)

    @property
    def info(self) -> LockInfo:
        """The lock as the store knows it. `LeaseLost` if lost."""
        if self._lost is not None:
            raise LeaseLost(self._lost)
        if self._info is None:
            raise LeaseLost(f"{self.ref}: this process does not hold the lock")
        return self._info

    @property
    def fence(self) -> Fence:
        """What every write made under this lease carries."""
        info = self.info
        return Fence(self.ref, info.owner, info.generation)

    # --- taking and giving back ---------------------------------------------------------

    def acquire(self) -> LockInfo:
        """Take the lock, or renew it if this process holds it already.

        Raises:
            LockHeld: a live holder (here or elsewhere) has it; the message says until when.
            LeaseLost: this process held it and lost it meanwhile.
        """
        if self._info is not None:
            return self.renew()
        for _ in range(3):
            try:
                info = self.store.acquire_lock(self.ref, self.holder.owner, ttl=self.ttl,
                                               now=self.clock())
            except LockHeld:
                current = self.store.get_lock(self.ref, now=self.clock())
                if current is None:
                    continue  # expired in between
                if not self.abandoned(current.owner):
                    raise LockHeld(
                        f"{self.ref} is locked by rotation {rotation_of(current.owner)} "
                        f"({_who(current.owner)}) until {current.expires_at:%Y-%m-%d %H:%M:%S} "
                        "UTC: another keyroll process is working on it; busy, will retry"
                    ) from None
                self.store.release_lock(self.ref, current.owner)
                continue
            self._info = info
            return info
        raise LockHeld(f"{self.ref}: the lock kept changing hands; busy, will retry")

    def renew(self) -> LockInfo:
        """Extend the lease (same generation). `LeaseLost` if another process took it."""
        with self._mutex:
            if self._lost is not None:
                raise LeaseLost(self._lost)
            info = self.info
            try:
                self._info = self.store.acquire_lock(self.ref, info.owner, ttl=self.ttl,
                                                     now=self.clock(), generation=info.generation)
            except LeaseLost:
                self._lost = (
                    f"{self.ref}: this process lost its lock on rotation {self.holder.rotation} "
                    "(it was paused or cut off past its lease and another process took the "
                    "rotation over); it stopped and wrote nothing more: see `keyroll rotations`"
                )
                raise LeaseLost(self._lost) from None
            return self._info

    def check(self) -> None:
        """Before a side effect: the lease is still ours (renewed on the way)."""
        self.renew()

    def release(self) -> None:
        self._stop_heartbeat()
        if self._info is not None and self._lost is None:
            self.store.release_lock(self.ref, self._info.owner)
        self._info = None

    def abandoned(self, owner: str) -> bool:
        """A holder that can no longer act: its rotation ended, or its process is gone."""
        if self._ended(rotation_of(owner)):
            return True
        holder = Holder.parse(owner)
        return holder is not None and holder.gone()

    # --- heartbeat ----------------------------------------------------------------------

    def _beat(self) -> None:
        interval = max(self.ttl.total_seconds() / 4, 0.05)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LeaseLost:
                return
            except Exception:  # noqa: BLE001, S112  (the store down: the next beat retries)
                continue

    def _start_heartbeat(self) -> None:
        if self._heartbeat and self._thread is None and self.ttl > timedelta(0):
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="keyroll-lease",
                                            daemon=True)
            self._thread.start()

    def _stop_heartbeat(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Lease:
        self.acquire()
        self._start_heartbeat()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _who(owner: str) -> str:
    holder = Holder.parse(owner)
    return f"{holder.host} pid {holder.pid}" if holder is not None else owner


def rotation_ended(store: Store) -> Callable[[str], bool]:
    """``ended(rotation_id)``: the rotation is done or rolled back (its lock is free)."""

    def ended(rotation_id: str) -> bool:
        try:
            return store.get_rotation(rotation_id).state in TERMINAL
        except NotFound:
            return False

    return ended
