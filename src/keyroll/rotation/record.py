"""The rotation record as every layer reads it: its states and its body, typed.

The store keeps a rotation as a `keyroll.stores.base.RotationRecord` whose body is JSON; only
this module reads or writes that JSON (`Rotation.parse`, `Rotation.to_record`). The engine,
the CLI, the reports, the status view and the dashboard all use the types below, so a field
is spelled once and a value derived once (the overlap's end, written at promote) is stored
once, not recomputed by each reader.

A leaf module: it imports only the core model and the store's record, so `keyroll.status`
and the dashboard can read it without pulling in the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from keyroll.model import Label, SecretRef
from keyroll.stores.base import RotationRecord

__all__ = [
    "ACTIVE",
    "FORWARD_STEPS",
    "STEPS",
    "TERMINAL",
    "Confirmation",
    "Direction",
    "ErrorInfo",
    "Rotation",
    "RotationBody",
    "RotationState",
    "StepEntry",
]


class RotationState(StrEnum):
    """Where a rotation is: the step it runs next, a pause, or its end.

    A `StrEnum`, so a state compares equal to its JSON spelling (``"overlap"``).
    """

    AWAITING_APPROVAL = "awaiting-approval"
    AWAITING_CONFIRMATION = "awaiting-confirmation"
    PLAN = "plan"
    CREATE = "create"
    APPLY = "apply"
    TEST = "test"
    PROMOTE = "promote"
    OVERLAP = "overlap"
    RETIRE = "retire"
    ROLLING_BACK = "rolling-back"
    DONE = "done"
    ROLLED_BACK = "rolled-back"


#: The steps of a rotation, in order (each is also a `RotationState`).
STEPS: tuple[RotationState, ...] = (
    RotationState.PLAN, RotationState.CREATE, RotationState.APPLY, RotationState.TEST,
    RotationState.PROMOTE, RotationState.OVERLAP, RotationState.RETIRE,
)
#: The steps before the new value is in use (a rollback there restores and destroys it).
FORWARD_STEPS = STEPS[:5]
TERMINAL = frozenset({RotationState.DONE, RotationState.ROLLED_BACK})
#: Every state of an unfinished rotation (`keyroll status`, the dashboard, the engine).
ACTIVE = frozenset(set(RotationState) - TERMINAL)


class Direction(StrEnum):
    """Which way a rotation runs. ``back``: rolled back after promote, it is a rotation back
    to the old version, with the rolled-back one accepted through an overlap, then retired."""

    FORWARD = "forward"
    BACK = "back"


@dataclass(frozen=True, slots=True)
class StepEntry:
    """One run of one step: when, how it ended, what it proved (no values)."""

    step: str
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, "started_at": self.started_at.isoformat()}
        if self.finished_at is not None:
            out["finished_at"] = self.finished_at.isoformat()
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if self.evidence:
            out["evidence"] = dict(self.evidence)
        return out

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> StepEntry:
        return cls(str(data["step"]), _time(data["started_at"]), _opt_time(data.get("finished_at")),
                   data.get("outcome"), dict(data.get("evidence") or {}))


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A manual step a person confirmed (``keyroll confirm``)."""

    name: str
    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a rotation stopped or rolled back (one line, no values)."""

    step: str
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RotationBody:
    """What a rotation knows besides its id, secret and state. Never a secret value.

    Attributes:
        kind: the class's kind when the rotation was requested.
        incident, drill: incident mode (no overlap, no way back) / a rehearsal.
        requested_by, approvals_required, approvals: the two-person rule.
        labels_before: the labels when the rotation was requested (restored by a rollback).
        old_version, new_version: the version replaced and the one replacing it.
        steps: every run of every step, in order.
        confirmations: manual steps confirmed; ``awaiting``/``resume_state`` while paused.
        strategy: the strategy's own notes (JSON).
        error: why it failed or was rolled back.
        waiting: the last reason the overlap gave for not ending yet.
        pending_since: when the new value became pending (propagation wait).
        overlap_started: promote time on the engine's clock; ``overlap_started_real`` on the
            wall clock (a moved clock can never shorten the overlap, see the engine).
        overlap_until: the overlap's earliest end, decided once at promote.
        direction: ``back`` once a rollback after promote turned it into a rotation back.
        reverted_at: when that happened.
        rollback: what the rollback did and verified afterwards.
        lease: the fencing generation of the lease of the last process that claimed it.
    """

    kind: str
    incident: bool = False
    drill: bool = False
    requested_by: str = ""
    approvals_required: int = 1
    approvals: tuple[str, ...] = ()
    labels_before: Mapping[Label, int] = field(default_factory=dict)
    old_version: int = 0
    new_version: int | None = None
    steps: tuple[StepEntry, ...] = ()
    confirmations: tuple[Confirmation, ...] = ()
    strategy: Mapping[str, Any] = field(default_factory=dict)
    error: ErrorInfo | None = None
    awaiting: str | None = None
    resume_state: RotationState | None = None
    waiting: str | None = None
    pending_since: datetime | None = None
    overlap_started: datetime | None = None
    overlap_started_real: datetime | None = None
    overlap_until: datetime | None = None
    direction: Direction = Direction.FORWARD
    reverted_at: datetime | None = None
    rollback: Mapping[str, Any] = field(default_factory=dict)
    lease: int = 0

    # --- derived facts ------------------------------------------------------------------

    @property
    def confirmed(self) -> frozenset[str]:
        return frozenset(c.name for c in self.confirmations)

    def ran(self, step: str) -> bool:
        """Whether ``step`` was started at least once (a crash may have cut it short)."""
        return any(entry.step == step for entry in self.steps)

    @property
    def retiring_version(self) -> int | None:
        """The version the retire step takes out: the old one, or on the way back the new."""
        return self.new_version if self.direction is Direction.BACK else self.old_version

    @property
    def keeping_version(self) -> int | None:
        """The version that stays current when the rotation ends."""
        return self.old_version if self.direction is Direction.BACK else self.new_version

    # --- JSON ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind, "incident": self.incident, "drill": self.drill,
            "requested_by": self.requested_by, "approvals_required": self.approvals_required,
            "approvals": list(self.approvals),
            "labels_before": {label.value: number for label, number in self.labels_before.items()},
            "old_version": self.old_version, "new_version": self.new_version,
            "steps": [entry.to_json() for entry in self.steps],
            "confirmations": [{"name": c.name, "by": c.by, "at": c.at.isoformat()}
                              for c in self.confirmations],
            "strategy": dict(self.strategy), "direction": self.direction.value,
            "lease": self.lease,
        }
        if self.error is not None:
            out["error"] = {"step": self.error.step, "message": self.error.message,
                            "at": self.error.at.isoformat()}
        for name in ("awaiting", "waiting"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.resume_state is not None:
            out["resume_state"] = self.resume_state.value
        for name in ("pending_since", "overlap_started", "overlap_started_real", "overlap_until",
                     "reverted_at"):
            moment = getattr(self, name)
            if moment is not None:
                out[name] = moment.isoformat()
        if self.rollback:
            out["rollback"] = dict(self.rollback)
        return out

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> RotationBody:
        """The body from its JSON; records written before a field existed get its default."""
        error = data.get("error")
        resume = data.get("resume_state")
        return cls(
            kind=str(data.get("kind", "")),
            incident=bool(data.get("incident")),
            drill=bool(data.get("drill")),
            requested_by=str(data.get("requested_by", "")),
            approvals_required=int(data.get("approvals_required", 1)),
            approvals=tuple(str(a) for a in data.get("approvals") or ()),
            labels_before={Label(k): int(v) for k, v in (data.get("labels_before") or {}).items()},
            old_version=int(data.get("old_version") or 0),
            new_version=int(data["new_version"]) if data.get("new_version") else None,
            steps=tuple(StepEntry.parse(s) for s in data.get("steps") or ()),
            confirmations=tuple(Confirmation(str(c["name"]), str(c["by"]), _time(c["at"]))
                                for c in data.get("confirmations") or ()),
            strategy=dict(data.get("strategy") or {}),
            error=ErrorInfo(str(error.get("step")), str(error.get("message")), _time(error["at"]))
            if isinstance(error, Mapping) and error.get("at") else None,
            awaiting=data.get("awaiting"),
            resume_state=RotationState(resume) if resume else None,
            waiting=data.get("waiting"),
            pending_since=_opt_time(data.get("pending_since")),
            overlap_started=_opt_time(data.get("overlap_started")),
            overlap_started_real=_opt_time(data.get("overlap_started_real")),
            overlap_until=_opt_time(data.get("overlap_until")),
            direction=Direction(data.get("direction") or Direction.FORWARD.value),
            reverted_at=_opt_time(data.get("reverted_at")),
            rollback=dict(data.get("rollback") or {}),
            lease=int(data.get("lease") or 0),
        )

    def but(self, **changes: Any) -> RotationBody:
        """A copy with some fields changed (`dataclasses.replace`)."""
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Rotation:
    """One rotation: the store's record with its state and body typed.

    Attributes:
        id, ref: the rotation id and the secret.
        state: the step it runs next, a pause, or its end.
        revision: the store's compare-and-set revision this copy was read at.
        created_at, updated_at: when it was first stored and last saved.
        body: everything else.
    """

    id: str
    ref: SecretRef
    state: RotationState
    revision: int
    created_at: datetime
    updated_at: datetime
    body: RotationBody

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def reverted(self) -> bool:
        """Rolled back after promote: a rotation back to the old version."""
        return self.body.direction is Direction.BACK

    @classmethod
    def parse(cls, record: RotationRecord) -> Rotation:
        return cls(record.id, record.ref, RotationState(record.state), record.revision,
                   record.created_at, record.updated_at, RotationBody.parse(record.body))

    def to_record(self) -> RotationRecord:
        return RotationRecord(self.id, self.ref, self.state.value, self.revision, self.created_at,
                              self.updated_at, self.body.to_json())


def _time(text: Any) -> datetime:
    return datetime.fromisoformat(str(text))


def _opt_time(text: Any) -> datetime | None:
    return datetime.fromisoformat(str(text)) if text else None
