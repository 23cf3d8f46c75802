"""The one clock rule of the key rings: ``now=`` overrides the ring's clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

__all__ = ["epoch_seconds"]


def epoch_seconds(now: float | datetime | None, clock: Callable[[], float]) -> float:
    """``now`` as epoch seconds (an aware datetime or a number), or ``clock()`` when None."""
    if now is None:
        return clock()
    if isinstance(now, datetime):
        return now.timestamp()
    return float(now)
