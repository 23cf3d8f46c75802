"""What the engine tells its observers. The engine knows no screen (pip-audit's pattern):
the CLI renders these with rich, the dashboard records them, tests collect them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyroll.model import SecretRef

__all__ = ["Event", "Observer"]


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened in a rotation.

    Attributes:
        rotation: the rotation id.
        ref: the secret.
        kind: what the engine emits: ``requested``, ``approval``, ``paused`` (a person
            must act), ``confirmed``, ``step.started``, ``step.finished``, ``step.failed``,
            ``waiting`` (propagation or overlap not over), ``hook`` (one line per inventory
            hook), ``progress`` (a strategy's own line), ``rolled-back``, ``done``.
        step: the step concerned (``plan`` … ``retire``, or ``rollback``), if any.
        message: one human line, no values.
        at: when.
        evidence: redacted detail (fingerprints, counts, hook results).
    """

    rotation: str
    ref: SecretRef
    kind: str
    step: str | None
    message: str
    at: datetime
    evidence: Mapping[str, Any] = field(default_factory=dict)


Observer = Callable[[Event], None]
