"""The gates a production rotation passes before it starts: the change window and the staging
rehearsal (seed 004 §7: "Change window", "Staging rehearsal completed within last 14 days").

Both are read from the inventory (`Inventory.window_for`, `Inventory.rehearsal_for`) and only
bind environments marked ``production``; an incident rotation passes both (a leaked value is
rotated now, and the journal says the gate was bypassed). `Engine.start` refuses a rotation
that fails a gate before any record exists (journaled as ``rotation.refused``, nothing else
written); a rotation already in flight, or queued with ``--queue``, parks before its plan
step until the window opens (`keyroll advance` and `keyroll serve` start it then).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from keyroll.durations import format_duration
from keyroll.inventory import Inventory, SecretClass
from keyroll.model import SecretRef
from keyroll.rehearsal import last_rehearsal
from keyroll.stores.base import Store
from keyroll.window import ChangeWindow

__all__ = ["ClosedWindow", "closed_window", "missing_rehearsal", "rehearsal_evidence"]


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A production rotation asked to start outside its change window."""

    window: ChangeWindow
    opens: datetime

    def reason(self) -> str:
        """One line for the waiting state and the journal."""
        return (f"outside the change window {self.window}: it opens at "
                f"{self.opens:%Y-%m-%d %H:%M} UTC")


def closed_window(inventory: Inventory, cls: SecretClass, ref: SecretRef,
                  now: datetime) -> ClosedWindow | None:
    """The closed window a rotation of ``cls`` in ``ref``'s environment must wait for at
    ``now``, or None (no window, not production, or inside it)."""
    if not inventory.policy(ref.environment).production:
        return None
    window = inventory.window_for(cls, ref.environment)
    if window is None or window.contains(now):
        return None
    return ClosedWindow(window, window.next_open(now))


def missing_rehearsal(store: Store, inventory: Inventory, cls: SecretClass, ref: SecretRef,
                      now: datetime) -> str | None:
    """Why a production rotation of ``cls`` may not start for want of a rehearsal (one line
    saying what to do), or None when the gate is absent or passed."""
    gate = inventory.rehearsal_for(cls, ref.environment)
    if gate is None:
        return None
    found = last_rehearsal(store, cls.name, gate.environments, now=now, within=gate.within)
    if found is not None:
        return None
    where = " or ".join(gate.environments)
    return (f"{ref}: no completed rehearsal of {cls.name} in {where} within the last "
            f"{format_duration(gate.within)} (require_rehearsal): run `keyroll rotate "
            f"{cls.name} --env {gate.environments[0]} --drill` to the end first")


def rehearsal_evidence(store: Store, inventory: Inventory, cls: SecretClass, ref: SecretRef,
                       now: datetime) -> dict[str, object] | None:
    """The rehearsal that let a gated rotation start, as plan evidence (None: no gate)."""
    gate = inventory.rehearsal_for(cls, ref.environment)
    if gate is None:
        return None
    found = last_rehearsal(store, cls.name, gate.environments, now=now, within=gate.within)
    if found is None:
        return {"required": format_duration(gate.within), "found": None}
    return {"required": format_duration(gate.within), "rotation": found.id,
            "environment": found.ref.environment, "completed": found.updated_at.isoformat()}
