"""Session-aware overlap for server credentials: has the old login been quiet long enough?

PostgreSQL roles and Redis users can be *measured*: the server lists the connections open
under a name. The overlap of such a secret ends once, after the deadline, no connection of the
old name was seen for ``overlap.settle``. The engine does not persist a strategy's notes while
an overlap waits, so the moment the connections were first seen gone is kept in the store's
bookkeeping area (one key per rotation, removed at retire).
"""

from __future__ import annotations

from datetime import datetime

from keyroll.rotation.strategies.base import StepContext, Verdict

__all__ = ["forget_quiet", "settled"]


def _key(rotation: str) -> str:
    return f"overlap-quiet-since:{rotation}"


def settled(ctx: StepContext, *, what: str, count: int, started: datetime) -> Verdict:
    """Whether ``what`` (the old role or user) has had no connection for the settle period.

    Args:
        ctx: the overlap step's context (its clock, class, store).
        what: the old name, for the reason (``role 'app_a'``).
        count: connections of it open now.
        started: when the overlap began (``overlap.max`` counts from it).

    Returns:
        Done once ``count`` stayed 0 for ``overlap.settle``, or ``overlap.max`` passed (said so
        in the reason). Reasons stay the same while nothing changes, so the engine does not
        rewrite the record on every tick.
    """
    key = _key(ctx.rotation)
    overlap = ctx.cls.overlap
    evidence: dict[str, object] = {
        "measured": what, "open_connections": count,
        "settle_seconds": overlap.settle.total_seconds(),
    }
    if count > 0:
        if ctx.store.get_meta(key) is not None:
            ctx.store.put_meta(key, None, fence=ctx.fence)
        if ctx.now >= started + overlap.max:
            return Verdict(True, f"overlap max {overlap.max} reached; retiring although {what} "
                           f"still has {count} connection(s)", evidence)
        return Verdict(False, f"{what} still has open connections", evidence)
    stored = ctx.store.get_meta(key)
    quiet = datetime.fromisoformat(stored) if stored else None
    if quiet is None or quiet > ctx.now:
        quiet = ctx.now
        ctx.store.put_meta(key, quiet.isoformat(), fence=ctx.fence)
    evidence["quiet_since"] = quiet.isoformat()
    if ctx.now - quiet >= overlap.settle:
        return Verdict(True, f"no connection of {what} for {overlap.settle}", evidence)
    return Verdict(False, f"no connection of {what} since {quiet:%H:%M:%S} UTC; waiting "
                   f"{overlap.settle} to be sure", evidence)


def forget_quiet(ctx: StepContext) -> None:
    """Drop the rotation's bookkeeping key (at retire and rollback). Idempotent."""
    key = _key(ctx.rotation)
    if ctx.store.get_meta(key) is not None:
        ctx.store.put_meta(key, None, fence=ctx.fence)
