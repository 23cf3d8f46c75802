"""Where every secret stands: version, fingerprint, age, due date, days left, state.

Shared by ``keyroll status``, ``keyroll notify``, the dashboard and the metrics, so that they all
agree on what "due" means: a secret is *due* inside the environment's warn window before
``created + cadence``, *overdue* after it, *missing* when it has no current version. A TLS
certificate is due at its expiry minus its renew window (`keyroll.tlscert.due_from_meta`),
not after a cadence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from keyroll.inventory import Inventory, SecretClass
from keyroll.model import Kind, Label, SecretRef, Version
from keyroll.rotation.record import ACTIVE
from keyroll.stores.base import RotationRecord, Store
from keyroll.tlscert import DEFAULT_RENEW_BEFORE, due_from_meta

__all__ = ["ACTIVE_ROTATION_STATES", "SecretStatus", "State", "secret_status", "statuses"]

#: Every state of an unfinished rotation (the vocabulary lives in `keyroll.rotation.record`).
ACTIVE_ROTATION_STATES = ACTIVE


class State(StrEnum):
    OK = "ok"
    DUE = "due"
    OVERDUE = "overdue"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class SecretStatus:
    """One row of ``keyroll status`` (no value, only its fingerprint)."""

    cls: SecretClass
    ref: SecretRef
    version: int | None
    kid: str | None
    fingerprint: str | None
    created_at: datetime | None
    due_at: datetime | None
    days_left: int | None
    state: State
    rotation: str | None
    rotation_state: str | None
    previous_version: int | None
    pending_version: int | None

    def age_at(self, now: datetime) -> timedelta | None:
        return None if self.created_at is None else now - self.created_at

    def to_json(self, now: datetime) -> dict[str, object]:
        age = self.age_at(now)
        return {
            "class": self.cls.name,
            "environment": self.ref.environment,
            "kind": self.cls.kind.value,
            "tier": self.cls.tier.value,
            "owner": self.cls.owner,
            "version": self.version,
            "kid": self.kid,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "age_days": age.days if age is not None else None,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "days_left": self.days_left,
            "state": self.state.value,
            "rotation": self.rotation,
            "rotation_state": self.rotation_state,
            "previous_version": self.previous_version,
            "pending_version": self.pending_version,
        }


def secret_status(
    store: Store,
    inventory: Inventory,
    cls: SecretClass,
    ref: SecretRef,
    now: datetime,
    rotation: RotationRecord | None = None,
) -> SecretStatus:
    """Compute one secret's status at ``now``.

    Args:
        rotation: the secret's rotation in flight, if any (`statuses` reads them all once).
    """
    labels = store.get_labels(ref)
    current = labels.get(Label.CURRENT)
    version = store.get_version(ref, current) if current is not None else None
    due_at = days_left = None
    state = State.MISSING
    if version is not None:
        due_at = _due(cls, version)
        days_left = (due_at - now).days if due_at >= now else -((now - due_at).days + 1)
        warn = timedelta(days=inventory.policy(ref.environment).warn_days)
        if now >= due_at:
            state = State.OVERDUE
        elif now >= due_at - warn:
            state = State.DUE
        else:
            state = State.OK
    return SecretStatus(
        cls=cls,
        ref=ref,
        version=current,
        kid=version.kid_hex if version else None,
        fingerprint=version.fingerprint if version else None,
        created_at=version.created_at if version else None,
        due_at=due_at,
        days_left=days_left,
        state=state,
        rotation=rotation.id if rotation else None,
        rotation_state=rotation.state if rotation else None,
        previous_version=labels.get(Label.PREVIOUS),
        pending_version=labels.get(Label.PENDING),
    )


def _due(cls: SecretClass, version: Version) -> datetime:
    """When a version is due: a certificate's expiry minus its renew window; anything else
    (and a certificate whose validity was never recorded) ``created + cadence``."""
    if cls.kind is Kind.TLS_CERTIFICATE:
        try:
            due = due_from_meta(version.meta, cls.options.get("renew_before",
                                                              DEFAULT_RENEW_BEFORE))
        except ValueError:  # a bad renew_before: `inventory check` names it
            due = None
        if due is not None:
            return due
    return version.created_at + timedelta(days=cls.cadence_days)


def statuses(
    store: Store,
    inventory: Inventory,
    now: datetime,
    *,
    environment: str | None = None,
    now_for: Callable[[str], datetime] | None = None,
) -> list[SecretStatus]:
    """Status of every secret the inventory defines (optionally in one environment).

    Args:
        now_for: the time per environment, where it differs (a moved clock never applies
            to production environments); ``now`` otherwise.
    """
    in_flight: dict[SecretRef, RotationRecord] = {}
    for record in store.list_rotations():  # one read for all secrets, oldest first
        if record.state in ACTIVE_ROTATION_STATES:
            in_flight[record.ref] = record
    return [
        secret_status(store, inventory, cls, ref, now_for(ref.environment) if now_for else now,
                      in_flight.get(ref))
        for cls, ref in inventory.secrets(environment)
    ]
