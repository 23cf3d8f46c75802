"""The rotation state machine: resumable, audited, one writer per rotation.

::

    plan ─► create ─► apply ─► test ─► promote ─► overlap ─► retire ─► done
      └────────┴─────────┴────────┴───┐    │
                                      ▼    ▼ (after promote: a rotation back)
                              rollback    promote ─► overlap ─► retire ─► rolled-back
                              (target and  (old version current again; the rolled-back
                              labels        one accepted, never used to sign or encrypt,
                              restored)     until the overlap and its gates say it is unused)

The record's ``state`` is the step to run next (`keyroll.rotation.record`). Before a step's
side effect the engine writes "started" into the record; after it, it writes the next state.
Every step is idempotent, so a process killed at any instant is resumed by the next
``keyroll`` command (`Engine.run`, `Engine.advance`): the step runs again and finds its work
done.

One writer: a process works on a rotation only under the secret's lease
(`keyroll.rotation.lock`), claims the record with the lease's fencing generation before it
acts, and every save carries that generation and the revision this process last wrote. A
process paused past its lease while another took over stops at its next write
(`LeaseLost`) instead of writing a stale state over the record.

Failures: before promote, a rollback restores the target and the labels and destroys the new
value (nothing used it yet). At promote after the labels moved, and on ``keyroll rollback``
after promote, the rotation turns back: nothing that may be in use is destroyed. In incident
mode after create, and for provider secrets after the portal step, there is no way back: the
rotation stops where it is and the operator fixes forward.

The engine emits `Event`s to observers; it imports no typer, rich or FastAPI.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from keyroll.audit import Journal
from keyroll.durations import format_duration
from keyroll.errors import (
    Conflict,
    KeyrollError,
    LeaseLost,
    LockHeld,
    RotationRefused,
    StoreForbidden,
    StoreUnavailable,
)
from keyroll.inventory import EnvironmentPolicy, Inventory, SecretClass
from keyroll.model import Label, SecretRef, SecretValue, Version, utcnow
from keyroll.rotation import rollback as back
from keyroll.rotation import steps
from keyroll.rotation.deploy import HookRunner
from keyroll.rotation.events import Event, Observer
from keyroll.rotation.gates import closed_window, missing_rehearsal
from keyroll.rotation.lock import LEASE_TTL, START_TTL, Lease, rotation_ended
from keyroll.rotation.record import (
    ACTIVE,
    STEPS,
    TERMINAL,
    Confirmation,
    Direction,
    Rotation,
    RotationBody,
    RotationState,
    StepEntry,
)
from keyroll.rotation.rollback import MAX_SLEEP
from keyroll.rotation.strategies import ManualStep, StepContext, Strategy, strategy_for
from keyroll.status import State, statuses
from keyroll.stores.base import Fence, Store

__all__ = [
    "ACTIVE",
    "AWAITING_APPROVAL",
    "AWAITING_CONFIRMATION",
    "STEPS",
    "TERMINAL",
    "AdvanceReport",
    "Engine",
    "PlannedStep",
]

S = RotationState
AWAITING_APPROVAL = S.AWAITING_APPROVAL
AWAITING_CONFIRMATION = S.AWAITING_CONFIRMATION
ROLLING_BACK = S.ROLLING_BACK
APPROVAL_TTL = timedelta(days=7)  # an unapproved request expires (and stops blocking the secret)
_MAX_TRANSITIONS = 40
#: A clock further than this from the wall clock is a moved one (``--now``, tests).
_MOVED = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One line of ``keyroll rotate --dry-run``."""

    step: str
    description: str


@dataclass(frozen=True, slots=True)
class AdvanceReport:
    """What one ``keyroll advance`` tick did.

    ``busy`` lists rotations a live process holds right now: not a failure, the next tick
    retries them.
    """

    moved: tuple[str, ...]
    started: tuple[str, ...]
    waiting: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    busy: tuple[str, ...] = ()


class Engine:
    """Runs rotations against one store and inventory.

    Args:
        store: where records, labels, values and the journal live.
        inventory: the classes and environment policies.
        journal: the audit journal (its actor is who acts).
        clock: the engine's time source; tests and the demo pass a fixed or shifted one.
        observers: called with every `Event`.
        workdir: folder hooks run in (the inventory's).
        strategies: override the strategy per kind (tests).
        sleep: how the engine waits out short delays (the propagation of a pending key);
            tests pass one that moves their clock.
        wall_clock: real time. Leases run on it, and an overlap promoted on one clock and
            continued on another is measured on it too (see `_overlap_started`).
        lease_ttl: how long a lease lasts between heartbeats' renewals.
        stopping: asked between steps; once it answers True the engine finishes the step it
            is in, saves it, and takes no further step (``keyroll serve`` on SIGTERM).
        actor_groups: the groups the actor belongs to (from the store's identity), matched
            against ``group:<name>`` entries of an ``approvers`` list.
    """

    def __init__(
        self,
        store: Store,
        inventory: Inventory,
        *,
        journal: Journal,
        clock: Callable[[], datetime] = utcnow,
        observers: Sequence[Observer] = (),
        workdir: Path | None = None,
        strategies: Mapping[str, Strategy] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], datetime] = utcnow,
        lease_ttl: timedelta = LEASE_TTL,
        stopping: Callable[[], bool] = lambda: False,
        actor_groups: Collection[str] = (),
    ) -> None:
        self.store = store
        self.inventory = inventory
        self.journal = journal
        self.clock = clock
        self.wall_clock = wall_clock
        self.observers = list(observers)
        self.workdir = workdir or (inventory.path.parent if inventory.path else Path.cwd())
        self._strategies = dict(strategies or {})
        self.sleep = sleep
        self.lease_ttl = lease_ttl
        self.stopping = stopping
        self.actor_groups = frozenset(actor_groups)
        self._hooks = HookRunner(store, inventory, self.workdir)
        self._token = Lease.new_token()  # who holds a lock: this engine, never a PID alone
        self._lease: Lease | None = None

    @property
    def actor(self) -> str:
        return self.journal.actor

    # --- lookups --------------------------------------------------------------------------

    def strategy(self, cls: SecretClass) -> Strategy:
        if cls.kind.value in self._strategies:
            return self._strategies[cls.kind.value]
        strategy = strategy_for(cls.kind)
        self._strategies[cls.kind.value] = strategy
        return strategy

    def get(self, rotation_id: str) -> Rotation:
        return Rotation.parse(self.store.get_rotation(rotation_id))

    def in_flight(self) -> list[Rotation]:
        """Every rotation not yet done or rolled back, oldest first."""
        return [Rotation.parse(r) for r in self.store.list_rotations() if r.state in ACTIVE]

    def _class_of(self, record: Rotation) -> SecretClass:
        cls, _ = self.inventory.resolve(record.ref.name, record.ref.environment)
        return cls

    # --- events and journal ---------------------------------------------------------------

    def _emit(
        self,
        record: Rotation,
        kind: str,
        step: str | None,
        message: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> None:
        event = Event(record.id, record.ref, kind, step, message, self.clock(), dict(evidence or {}))
        for observer in self.observers:
            try:
                observer(event)
            except Exception:  # noqa: BLE001, S112  (a display must never break a rotation)
                continue

    def _audit(
        self,
        record: Rotation,
        action: str,
        *,
        outcome: str = "ok",
        evidence: Mapping[str, Any] | None = None,
        version: int | None = None,
        fingerprints: Iterable[str] = (),
    ) -> None:
        body = record.body
        extra: dict[str, Any] = {"drill": True} if body.drill else {}
        if body.incident:
            extra["incident"] = True
        if record.reverted:
            extra["direction"] = Direction.BACK.value
        self.journal.append(
            action, ref=record.ref, version=version, fingerprints=list(fingerprints),
            evidence={**extra, **dict(evidence or {})}, outcome=outcome, rotation=record.id,
            fence=self._fence(),  # a process that lost its lease adds nothing to the journal
        )

    # --- record persistence and the lease -------------------------------------------------

    def _save(self, record: Rotation, state: RotationState, body: RotationBody) -> Rotation:
        """Write the next state: compare-and-set on the revision this process last saw, and
        fenced by its lease (a process that lost the lease writes nothing)."""
        updated = Rotation(record.id, record.ref, state, record.revision, record.created_at,
                           self.clock(), body)
        try:
            saved = self.store.save_rotation(updated.to_record(), expected_revision=record.revision,
                                             fence=self._fence())
        except LeaseLost:
            raise
        except Conflict:
            if self._lease is not None:
                self._lease.check()  # lost the lease? then that is the error to report
            raise
        return Rotation.parse(saved)

    def _fence(self) -> Fence | None:
        """What every store write under the lease carries (None outside a lease)."""
        return self._lease.fence if self._lease is not None else None

    def _guard(self) -> None:
        """Before a side effect: this process still holds the lease (`LeaseLost` if not)."""
        if self._lease is not None:
            self._lease.check()

    def _new_lease(self, ref: SecretRef, rotation_id: str, ttl: timedelta) -> Lease:
        return Lease(self.store, ref, rotation_id, token=self._token, ttl=ttl,
                     clock=self.wall_clock, ended=rotation_ended(self.store))

    @contextmanager
    def _under(self, lease: Lease) -> Iterator[None]:
        """Make ``lease`` the one every write of this engine carries, for the block."""
        outer, self._lease = self._lease, lease
        try:
            yield
        finally:
            self._lease = outer

    @contextmanager
    def _holding(self, record: Rotation) -> Iterator[Rotation]:
        """Hold the secret's lease while the block works on the rotation, and claim the record
        with the lease's generation first (so any stale writer's next save fails).

        Raises:
            LockHeld: a live process holds it (busy, will retry).
        """
        if self._lease is not None:  # re-entrant: rollback from run, advance → run
            yield record
            return
        lease = self._new_lease(record.ref, record.id, self.lease_ttl)
        with lease, self._under(lease):
            claimed = self.get(record.id)
            if claimed.body.lease != lease.info.generation and not claimed.terminal:
                claimed = self._save(claimed, claimed.state,
                                     claimed.body.but(lease=lease.info.generation))
            yield claimed

    def _clear_abandoned(self, ref: SecretRef) -> None:
        """Free a lock left by a crashed process or an ended rotation (nobody else needs it)."""
        holder = self.store.get_lock(ref, now=self.wall_clock())
        if holder is None:
            return
        lease = self._new_lease(ref, "-", self.lease_ttl)
        if lease.abandoned(holder.owner):
            self.store.release_lock(ref, holder.owner)

    # --- starting -------------------------------------------------------------------------

    def _refuse_if_busy(self, ref: SecretRef) -> None:
        for other in self.store.list_rotations(ref):
            if other.state in ACTIVE:
                raise RotationRefused(
                    f"{ref}: rotation {other.id} is in flight (state {other.state}); finish it "
                    f"with `keyroll advance` or undo it with `keyroll rollback {other.id}`"
                )

    def _startable(
        self, name: str, environment: str
    ) -> tuple[SecretClass, SecretRef, Strategy, EnvironmentPolicy, dict[Label, int]]:
        """Everything a new rotation needs, checked: class, options, a current version, no
        other rotation in flight."""
        cls, ref = self.inventory.resolve(name, environment)
        strategy = self.strategy(cls)
        strategy.validate(cls)
        labels = self.store.get_labels(ref)
        if Label.CURRENT not in labels:
            raise RotationRefused(self._no_current(ref))
        self._refuse_if_busy(ref)
        return cls, ref, strategy, self.inventory.policy(environment), labels

    def preview(self, name: str, environment: str, *, incident: bool = False) -> list[PlannedStep]:
        """What ``rotate`` would do, without changing anything (``--dry-run``)."""
        cls, ref, strategy, policy, labels = self._startable(name, environment)
        current = self.store.get_version(ref, labels[Label.CURRENT])

        def hooks(kind: str) -> str:
            chosen = [h.label for h in getattr(cls.hooks, kind) if h.applies_to(environment)]
            return "; ".join(chosen) if chosen else "none"

        steps = []
        if policy.approvals > 1:
            steps.append(PlannedStep("approve", f"{policy.approvals} people: requester + "
                                     f"{policy.approvals - 1} other(s) with `keyroll approve`"))
        for manual in strategy.manual_steps:
            if not (incident and manual.name == "drain"):
                steps.append(PlannedStep(f"confirm {manual.name}",
                                         f"before {manual.before}: {manual.prompt}"))
        window = self.inventory.window_for(cls, environment)
        if window is not None:
            closed = closed_window(self.inventory, cls, ref, self.clock())
            steps.append(PlannedStep("window", f"{window}: "
                                     + ("not enforced (not production)" if not policy.production
                                        else "open now" if closed is None
                                        else f"closed: {closed.reason()}")))
        gate = self.inventory.rehearsal_for(cls, environment)
        if gate is not None:
            missing = missing_rehearsal(self.store, self.inventory, cls, ref, self.clock())
            steps.append(PlannedStep("rehearsal", missing or "a completed drill in "
                                     f"{' or '.join(gate.environments)} within "
                                     f"{format_duration(gate.within)}: found"))
        for entry in self.inventory.preflight_for(cls, environment):
            steps.append(PlannedStep("backup", f"{entry.label} before anything changes, to "
                                     f"{entry.dir}/ (path and SHA-256 as evidence)"))
        source = cls.generator.value if cls.generator else (
            "issued by the provider" if strategy.issues_value else "entered by a person")
        deadline = strategy.overlap_deadline(self._preview_context(cls, ref, incident, current))
        steps += [
            PlannedStep("plan", f"preflight {cls.kind.value}; current version {current.number} "
                        f"({current.fingerprint})"),
            PlannedStep("create", f"new value ({source}) stored as pending"),
            PlannedStep("apply", "target accepts the new value next to the current one"),
            PlannedStep("test", "prove the new value works"),
            PlannedStep("promote", f"pending → current, current → previous; on_promote: "
                        f"{hooks('on_promote')}; verify: {hooks('verify')}"),
            PlannedStep("overlap", "skipped (incident)" if incident else
                        f"at least {format_duration(deadline)}"
                        + (", then until the old value is unused" if cls.overlap.until_unused
                           else "")),
            PlannedStep("retire", "the target stops accepting the previous value"
                        + (f"; revoke: {hooks('revoke')}" if incident else "")),
        ]
        if incident:
            steps.append(PlannedStep("no way back", "an incident rotation never returns to the "
                                     "burned value: a failure after create stops it, fix forward"))
        return steps

    def _preview_context(
        self, cls: SecretClass, ref: SecretRef, incident: bool, current: Version
    ) -> StepContext:
        return StepContext(
            rotation="dry-run", ref=ref, cls=cls, policy=self.inventory.policy(ref.environment),
            inventory=self.inventory, store=self.store, now=self.clock(), incident=incident,
            old=current, new=None, state={}, evidence={}, workdir=self.workdir,
        )

    @staticmethod
    def _no_current(ref: SecretRef) -> str:
        return (
            f"{ref} has no current version to rotate: create one with `keyroll generate "
            f"{ref.name} --env {ref.environment}` or `keyroll import`"
        )

    def _refuse(self, ref: SecretRef, gate: str, message: str) -> None:
        """Journal a refused start (nothing else is written) and raise it."""
        self.journal.append("rotation.refused", ref=ref, outcome="refused",
                            evidence={"gate": gate, "reason": message})
        raise RotationRefused(message)

    def _gates(self, cls: SecretClass, ref: SecretRef, *, incident: bool, queue: bool) -> None:
        """The production gates (`keyroll.rotation.gates`): a missing rehearsal refuses; a
        closed change window refuses unless ``queue`` (then the plan step waits for it).
        Incident rotations pass both."""
        if incident:
            return
        now = self.clock()
        missing = missing_rehearsal(self.store, self.inventory, cls, ref, now)
        if missing is not None:
            self._refuse(ref, "require_rehearsal", missing)
        closed = closed_window(self.inventory, cls, ref, now)
        if closed is not None and not queue:
            self._refuse(ref, "window", f"{ref}: {closed.reason()}: run it then, or pass "
                         "--queue so `keyroll advance`/`keyroll serve` starts it in the window")

    def start(
        self, name: str, environment: str, *, incident: bool = False, drill: bool = False,
        queue: bool = False,
    ) -> Rotation:
        """Create a rotation record (under a short lease on the secret). Run it with `run`.

        Args:
            queue: outside a production change window, create the record anyway; its plan
                step waits for the window (`keyroll advance` / `serve` start it then).

        Raises:
            UnknownSecret: no such class or environment.
            RotationRefused: no current version, another rotation is in flight, or a
                production gate refused it (no recent rehearsal; outside the change window
                without ``queue``): the refusal is journaled, nothing else changed.
            LockHeld: another process holds the secret's lock.
        """
        cls, ref, _strategy, policy, labels = self._startable(name, environment)
        self._gates(cls, ref, incident=incident, queue=queue)
        now = self.clock()
        rotation_id = f"r-{now:%Y%m%d}-{secrets.token_hex(3)}"
        # serialises starters, so the busy check below is exact; short, because a process that
        # dies before its record exists must not block the secret for long on any host
        with self._new_lease(ref, rotation_id, START_TTL) as lease, self._under(lease):
            self._refuse_if_busy(ref)
            body = RotationBody(
                kind=cls.kind.value, incident=incident, drill=drill or policy.drill,
                requested_by=self.actor, approvals_required=policy.approvals,
                labels_before=dict(labels), old_version=labels[Label.CURRENT],
                lease=lease.info.generation,
            )
            state = AWAITING_APPROVAL if policy.approvals > 1 else S.PLAN
            record = Rotation(rotation_id, ref, state, 0, now, now, body)
            old = self.store.get_version(ref, labels[Label.CURRENT])
            lease.check()  # paused past the short lease? then someone else may have started
            self._audit(record, "rotation.requested", version=old.number,
                        fingerprints=[old.fingerprint],
                        evidence={"approvals_required": policy.approvals, "kind": cls.kind.value})
            lease.check()
            record = Rotation.parse(self.store.create_rotation(record.to_record(),
                                                              fence=lease.fence))
        self._emit(record, "requested", None, f"rotation {rotation_id} of {ref} requested"
                   + (" (incident)" if incident else "") + (" (drill)" if body.drill else ""))
        if state == AWAITING_APPROVAL:
            self._emit(record, "approval", None, f"{environment} needs {policy.approvals} people: "
                       f"another person runs `keyroll approve {rotation_id}`",
                       {"requested": True, "approvals_required": policy.approvals})
        return record

    # --- approvals and confirmations ------------------------------------------------------

    def approve(self, rotation_id: str) -> Rotation:
        """Record the current actor's approval.

        Refused, and each refusal journaled (``rotation.approve``, outcome ``refused``): the
        actor requested the rotation (self-approval), approved it already, or is not among the
        class's or environment's ``approvers`` (names, or ``group:<name>`` matched against the
        inventory's ``[groups]`` and the store identity's groups).

        Raises:
            RotationRefused: not waiting for approval, or one of the refusals above.
        """
        record = self.get(rotation_id)
        if record.state != AWAITING_APPROVAL:
            raise RotationRefused(f"rotation {rotation_id} is not waiting for approval (state "
                                  f"{record.state})")
        body = record.body
        refusal: str | None = None
        if self.actor == body.requested_by:
            refusal = (f"{self.actor} requested rotation {rotation_id} and cannot approve it: "
                       "another person must run `keyroll approve` (two-person rule)")
        elif self.actor in body.approvals:
            refusal = f"{self.actor} approved rotation {rotation_id} already"
        else:
            cls = self._class_of(record)
            allowed = self.inventory.approvers_for(cls, record.ref.environment)
            if allowed and not self.inventory.may_approve(self.actor, self.actor_groups, allowed):
                refusal = (f"{self.actor} may not approve rotations of {record.ref}: the "
                           f"approvers are {', '.join(allowed)} (keyroll.toml `approvers`)")
        if refusal is not None:
            self.journal.append("rotation.approve", ref=record.ref, rotation=record.id,
                                outcome="refused",
                                evidence={"approver": self.actor, "reason": refusal})
            raise RotationRefused(refusal)
        approvals = (*body.approvals, self.actor)
        enough = 1 + len(approvals) >= body.approvals_required
        record = self._save(record, S.PLAN if enough else AWAITING_APPROVAL,
                            body.but(approvals=approvals))
        self._audit(record, "rotation.approve", evidence={"approver": self.actor,
                                                          "complete": enough})
        self._emit(record, "approval", None, f"approved by {self.actor}"
                   + ("" if enough else "; more approvals needed"),
                   {"approver": self.actor, "complete": enough})
        return record

    def manual_step(self, record: Rotation, name: str) -> ManualStep:
        strategy = self.strategy(self._class_of(record))
        for manual in strategy.manual_steps:
            if manual.name == name:
                return manual
        names = ", ".join(m.name for m in strategy.manual_steps) or "none"
        raise RotationRefused(f"rotation {record.id} has no manual step {name!r} (steps: {names})")

    def confirm(
        self, rotation_id: str, name: str, value: SecretValue | None = None
    ) -> Rotation:
        """A person did a manual step; resume the rotation after it.

        Raises:
            RotationRefused: the rotation is not waiting for that step, or a value is missing.
        """
        record = self.get(rotation_id)
        waiting = record.body.awaiting
        if record.state != AWAITING_CONFIRMATION or waiting is None:
            raise RotationRefused(
                f"rotation {rotation_id} is not waiting for a confirmation (state {record.state})"
            )
        if name != waiting:
            raise RotationRefused(
                f"rotation {rotation_id} is waiting for {waiting!r}, not {name!r}: run "
                f"`keyroll confirm {rotation_id} {waiting}`"
            )
        manual = self.manual_step(record, name)
        evidence: dict[str, Any] = {"step": name, "by": self.actor}
        if manual.takes_value:
            if value is None or len(value) == 0:
                raise RotationRefused(f"step {name!r} needs the new value on stdin")
            version = self.store.put_version(
                record.ref, value, created_at=self.clock(),
                meta={"rotation": record.id, "entered_by": self.actor},
            )
            evidence["fingerprint"] = version.fingerprint
        body = record.body
        resume = body.resume_state or S.PLAN
        body = body.but(
            confirmations=(*body.confirmations, Confirmation(name, self.actor, self.clock())),
            awaiting=None, resume_state=None,
        )
        record = self._save(record, resume, body)
        self._audit(record, "rotation.confirm", evidence=evidence,
                    fingerprints=[evidence["fingerprint"]] if "fingerprint" in evidence else [])
        self._emit(record, "confirmed", resume, f"{name} confirmed by {self.actor}")
        return record

    # --- running --------------------------------------------------------------------------

    def run(self, rotation_id: str) -> Rotation:
        """Drive a rotation as far as it can go now; return its record.

        Stops at a terminal state, at a pause (approval, confirmation), or in an overlap whose
        end has not come. A failure before promote rolls back (the returned record says
        ``rolled-back`` with ``body.error``); one after it turns the rotation back or, where
        there is no way back, stops it where it is and raises `StepFailed`.

        Raises:
            LockHeld: a live process works on this rotation now (busy, will retry).
            LeaseLost: this process lost the lease while it worked (paused past it).
        """
        record = self.get(rotation_id)
        if record.terminal or record.state in (AWAITING_APPROVAL, AWAITING_CONFIRMATION):
            self._clear_abandoned(record.ref)
            return record
        with self._holding(record) as record:
            for _ in range(_MAX_TRANSITIONS):
                if record.terminal or record.state in (AWAITING_APPROVAL, AWAITING_CONFIRMATION):
                    return record
                if self.stopping():  # between steps: the one before is saved, nothing half done
                    return record
                try:
                    if record.state == ROLLING_BACK:
                        record = back.restore(self, record)
                    else:
                        moved, record = self._step(record)
                        if not moved:
                            return record
                except LeaseLost:
                    raise
                except Conflict:
                    # the record moved under us (a person approved, confirmed or rolled back):
                    # we still hold the lease (checked in _save), so re-read and go on
                    record = self.get(rotation_id)
            return self.get(rotation_id)

    def _context(self, record: Rotation, cls: SecretClass) -> StepContext:
        """What the strategy sees. On the way back, ``old`` is the version that retires (the
        rolled-back one) and ``new`` the one that stays, so every strategy's overlap, gates and
        retire work in reverse unchanged."""
        body = record.body
        versions = {v.number: v for v in self.store.list_versions(record.ref)}
        retiring = body.retiring_version
        keeping = body.keeping_version
        old = versions.get(retiring) if retiring else None
        new = versions.get(keeping) if keeping else None
        entered = None
        if body.new_version is None:
            mine = [v for v in versions.values()
                    if v.meta.get("rotation") == record.id and v.meta.get("entered_by")
                    and not v.destroyed]
            if mine:
                entered = self.store.read_value(record.ref, mine[-1].number)
        return StepContext(
            rotation=record.id, ref=record.ref, cls=cls,
            policy=self.inventory.policy(record.ref.environment), inventory=self.inventory,
            store=self.store, now=self.clock(), incident=body.incident, old=old,
            new=new, state=dict(body.strategy), evidence={}, workdir=self.workdir,
            entered=entered,
            emit=lambda message: self._emit(record, "progress", record.state, message),
            fence=self._fence(), back=body.direction is Direction.BACK,
        )

    def _pending_pause(self, record: Rotation, strategy: Strategy) -> ManualStep | None:
        if record.reverted:
            return None
        done = record.body.confirmed
        for manual in strategy.manual_steps:
            if manual.before != record.state or manual.name in done:
                continue
            if record.body.incident and manual.name == "drain":
                continue
            return manual
        return None

    def _moved_clock(self) -> bool:
        return abs(self.clock() - self.wall_clock()) > _MOVED

    def _overlap_started(self, body: RotationBody) -> datetime:
        """When the overlap began, on the clock the engine runs on now.

        On a moved clock (a drill's ``--now``, tests), the promote time on that clock. On the
        wall clock, the wall-clock promote time: a rotation promoted under a clock set in the
        past must not find its overlap over at once when it continues in real time.
        """
        assert body.overlap_started is not None
        if self._moved_clock() or body.overlap_started_real is None:
            return body.overlap_started
        return body.overlap_started_real

    def _step(self, record: Rotation) -> tuple[bool, Rotation]:
        """Run the record's current step. (moved on?, the record as this process saved it)."""
        cls = self._class_of(record)
        strategy = self.strategy(cls)
        step = record.state
        pause = self._pending_pause(record, strategy)
        if pause is not None:
            body = record.body.but(awaiting=pause.name, resume_state=step)
            record = self._save(record, AWAITING_CONFIRMATION, body)
            self._audit(record, "rotation.paused", evidence={"awaiting": pause.name})
            self._emit(record, "paused", step, f"waiting for a person: {pause.prompt}; then "
                       f"`keyroll confirm {record.id} {pause.name}`",
                       {"awaiting": pause.name, "takes_value": pause.takes_value})
            return False, record
        ctx = self._context(record, cls)
        if step == S.OVERLAP:
            verdict = strategy.overlap_done(ctx, self._overlap_started(record.body))
            if not verdict.done:
                if record.body.waiting != verdict.reason:
                    record = self._save(record, step, record.body.but(waiting=verdict.reason))
                self._emit(record, "waiting", step, verdict.reason, verdict.evidence)
                return False, record
            ctx.evidence.update(verdict.evidence)
            ctx.evidence["overlap"] = verdict.reason
        if (step == S.PROMOTE and not ctx.incident and not record.reverted
                and not self._propagated(record, ctx, strategy)):
            return False, record
        if step == S.PLAN and not ctx.incident:
            closed = closed_window(self.inventory, cls, record.ref, ctx.now)
            if closed is not None:  # parked, not failed: advance starts it in the window
                reason = closed.reason()
                if record.body.waiting != reason:
                    record = self._save(record, step, record.body.but(waiting=reason))
                    self._audit(record, "rotation.waiting",
                                evidence={"gate": "window", "reason": reason})
                self._emit(record, "waiting", step, reason,
                           {"window": str(closed.window), "opens": closed.opens.isoformat()})
                return False, record
        # the step is recorded before its side effect
        started = StepEntry(step.value, ctx.now)
        record = self._save(record, step, record.body.but(steps=(*record.body.steps, started)))
        self._emit(record, "step.started", step, f"{step}…")
        self._guard()
        try:
            record = steps.RUN[step](self, record, ctx, strategy) or record
        except (StoreUnavailable, StoreForbidden):
            # the store itself is out of reach: pause, and rerun this step when it is back.
            # Rolling back now would act on a state we cannot read.
            self._emit(record, "step.failed", step, "the store is unavailable: paused")
            raise
        except LeaseLost:
            raise
        except Exception as exc:  # noqa: BLE001  (every failure is recorded, then handled)
            return True, back.fail(self, record, step, ctx, exc)
        body = record.body
        finished = StepEntry(step.value, started.started_at, self.clock(), "ok", ctx.evidence)
        changes: dict[str, Any] = {"strategy": ctx.state, "steps": (*body.steps[:-1], finished),
                                   "waiting": None}
        if step == S.PROMOTE:
            began = self.clock()
            changes.update(overlap_started=began, overlap_started_real=self.wall_clock(),
                           overlap_until=began + strategy.overlap_deadline(ctx))
        last = step == S.RETIRE
        following = (S.ROLLED_BACK if record.reverted else S.DONE) if last else (
            STEPS[STEPS.index(step) + 1])
        if last and record.reverted:
            restored = self.store.get_labels(record.ref)
            changes["rollback"] = {"direction": Direction.BACK.value,
                                   "labels": {k.value: v for k, v in restored.items()},
                                   "verified": ctx.evidence.get("verified_current")}
        shown = ctx.new if not record.reverted else None
        # journal before the state: a crash between them repeats the entry, never loses it
        self._audit(record, f"rotation.{step.value}", evidence=ctx.evidence,
                    version=shown.number if shown else None,
                    fingerprints=[shown.fingerprint] if shown and step in (S.CREATE, S.PROMOTE)
                    else [])
        record = self._save(record, following, body.but(**changes))
        self._emit(record, "step.finished", step, "done", ctx.evidence)
        if following == S.DONE:
            self._audit(record, "rotation.done")
            self._emit(record, "done", None, f"rotation {record.id} of {record.ref} is done")
        elif following == S.ROLLED_BACK:
            self._audit(record, "rotation.rollback", outcome="rolled-back",
                        evidence={"direction": "back", "retired_version": body.new_version,
                                  "verified": ctx.evidence.get("verified_current")})
            self._emit(record, "rolled-back", "rollback", f"rotation {record.id} is rolled back: "
                       f"version {body.old_version} is current, version {body.new_version} "
                       "retired after its overlap")
        return True, record

    def _propagated(self, record: Rotation, ctx: StepContext, strategy: Strategy) -> bool:
        """Wait until running apps have loaded the pending key (short waits: sleep; long: later)."""
        since = record.body.pending_since
        if since is None:
            return True
        ready = since + strategy.propagation(ctx)
        left = (ready - ctx.now).total_seconds()
        if left <= 0:
            return True
        if left <= MAX_SLEEP:
            self._emit(record, "waiting", "promote", f"waiting {left:.0f}s for running apps to "
                       "load the new key before it signs anything")
            self.sleep(left)
            ctx.now = self.clock()
            return True
        self._emit(record, "waiting", "promote", f"apps load the new key until {ready:%H:%M:%S}")
        return False

    # --- rollback (`keyroll.rotation.rollback`) -------------------------------------------

    def rollback(self, rotation_id: str, *, reason: str = "requested") -> Rotation:
        """Undo a rotation.

        Before promote the target and the labels are restored and the new value destroyed.
        After promote it is a rotation back: the old version is current again, the rolled-back
        one stays accepted (verify/decrypt only) through the class's overlap and gates (token
        TTL, usage, rows still encrypted under it), then retires; `keyroll advance` moves it.

        Raises:
            RotationRefused: the rotation ended or is retiring already; or there is no way
                back (an incident rotation after create, a provider secret after the portal
                step): the message says to rotate forward.
        """
        return back.roll_back(self, rotation_id, reason=reason)

    # --- hooks ----------------------------------------------------------------------------

    def _run_hooks(
        self, record: Rotation, ctx: StepContext, which: str, *, check: bool = True
    ) -> list[dict[str, object]]:
        self._guard()
        return self._hooks.run(
            ctx, which, step=record.state.value, check=check,
            report=lambda line: self._emit(record, "hook", record.state, line),
        )

    # --- the cron tick --------------------------------------------------------------------

    def advance(
        self, *, start_due: bool = True, environments: Collection[str] | None = None
    ) -> AdvanceReport:
        """Move every in-flight rotation whose wait is over; start due ones where ``auto``;
        expire approval requests older than `APPROVAL_TTL`.

        Args:
            start_due: also start rotations that are due (where the inventory says ``auto``).
            environments: only these environments (default: all).
        """
        moved: list[str] = []
        started: list[str] = []
        waiting: list[str] = []
        failed: list[tuple[str, str]] = []
        busy: list[str] = []
        now = self.clock()
        for record in self.in_flight():
            if environments is not None and record.ref.environment not in environments:
                continue
            if self.stopping():
                break
            before = record.state
            try:
                if before == AWAITING_APPROVAL and now - record.created_at > APPROVAL_TTL:
                    after = self.rollback(record.id, reason="approval request expired")
                else:
                    after = self.run(record.id)
            except LeaseLost as exc:
                failed.append((record.id, str(exc)))
                continue
            except LockHeld:
                busy.append(record.id)
                continue
            except KeyrollError as exc:
                failed.append((record.id, str(exc)))
                continue
            (moved if after.state != before else waiting).append(record.id)
        if start_due:
            for row in statuses(self.store, self.inventory, now):
                if environments is not None and row.ref.environment not in environments:
                    continue
                auto = row.cls.auto if row.cls.auto is not None else (
                    self.inventory.policy(row.ref.environment).auto)
                if not auto or row.state not in (State.DUE, State.OVERDUE) or row.rotation:
                    continue
                if self.stopping():
                    break
                try:
                    # queued: outside a change window the plan step waits for it
                    record = self.start(row.cls.name, row.ref.environment, queue=True)
                    self.run(record.id)
                except LockHeld:
                    busy.append(str(row.ref))
                    continue
                except KeyrollError as exc:
                    failed.append((str(row.ref), str(exc)))
                    continue
                started.append(record.id)
        return AdvanceReport(tuple(moved), tuple(started), tuple(waiting), tuple(failed),
                             tuple(busy))
