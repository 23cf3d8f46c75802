"""Usage-aware overlap for key rings: has anything used the old kid lately?

Usage comes from the store (apps whose `StoreKeySource` reports it) and from the Prometheus
endpoints a class names in ``overlap.usage_from`` (apps on `FileKeySource`, which cannot write
to the store). A scrape that fails keeps the overlap going: "unknown" is not "unused".
"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import datetime, timedelta

from keyroll.errors import StepFailed
from keyroll.rotation.strategies.base import StepContext, Verdict
from keyroll.runtime.metrics import parse_usage
from keyroll.runtime.usage import KidUsage, read_usage

_MAX_BYTES = 4 * 1024 * 1024
_TIMEOUT = 10.0


def scrape_usage(urls: list[str]) -> dict[int, KidUsage]:
    """Per-kid usage summed over ``urls``' ``/metrics``.

    Raises:
        StepFailed: an endpoint could not be read (named by URL, with the reason).
    """
    total: dict[int, KidUsage] = {}
    for url in urls:
        request = urllib.request.Request(url, headers={"Accept": "text/plain"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as reply:  # noqa: S310  (http(s) checked)
                text = reply.read(_MAX_BYTES).decode("utf-8", "replace")
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise StepFailed(f"cannot read usage from {url}: "
                             f"{getattr(exc, 'reason', None) or type(exc).__name__}") from None
        for kid, use in parse_usage(text).items():
            total[kid] = total[kid].merged(use) if kid in total else use
    return total

__all__ = ["old_kid_unused", "scrape_usage"]


def old_kid_unused(ctx: StepContext, since: datetime) -> Verdict | None:
    """A verdict on the old kid's use, or None when usage is not reported at all.

    The old key counts as unused when no app reported a use of it within the settle period
    (``overlap.settle``) and at least that long has passed since the overlap began.
    """
    if ctx.old is None or not ctx.cls.overlap.until_unused:
        return None
    usage = read_usage(ctx.store, ctx.ref)
    urls = ctx.cls.overlap.usage_from
    if urls:
        try:
            scraped = scrape_usage(urls)
        except StepFailed as exc:
            return Verdict(False, f"{exc}; the old kid may still be in use", {"usage_from": urls})
        for kid, use in scraped.items():
            usage[kid] = usage[kid].merged(use) if kid in usage else use
        if not usage:
            usage = {ctx.old.kid: KidUsage()}  # scraped: nothing used it, which is an answer
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
