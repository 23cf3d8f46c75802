"""The rotation state machine: resumable, audited, one rotation per secret at a time.

::

    plan ─► create ─► apply ─► test ─► promote ─► overlap ─► retire ─► done
      └────────┴─────────┴────────┴────────┴──── rollback (before retire: target and labels
                                                           restored)

The record's ``state`` is the step to run next. Before a step's side effect the engine writes
"started" into the record (compare-and-set on its revision); after it, it writes the next
state. Every step is idempotent, so a process killed at any instant is resumed by the next
``keyroll`` command (`Engine.run`, `Engine.advance`): the step runs again and finds its work
done. A failure before retire rolls back; a failure at overlap or retire leaves the rotation
where it is, to be retried (the old value may already be gone on the target).

The engine emits `Event`s to observers; it imports no typer, rich or FastAPI.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from keyroll.audit import Journal
from keyroll.durations import format_duration
from keyroll.errors import (
    Conflict,
    KeyrollError,
    LockHeld,
    NotFound,
    RotationRefused,
    StepFailed,
    StoreForbidden,
    StoreUnavailable,
)
from keyroll.inventory import EnvironmentPolicy, Inventory, SecretClass
from keyroll.model import Label, SecretRef, SecretValue, Version, utcnow
from keyroll.rotation.deploy import HookRunner
from keyroll.rotation.events import Event, Observer
from keyroll.rotation.strategies import ManualStep, StepContext, Strategy, strategy_for
from keyroll.status import ACTIVE_ROTATION_STATES, State, statuses
from keyroll.stores.base import RotationRecord, Store

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

STEPS = ("plan", "create", "apply", "test", "promote", "overlap", "retire")
AWAITING_APPROVAL = "awaiting-approval"
AWAITING_CONFIRMATION = "awaiting-confirmation"
ROLLING_BACK = "rolling-back"
TERMINAL = frozenset({"done", "rolled-back"})
ACTIVE = ACTIVE_ROTATION_STATES  # defined in status.py, which `keyroll status` reads too
_ROLLBACKABLE = frozenset({*STEPS[:6], AWAITING_APPROVAL, AWAITING_CONFIRMATION})
LOCK_TTL = timedelta(hours=1)  # renewed before every step; a crashed holder is detected
APPROVAL_TTL = timedelta(days=7)  # an unapproved request expires (and stops blocking the secret)
_MAX_SLEEP = 120.0
_MAX_TRANSITIONS = 40


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One line of ``keyroll rotate --dry-run``."""

    step: str
    description: str


@dataclass(frozen=True, slots=True)
class AdvanceReport:
    """What one ``keyroll advance`` tick did."""

    moved: tuple[str, ...]
    started: tuple[str, ...]
    waiting: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class Engine:
    """Runs rotations against one store and inventory.

    Args:
        store: where records, labels, values and the journal live.
        inventory: the classes and environment policies.
        journal: the audit journal (its actor is who acts).
        clock: the time source; tests and the demo pass a fixed or shifted one.
        observers: called with every `Event`.
        workdir: folder hooks run in (the inventory's).
        strategies: override the strategy per kind (tests).
        sleep: how the engine waits out short delays (the propagation of a pending key);
            tests pass one that moves their clock.
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
    ) -> None:
        self.store = store
        self.inventory = inventory
        self.journal = journal
        self.clock = clock
        self.observers = list(observers)
        self.workdir = workdir or (inventory.path.parent if inventory.path else Path.cwd())
        self._strategies = dict(strategies or {})
        self.sleep = sleep
        self._hooks = HookRunner(store, inventory, self.workdir)
        # who holds a lock: this process, on this host (a crashed holder is recognised by it)
        self._token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

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

    def get(self, rotation_id: str) -> RotationRecord:
        return self.store.get_rotation(rotation_id)

    def in_flight(self) -> list[RotationRecord]:
        """Every rotation not yet done or rolled back, oldest first."""
        return [r for r in self.store.list_rotations() if r.state in ACTIVE]

    def _class_of(self, record: RotationRecord) -> SecretClass:
        cls, _ = self.inventory.resolve(record.ref.name, record.ref.environment)
        return cls

    # --- events and journal ---------------------------------------------------------------

    def _emit(
        self,
        record: RotationRecord,
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
        record: RotationRecord,
        action: str,
        *,
        outcome: str = "ok",
        evidence: Mapping[str, Any] | None = None,
        version: int | None = None,
        fingerprints: Iterable[str] = (),
    ) -> None:
        body = record.body
        extra = {"drill": True} if body.get("drill") else {}
        if body.get("incident"):
            extra["incident"] = True
        self.journal.append(
            action, ref=record.ref, version=version, fingerprints=list(fingerprints),
            evidence={**extra, **dict(evidence or {})}, outcome=outcome, rotation=record.id,
        )

    # --- record persistence ---------------------------------------------------------------

    def _save(self, record: RotationRecord, state: str, body: Mapping[str, Any]) -> RotationRecord:
        """Write the next state (compare-and-set on the revision)."""
        updated = RotationRecord(
            record.id, record.ref, state, record.revision, record.created_at, self.clock(),
            dict(body),
        )
        return self.store.save_rotation(updated, expected_revision=record.revision)

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
        source = cls.generator.value if cls.generator else "entered by a person"
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
        return steps

    def _preview_context(
        self, cls: SecretClass, ref: SecretRef, incident: bool, current: Version
    ) -> StepContext:
        return StepContext(
            rotation="dry-run", ref=ref, cls=cls, policy=self.inventory.policy(ref.environment),
            inventory=self.inventory, store=self.store, now=self.clock(), incident=incident,
            old=current, new=None, state={}, evidence={}, workdir=self.workdir,
        )

    def _lock(self, ref: SecretRef, rotation_id: str) -> None:
        """Take the secret's lock for this process, taking it over from a holder that is
        gone: a process of this host that no longer runs, or a rotation that has ended.

        Raises:
            LockHeld: a live process (here or on another machine) holds it.
        """
        owner = f"{rotation_id} {self._token}"
        for _ in range(3):
            try:
                self.store.acquire_lock(ref, owner, ttl=LOCK_TTL, now=self.clock())
            except LockHeld:
                holder = self.store.get_lock(ref, now=self.clock())
                if holder is None:
                    continue  # expired in between
                if not self._abandoned(holder.owner):
                    until = f"{holder.expires_at:%Y-%m-%d %H:%M}"
                    raise LockHeld(
                        f"{ref} is locked by {holder.owner} until {until} UTC: another keyroll "
                        "process is working on it; wait for it (`keyroll rotations`)"
                    ) from None
                self.store.release_lock(ref, holder.owner)
            else:
                return
        raise LockHeld(f"{ref}: the lock kept changing hands; retry")

    def _clear_abandoned(self, ref: SecretRef) -> None:
        """Free a lock left by a crashed process or an ended rotation (nobody else needs it)."""
        holder = self.store.get_lock(ref, now=self.clock())
        if holder is not None and self._abandoned(holder.owner):
            self.store.release_lock(ref, holder.owner)

    def _unlock(self, ref: SecretRef, rotation_id: str) -> None:
        self.store.release_lock(ref, f"{rotation_id} {self._token}")

    def _abandoned(self, owner: str) -> bool:
        """A lock owner that can no longer act: its rotation ended, or its process is dead."""
        rotation_id, _, token = owner.partition(" ")
        try:
            if self.store.get_rotation(rotation_id).state in TERMINAL:
                return True
        except NotFound:
            pass
        host, _, rest = token.partition(":")
        pid_text = rest.partition(":")[0]
        if host != socket.gethostname() or not pid_text.isdigit():
            return False  # another machine: only the expiry frees it
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    @staticmethod
    def _no_current(ref: SecretRef) -> str:
        return (
            f"{ref} has no current version to rotate: create one with `keyroll generate "
            f"{ref.name} --env {ref.environment}` or `keyroll import`"
        )

    def start(
        self, name: str, environment: str, *, incident: bool = False, drill: bool = False
    ) -> RotationRecord:
        """Create a rotation record (and take the secret's lock). Run it with `run`.

        Raises:
            UnknownSecret: no such class or environment.
            RotationRefused: no current version, or another rotation is in flight.
            LockHeld: another process holds the secret's lock.
        """
        cls, ref, _strategy, policy, labels = self._startable(name, environment)
        now = self.clock()
        rotation_id = f"r-{now:%Y%m%d}-{secrets.token_hex(3)}"
        self._lock(ref, rotation_id)  # serialises starters: the busy check below is exact
        try:
            self._refuse_if_busy(ref)
            body: dict[str, Any] = {
                "kind": cls.kind.value,
                "incident": incident,
                "drill": drill or policy.drill,
                "requested_by": self.actor,
                "approvals_required": policy.approvals,
                "approvals": [],
                "labels_before": {k.value: v for k, v in labels.items()},
                "old_version": labels[Label.CURRENT],
                "new_version": None,
                "steps": [],
                "confirmations": [],
                "strategy": {},
            }
            state = AWAITING_APPROVAL if policy.approvals > 1 else "plan"
            record = RotationRecord(rotation_id, ref, state, 0, now, now, body)
            old = self.store.get_version(ref, labels[Label.CURRENT])
            self._audit(record, "rotation.requested", version=old.number,
                        fingerprints=[old.fingerprint],
                        evidence={"approvals_required": policy.approvals, "kind": cls.kind.value})
            record = self.store.create_rotation(record)
        finally:
            self._unlock(ref, rotation_id)
        self._emit(record, "requested", None, f"rotation {rotation_id} of {ref} requested"
                   + (" (incident)" if incident else "") + (" (drill)" if body["drill"] else ""))
        if state == AWAITING_APPROVAL:
            self._emit(record, "approval", None, f"{environment} needs {policy.approvals} people: "
                       f"another person runs `keyroll approve {rotation_id}`")
        return record

    # --- approvals and confirmations ------------------------------------------------------

    def approve(self, rotation_id: str) -> RotationRecord:
        """Record the current actor's approval; self-approval is refused.

        Raises:
            RotationRefused: not waiting for approval, or the actor requested/approved already.
        """
        record = self.get(rotation_id)
        if record.state != AWAITING_APPROVAL:
            raise RotationRefused(f"rotation {rotation_id} is not waiting for approval (state "
                                  f"{record.state})")
        body = dict(record.body)
        if self.actor == body["requested_by"]:
            raise RotationRefused(
                f"{self.actor} requested rotation {rotation_id} and cannot approve it: another "
                "person must run `keyroll approve` (two-person rule)"
            )
        if self.actor in body["approvals"]:
            raise RotationRefused(f"{self.actor} approved rotation {rotation_id} already")
        body["approvals"] = [*body["approvals"], self.actor]
        enough = 1 + len(body["approvals"]) >= int(body["approvals_required"])
        record = self._save(record, "plan" if enough else AWAITING_APPROVAL, body)
        self._audit(record, "rotation.approve", evidence={"approver": self.actor,
                                                          "complete": enough})
        self._emit(record, "approval", None, f"approved by {self.actor}"
                   + ("" if enough else "; more approvals needed"))
        return record

    def manual_step(self, record: RotationRecord, name: str) -> ManualStep:
        strategy = self.strategy(self._class_of(record))
        for manual in strategy.manual_steps:
            if manual.name == name:
                return manual
        names = ", ".join(m.name for m in strategy.manual_steps) or "none"
        raise RotationRefused(f"rotation {record.id} has no manual step {name!r} (steps: {names})")

    def confirm(
        self, rotation_id: str, name: str, value: SecretValue | None = None
    ) -> RotationRecord:
        """A person did a manual step; resume the rotation after it.

        Raises:
            RotationRefused: the rotation is not waiting for that step, or a value is missing.
        """
        record = self.get(rotation_id)
        waiting = record.body.get("awaiting")
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
        body = dict(record.body)
        evidence: dict[str, Any] = {"step": name, "by": self.actor}
        if manual.takes_value:
            if value is None or len(value) == 0:
                raise RotationRefused(f"step {name!r} needs the new value on stdin")
            version = self.store.put_version(
                record.ref, value, created_at=self.clock(),
                meta={"rotation": record.id, "entered_by": self.actor},
            )
            evidence["fingerprint"] = version.fingerprint
        body["confirmations"] = [
            *body["confirmations"], {"name": name, "by": self.actor, "at": _iso(self.clock())}
        ]
        body.pop("awaiting", None)
        resume = str(body.pop("resume_state"))
        record = self._save(record, resume, body)
        self._audit(record, "rotation.confirm", evidence=evidence,
                    fingerprints=[evidence["fingerprint"]] if "fingerprint" in evidence else [])
        self._emit(record, "confirmed", resume, f"{name} confirmed by {self.actor}")
        return record

    # --- running --------------------------------------------------------------------------

    def run(self, rotation_id: str) -> RotationRecord:
        """Drive a rotation as far as it can go now; return its record.

        Stops at a terminal state, at a pause (approval, confirmation), or in an overlap whose
        end has not come. A failure before retire rolls back (the returned record says
        ``rolled-back`` with ``body["error"]``); a failure at overlap or retire raises.
        """
        record = self.get(rotation_id)
        if record.state in TERMINAL or record.state in (AWAITING_APPROVAL,
                                                        AWAITING_CONFIRMATION):
            self._clear_abandoned(record.ref)
            return record
        self._lock(record.ref, record.id)
        try:
            for _ in range(_MAX_TRANSITIONS):
                record = self.get(rotation_id)
                if record.state in TERMINAL or record.state in (AWAITING_APPROVAL,
                                                                AWAITING_CONFIRMATION):
                    return record
                self._lock(record.ref, record.id)  # renew before every step
                try:
                    if record.state == ROLLING_BACK:
                        self._rollback(record)
                    elif not self._step(record):
                        return self.get(rotation_id)
                except Conflict as exc:
                    if isinstance(exc, LockHeld):
                        raise
                    continue  # the record moved under us (a person acted): re-read, go on
            return self.get(rotation_id)
        finally:
            self._unlock(record.ref, record.id)

    def _context(self, record: RotationRecord, cls: SecretClass) -> StepContext:
        body = record.body
        versions = {v.number: v for v in self.store.list_versions(record.ref)}
        old = versions.get(body["old_version"]) if body.get("old_version") else None
        new = versions.get(body["new_version"]) if body.get("new_version") else None
        entered = None
        if new is None:
            mine = [v for v in versions.values()
                    if v.meta.get("rotation") == record.id and v.meta.get("entered_by")
                    and not v.destroyed]
            if mine:
                entered = self.store.read_value(record.ref, mine[-1].number)
        return StepContext(
            rotation=record.id, ref=record.ref, cls=cls,
            policy=self.inventory.policy(record.ref.environment), inventory=self.inventory,
            store=self.store, now=self.clock(), incident=bool(body.get("incident")), old=old,
            new=new, state=dict(body.get("strategy") or {}), evidence={}, workdir=self.workdir,
            entered=entered,
            emit=lambda message: self._emit(record, "progress", record.state, message),
        )

    def _pending_pause(self, record: RotationRecord, strategy: Strategy) -> ManualStep | None:
        done = {c["name"] for c in record.body.get("confirmations", [])}
        for manual in strategy.manual_steps:
            if manual.before != record.state or manual.name in done:
                continue
            if record.body.get("incident") and manual.name == "drain":
                continue
            return manual
        return None

    def _step(self, record: RotationRecord) -> bool:
        """Run the record's current step. True if it moved on, False if it must wait."""
        cls = self._class_of(record)
        strategy = self.strategy(cls)
        step = record.state
        pause = self._pending_pause(record, strategy)
        if pause is not None:
            body = {**record.body, "awaiting": pause.name, "resume_state": step}
            record = self._save(record, AWAITING_CONFIRMATION, body)
            self._audit(record, "rotation.paused", evidence={"awaiting": pause.name})
            self._emit(record, "paused", step, f"waiting for a person: {pause.prompt}; then "
                       f"`keyroll confirm {record.id} {pause.name}`",
                       {"awaiting": pause.name, "takes_value": pause.takes_value})
            return False
        ctx = self._context(record, cls)
        if step == "overlap":
            started = datetime.fromisoformat(record.body["overlap_started"])
            verdict = strategy.overlap_done(ctx, started)
            if not verdict.done:
                if record.body.get("waiting") != verdict.reason:
                    record = self._save(record, step, {**record.body, "waiting": verdict.reason})
                self._emit(record, "waiting", step, verdict.reason, verdict.evidence)
                return False
            ctx.evidence.update(verdict.evidence)
            ctx.evidence["overlap"] = verdict.reason
        if step == "promote" and not ctx.incident and not self._propagated(record, ctx, strategy):
            return False
        # the step is recorded before its side effect
        steps = [*record.body["steps"], {"step": step, "started_at": _iso(ctx.now)}]
        record = self._save(record, step, {**record.body, "steps": steps})
        self._emit(record, "step.started", step, f"{step}…")
        try:
            getattr(self, f"_do_{step}")(record, ctx, strategy)
        except (StoreUnavailable, StoreForbidden):
            # the store itself is out of reach: pause, and rerun this step when it is back.
            # Rolling back now would act on a state we cannot read.
            self._emit(record, "step.failed", step, "the store is unavailable: paused")
            raise
        except Exception as exc:  # noqa: BLE001  (every failure is recorded, then handled)
            self._failed(self.get(record.id), step, ctx, exc)
            return True
        record = self.get(record.id)
        body = dict(record.body)
        body["strategy"] = ctx.state
        body["steps"] = [*body["steps"][:-1], {
            **body["steps"][-1], "finished_at": _iso(self.clock()), "outcome": "ok",
            "evidence": ctx.evidence,
        }]
        body.pop("waiting", None)
        following = "done" if step == "retire" else STEPS[STEPS.index(step) + 1]
        if step == "promote":
            body["overlap_started"] = _iso(self.clock())
        new = ctx.new or (self.store.get_version(record.ref, body["new_version"])
                          if body.get("new_version") else None)
        # journal before the state: a crash between them repeats the entry, never loses it
        self._audit(record, f"rotation.{step}", evidence=ctx.evidence,
                    version=new.number if new else None,
                    fingerprints=[new.fingerprint] if new and step in ("create", "promote") else [])
        record = self._save(record, following, body)
        self._emit(record, "step.finished", step, "done", ctx.evidence)
        if following == "done":
            self._audit(record, "rotation.done")
            self._emit(record, "done", None, f"rotation {record.id} of {record.ref} is done")
        return True

    def _propagated(self, record: RotationRecord, ctx: StepContext, strategy: Strategy) -> bool:
        """Wait until running apps have loaded the pending key (short waits: sleep; long: later)."""
        since = record.body.get("pending_since")
        if since is None:
            return True
        ready = datetime.fromisoformat(since) + strategy.propagation(ctx)
        left = (ready - ctx.now).total_seconds()
        if left <= 0:
            return True
        if left <= _MAX_SLEEP:
            self._emit(record, "waiting", "promote", f"waiting {left:.0f}s for running apps to "
                       "load the new key before it signs anything")
            self.sleep(left)
            ctx.now = self.clock()
            return True
        self._emit(record, "waiting", "promote", f"apps load the new key until {ready:%H:%M:%S}")
        return False

    def _failed(self, record: RotationRecord, step: str, ctx: StepContext, exc: Exception) -> None:
        # keyroll's own errors never carry a value; anything else may quote one (a driver's
        # message with a statement in it), so only its type is kept
        message = str(exc) if isinstance(exc, KeyrollError) else (
            f"{exc.__class__.__name__} in step {step} (details withheld: they may quote a value)"
        )
        body = dict(record.body)
        body["error"] = {"step": step, "message": message, "at": _iso(self.clock())}
        body["steps"] = [*body["steps"][:-1], {
            **body["steps"][-1], "finished_at": _iso(self.clock()), "outcome": "failed",
            "evidence": {**ctx.evidence, "error": message},
        }]
        self._emit(record, "step.failed", step, message)
        if step in ("overlap", "retire"):
            record = self._save(record, step, body)
            self._audit(record, f"rotation.{step}", outcome="failed",
                        evidence={**ctx.evidence, "error": message})
            raise StepFailed(
                f"rotation {record.id}: {step} failed: {message}; fix it and run "
                "`keyroll advance` to retry (rolling back is no longer safe)"
            ) from None
        body["strategy"] = ctx.state
        record = self._save(record, ROLLING_BACK, body)
        self._audit(record, f"rotation.{step}", outcome="failed",
                    evidence={**ctx.evidence, "error": message})
        self._rollback(record)

    # --- the steps ------------------------------------------------------------------------

    def _do_plan(self, record: RotationRecord, ctx: StepContext, strategy: Strategy) -> None:
        body = record.body
        required = int(body.get("approvals_required", 1))
        if 1 + len(body.get("approvals", [])) < required:
            raise RotationRefused(f"rotation {record.id} needs {required} approvals")
        labels = self.store.get_labels(record.ref)
        if labels.get(Label.CURRENT) != body["old_version"]:
            raise RotationRefused(f"{record.ref}: current version moved since the rotation was "
                                  "requested")
        strategy.plan(ctx)
        if ctx.old is not None:
            ctx.evidence["current"] = {"version": ctx.old.number, "fingerprint": ctx.old.fingerprint}
        if body.get("approvals"):
            ctx.evidence["approved_by"] = list(body["approvals"])

    def _do_create(self, record: RotationRecord, ctx: StepContext, strategy: Strategy) -> None:
        labels = self.store.get_labels(record.ref)
        mine = [v for v in self.store.list_versions(record.ref)
                if v.meta.get("rotation") == record.id and not v.destroyed]
        if mine:  # a crash after put_version: reuse what this rotation stored
            version = mine[-1]
        else:
            value = strategy.create(ctx)
            meta = {"rotation": record.id, **strategy.version_meta(ctx)}
            if ctx.cls.generator is not None and ctx.entered is None:
                meta["generator"] = ctx.cls.generator.value
            version = self.store.put_version(record.ref, value, created_at=ctx.now, meta=meta)
        if labels.get(Label.PENDING) != version.number:
            self.store.set_labels(
                record.ref, expected={Label.PENDING: labels.get(Label.PENDING)},
                new={Label.PENDING: version.number},
            )
        ctx.new = version
        body = {**record.body, "new_version": version.number,
                "pending_since": record.body.get("pending_since") or _iso(ctx.now)}
        self._save(record, record.state, body)
        ctx.evidence["new"] = {"version": version.number, "fingerprint": version.fingerprint,
                               "kid": version.kid_hex}

    def _do_apply(self, record: RotationRecord, ctx: StepContext, strategy: Strategy) -> None:
        strategy.apply(ctx)
        if strategy.propagation(ctx) > timedelta(0) and not ctx.incident:
            # stage the new key (<VAR>_NEXT, accepted, not signing) with the same deploy that
            # promote uses: every instance accepts it before any instance signs with it
            ctx.evidence["staged"] = self._run_hooks(record, ctx, "on_promote")

    def _do_test(self, record: RotationRecord, ctx: StepContext, strategy: Strategy) -> None:
        strategy.test(ctx)

    def _do_promote(self, record: RotationRecord, ctx: StepContext, strategy: Strategy) -> None:
        assert ctx.new is not None
        labels = self.store.get_labels(record.ref)
        old, new = record.body["old_version"], ctx.new.number
        if labels.get(Label.CURRENT) != new:
            self.store.set_labels(
                record.ref,
                expected={Label.CURRENT: old, Label.PENDING: new,
                          Label.PREVIOUS: labels.get(Label.PREVIOUS)},
                new={Label.CURRENT: new, Label.PREVIOUS: old, Label.PENDING: None},
            )
        strategy.promote(ctx)
        ctx.evidence["hooks"] = self._run_hooks(record, ctx, "on_promote")
        ctx.evidence["verify"] = self._run_hooks(record, ctx, "verify")

    def _do_overlap(self, record: RotationRecord, ctx: StepContext, strategy: Strategy) -> None:
        """The wait itself happened in `_step`; nothing to do on the target."""

    def _do_retire(self, record: RotationRecord, ctx: StepContext, strategy: Strategy) -> None:
        strategy.retire(ctx)
        labels = self.store.get_labels(record.ref)
        old = record.body["old_version"]
        if labels.get(Label.PREVIOUS) == old:
            self.store.set_labels(record.ref, expected={Label.PREVIOUS: old},
                                  new={Label.PREVIOUS: None})
        ctx.evidence["retired"] = {"version": old,
                                   "fingerprint": ctx.old.fingerprint if ctx.old else None}
        if ctx.incident:
            strategy.revoke(ctx)
            ctx.evidence["revoke"] = self._run_hooks(record, ctx, "revoke", check=False)
        # deployments must stop carrying the previous value (*_PREVIOUS vars); the hooks run
        # before the value is destroyed, so their output is still masked with it
        ctx.evidence["hooks"] = self._run_hooks(record, ctx, "on_promote", check=False)
        # destroy even if the index says destroyed: a crash may have cut a backend's two-part
        # destroy in half (destroying again is a no-op); also values entered but not used
        labelled = set(self.store.get_labels(record.ref).values())
        for version in self.store.list_versions(record.ref):
            if version.number in labelled:
                continue
            if version.number == old or version.meta.get("rotation") == record.id:
                self.store.destroy_version(record.ref, version.number)

    # --- rollback -------------------------------------------------------------------------

    def rollback(self, rotation_id: str, *, reason: str = "requested") -> RotationRecord:
        """Undo a rotation that has not started retiring.

        Raises:
            RotationRefused: the rotation is done, rolled back, or retiring already.
        """
        record = self.get(rotation_id)
        if record.state not in _ROLLBACKABLE and record.state != ROLLING_BACK:
            raise RotationRefused(
                f"rotation {rotation_id} is {record.state}: too late to roll back (the old value "
                "is retired or retiring); rotate forward instead"
            )
        self._lock(record.ref, record.id)
        try:
            record = self.get(rotation_id)  # again, under the lock
            if record.state != ROLLING_BACK:
                body = {**record.body, "error": record.body.get("error") or {
                    "step": record.state, "message": f"rolled back: {reason} by {self.actor}",
                    "at": _iso(self.clock())}}
                record = self._save(record, ROLLING_BACK, body)
            return self._rollback(record)
        finally:
            self._unlock(record.ref, record.id)

    def _rollback(self, record: RotationRecord) -> RotationRecord:
        """Restore labels, deployments, then the target. Idempotent: safe to rerun.

        The order keeps the invariant: the labels go back first (the old value is still
        accepted by the target, which only ever *gained* a credential), the deployments follow,
        apps get the propagation time to reload, and only then does the target stop accepting
        the new value. If the target cannot be reset, the rotation stays ``rolling-back`` and
        the next ``keyroll advance`` tries again.

        Raises:
            StepFailed: the target could not be reset (labels and deployments are restored).
        """
        cls = self._class_of(record)
        strategy = self.strategy(cls)
        ctx = self._context(record, cls)
        self._emit(record, "step.started", "rollback", "rolling back…")
        evidence: dict[str, Any] = {}
        before = {Label(k): int(v) for k, v in record.body.get("labels_before", {}).items()}
        versions = [v for v in self.store.list_versions(record.ref)
                    if v.meta.get("rotation") == record.id]
        mine = {v.number for v in versions}
        # values are destroyed only after the target was reset: if one is gone, a run before
        # a crash already reset the target (and the strategy could no longer read the value)
        target_reset = any(v.destroyed for v in versions)
        labels = self.store.get_labels(record.ref)
        if mine & set(labels.values()):  # found by meta: a crash may have lost new_version
            self.store.set_labels(
                record.ref,
                expected={label: labels.get(label) for label in Label},
                new={label: before.get(label) for label in Label},
            )
        # from the history, not the labels: a rerun after a crash must still redeploy
        steps = record.body.get("steps", [])
        if any(s["step"] in ("apply", "promote") for s in steps):
            evidence["hooks"] = self._run_hooks(record, ctx, "on_promote", check=False)
        resets_target = type(strategy).rollback is not Strategy.rollback
        if resets_target and any(s["step"] == "promote" for s in steps):
            # apps reload the old credential before the new one stops working
            self.sleep(min(cls.overlap.propagation.total_seconds(), _MAX_SLEEP))
        try:
            if not target_reset:
                strategy.rollback(ctx)
        except KeyrollError as exc:
            failed = {**record.body, "rollback": {**evidence, "target_error": str(exc)}}
            self._save(record, ROLLING_BACK, failed)
            self._audit(record, "rotation.rollback", outcome="failed",
                        evidence={"target_error": str(exc)})
            raise StepFailed(
                f"rotation {record.id}: labels and deployments are restored, but the target "
                f"could not be reset: {exc}; fix it and run `keyroll advance` to finish the "
                "rollback"
            ) from None
        for number in sorted(mine):
            if number not in self.store.get_labels(record.ref).values():
                self.store.destroy_version(record.ref, number)
        restored = self.store.get_labels(record.ref)
        evidence["labels"] = {k.value: v for k, v in restored.items()}
        record = self._save(record, "rolled-back", {**record.body, "rollback": evidence})
        self._audit(record, "rotation.rollback", outcome="rolled-back",
                    evidence={**evidence, "error": record.body.get("error")})
        self._emit(record, "rolled-back", "rollback", "rolled back: labels and target restored",
                   evidence)
        return record

    # --- hooks ----------------------------------------------------------------------------

    def _run_hooks(
        self, record: RotationRecord, ctx: StepContext, which: str, *, check: bool = True
    ) -> list[dict[str, object]]:
        return self._hooks.run(
            ctx, which, step=record.state, check=check,
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
        now = self.clock()
        for record in self.in_flight():
            if environments is not None and record.ref.environment not in environments:
                continue
            before = record.state
            try:
                if before == AWAITING_APPROVAL and now - record.created_at > APPROVAL_TTL:
                    after = self.rollback(record.id, reason="approval request expired")
                else:
                    after = self.run(record.id)
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
                try:
                    record = self.start(row.cls.name, row.ref.environment)
                    self.run(record.id)
                except KeyrollError as exc:
                    failed.append((str(row.ref), str(exc)))
                    continue
                started.append(record.id)
        return AdvanceReport(tuple(moved), tuple(started), tuple(waiting), tuple(failed))
