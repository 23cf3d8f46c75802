"""Usage-aware overlap for key rings: has anything used the old kid lately?"""

from __future__ import annotations

from datetime import datetime, timedelta

from keyroll.rotation.strategies.base import StepContext, Verdict
from keyroll.runtime.usage import read_usage

__all__ = ["old_kid_unused"]


def old_kid_unused(ctx: StepContext, since: datetime) -> Verdict | None:
    """A verdict on the old kid's use, or None when usage is not reported at all.

    The old key counts as unused when no app reported a use of it within the settle period
    (``overlap.settle``) and at least that long has passed since the overlap began.
    """
    if ctx.old is None or not ctx.cls.overlap.until_unused:
        return None
    usage = read_usage(ctx.store, ctx.ref)
    if not usage:
        return None  # no app reports usage: the deadline alone decides
    settle: timedelta = ctx.cls.overlap.settle
    old = usage.get(ctx.old.kid)
    last = old.last_seen if old is not None else None
    evidence = {
        "old_kid": ctx.old.kid_hex,
        "old_kid_uses": old.count if old else 0,
        "old_kid_last_seen": last.isoformat() if last else None,
        "settle": settle.total_seconds(),
    }
    quiet_since = max(since, last) if last is not None else since
    if ctx.now - quiet_since < settle:
        return Verdict(False, f"old kid {ctx.old.kid_hex} used within the last {settle}", evidence)
    return Verdict(True, f"old kid {ctx.old.kid_hex} unused for {settle}", evidence)
