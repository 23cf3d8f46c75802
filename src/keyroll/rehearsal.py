"""Staging rehearsals: the completed ``--drill`` rotations a production rotation may need.

seed 004: "Staging rehearsal completed within last 14 days". A rehearsal of a class is one of
its rotations that ended ``done`` with ``drill`` set, in a rehearsal environment, no longer ago
than the gate allows. The engine's gate (``require_rehearsal``) and the checklist both ask
`last_rehearsal`; it reads the rotation records, never the values.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from keyroll.model import SecretRef
from keyroll.rotation.record import Rotation, RotationState
from keyroll.stores.base import Store

__all__ = ["last_rehearsal"]


def last_rehearsal(store: Store, name: str, environments: Iterable[str], *, now: datetime,
                   within: timedelta) -> Rotation | None:
    """The newest completed drill rotation of class ``name`` in ``environments`` that ended in
    ``[now - within, now]``, or None."""
    best: Rotation | None = None
    for env in environments:
        for raw in store.list_rotations(SecretRef(env, name)):
            if raw.state != RotationState.DONE:
                continue
            record = Rotation.parse(raw)
            if not record.body.drill or not now - within <= record.updated_at <= now:
                continue
            if best is None or record.updated_at > best.updated_at:
                best = record
    return best
