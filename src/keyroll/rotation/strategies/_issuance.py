"""What the provider-issued kinds (``issued-key``, ``aws-iam``) share: the issue intent that
makes ``create`` crash-safe, and the usage-aware end of the overlap.

A provider that issues a credential returns its value once. If keyroll dies after the provider
issued it but before the store holds it, the value is lost and the provider keeps a live key
nobody has: an orphan, which also eats the provider's key quota. So ``create`` writes an
*intent* into the store's bookkeeping before it asks the provider (the key ids the provider
listed at that moment), and the key id right after the provider answered, before the value is
stored. A ``create`` that finds an intent of its own rotation reconciles first: every key id
the intent recorded, and every key the provider lists now that it did not list then, was
issued by this rotation and never stored, so it is revoked before a new one is issued. Where
the provider cannot list its keys and the crash fell between the intent and the key id, keyroll
cannot know and says so (`IntentUnresolved`): a person checks the provider.

The intent lives under ``issue-intent:<rotation>`` (key ids and times only, never a value) and
is removed at retire and rollback.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from keyroll.errors import StepFailed
from keyroll.rotation.strategies.base import StepContext, Verdict

__all__ = ["Intent", "IntentUnresolved", "begin", "forget", "issued", "read", "usage_verdict"]


class IntentUnresolved(StepFailed):
    """A previous ``create`` of this rotation may have issued a key keyroll never stored, and
    the provider cannot be asked (no ``list``)."""


def _key(rotation: str) -> str:
    return f"issue-intent:{rotation}"


@dataclass(frozen=True, slots=True)
class Intent:
    """An issue this rotation began: when, which keys existed then, which it got back."""

    at: datetime
    before: frozenset[str] = frozenset()
    listed: bool = False
    issued: tuple[str, ...] = ()
    attempts: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"at": self.at.isoformat(), "before": sorted(self.before),
                           "listed": self.listed, "issued": list(self.issued),
                           "attempts": self.attempts, "extra": self.extra})

    @classmethod
    def parse(cls, text: str) -> Intent:
        data = json.loads(text)
        return cls(datetime.fromisoformat(data["at"]), frozenset(data.get("before", [])),
                   bool(data.get("listed")), tuple(data.get("issued", [])),
                   int(data.get("attempts", 1)), dict(data.get("extra", {})))

    def orphans(self, listed_now: Collection[str] | None, keep: Collection[str]) -> set[str]:
        """Keys this rotation issued and never stored: the recorded ones, and (when the
        provider lists keys) every listed key that was not there before, minus ``keep``."""
        found = set(self.issued)
        if listed_now is not None and self.listed:
            found |= set(listed_now) - set(self.before)
        return found - set(keep)


def read(ctx: StepContext) -> Intent | None:
    text = ctx.store.get_meta(_key(ctx.rotation))
    return Intent.parse(text) if text else None


def begin(ctx: StepContext, before: Collection[str] | None, previous: Intent | None) -> Intent:
    """Record that an issue is about to run (durable before the provider is asked)."""
    intent = Intent(ctx.now, frozenset(before or ()), before is not None, (),
                    previous.attempts + 1 if previous else 1)
    ctx.store.put_meta(_key(ctx.rotation), intent.to_json(), fence=ctx.fence)
    return intent


def issued(ctx: StepContext, intent: Intent, key_id: str | None) -> Intent:
    """Record the key id the provider returned (durable before the value is stored)."""
    if key_id is None:
        return intent
    done = Intent(intent.at, intent.before, intent.listed, (*intent.issued, key_id),
                  intent.attempts, intent.extra)
    ctx.store.put_meta(_key(ctx.rotation), done.to_json(), fence=ctx.fence)
    return done


def forget(ctx: StepContext) -> None:
    """Drop the intent (retire, rollback). Idempotent."""
    if ctx.store.get_meta(_key(ctx.rotation)) is not None:
        ctx.store.put_meta(_key(ctx.rotation), None, fence=ctx.fence)


def usage_verdict(ctx: StepContext, started: datetime, last_used: datetime | None, *,
                  quiet: timedelta | None, what: str) -> Verdict:
    """Whether the old key is unused: its last use (as the provider reports it) is older than
    the overlap's start, or older than ``quiet`` when that is set; ``overlap.max`` ends the
    wait anyway (said so).
    """
    evidence: dict[str, object] = {
        "measured": what, "last_used": last_used.isoformat() if last_used else None,
        "overlap_started": started.isoformat(),
        "quiet_seconds": quiet.total_seconds() if quiet is not None else None,
    }
    if last_used is None:
        return Verdict(True, f"{what}: the provider reports no use", evidence)
    if last_used < started:
        return Verdict(True, f"{what}: last used before the overlap began", evidence)
    if quiet is not None and ctx.now - last_used >= quiet:
        return Verdict(True, f"{what}: unused for {quiet}", evidence)
    if ctx.now >= started + ctx.cls.overlap.max:
        return Verdict(True, f"overlap max {ctx.cls.overlap.max} reached; retiring although "
                       f"{what} was used since the overlap began", evidence)
    return Verdict(False, f"{what} was used since the overlap began (last at "
                   f"{last_used:%Y-%m-%d %H:%M:%S} UTC)", evidence)
