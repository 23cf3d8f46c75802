"""Key kinds that readers keep in a ring: JWT signing keys, webhook HMAC secrets, API keys and
opaque values.

apply: nothing (every retained version is accepted); test: a sign/verify round trip with the
new key through the same key ring apps use; overlap: the inventory's deadline (JWT: longest
token TTL + margin, seed 004 §3.2) and, where apps report usage, until the old kid is quiet;
retire: the previous version leaves the ring.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from keyroll.errors import StepFailed, UsageError
from keyroll.inventory import SecretClass
from keyroll.jwk import algorithm_problem
from keyroll.model import Kind, Label, format_kid
from keyroll.rotation.strategies._usage import old_kid_unused
from keyroll.rotation.strategies.base import StepContext, Strategy, Verdict
from keyroll.runtime.keysource import StoreKeySource
from keyroll.runtime.selftest import round_trip

__all__ = [
    "ApiKeyStrategy",
    "JWTSigningStrategy",
    "OpaqueStrategy",
    "WebhookStrategy",
    "pending_round_trip",
]


def pending_round_trip(ctx: StepContext, *, algorithm: str = "HS256") -> int:
    """Sign/verify (or encrypt/decrypt) with the pending key through the store-backed key
    source apps use, the current key still accepted. Returns the kid that was tested."""
    assert ctx.new is not None
    source = StoreKeySource(ctx.store, ctx.ref, primary=Label.PENDING, accept=(Label.CURRENT,),
                            refresh_interval=0)
    kid = round_trip(source, ctx.cls.kind, algorithm=algorithm)
    if kid != ctx.new.kid:
        raise StepFailed(f"{ctx.ref}: the round trip used kid {kid:08x}, not the new key's")
    return kid


class _RingStrategy(Strategy):
    def propagation(self, ctx: StepContext) -> timedelta:
        return ctx.cls.overlap.propagation

    def overlap_done(self, ctx: StepContext, started: datetime) -> Verdict:
        by_time = super().overlap_done(ctx, started)
        if not by_time.done or ctx.incident:
            return by_time
        by_use = old_kid_unused(ctx, started)
        if by_use is None or by_use.done:
            return by_time if by_use is None else Verdict(True, by_use.reason, by_use.evidence)
        if ctx.now >= started + ctx.cls.overlap.max:
            return Verdict(True, f"overlap max {ctx.cls.overlap.max} reached; retiring although "
                           "the old kid is still in use", by_use.evidence)
        return by_use


class JWTSigningStrategy(_RingStrategy):
    kind = Kind.JWT_SIGNING

    def validate(self, cls: SecretClass) -> None:
        problem = algorithm_problem(cls.options.get("algorithm", "HS256"),
                                    cls.generator.value if cls.generator else None)
        if problem:
            raise UsageError(f"class {cls.name!r}: {problem}")
        if cls.overlap.token_ttl is None and cls.overlap.min == timedelta(0):
            raise UsageError(
                f"class {cls.name!r}: set overlap.token_ttl (the longest token lifetime) so old "
                "tokens keep verifying until they expire"
            )

    def version_meta(self, ctx: StepContext) -> dict[str, Any]:
        """The algorithm travels with the key: apps' key rings pin ``alg`` per key from it."""
        return {"alg": str(ctx.options.get("algorithm", "HS256"))}

    def test(self, ctx: StepContext) -> None:
        alg = str(ctx.options.get("algorithm", "HS256"))
        kid = pending_round_trip(ctx, algorithm=alg)
        ctx.evidence["round_trip"] = {"alg": alg, "kid": format_kid(kid), "verified": True}


class WebhookStrategy(_RingStrategy):
    kind = Kind.WEBHOOK_HMAC

    def test(self, ctx: StepContext) -> None:
        kid = pending_round_trip(ctx)
        ctx.evidence["round_trip"] = {"kid": format_kid(kid), "verified": True}


class _ValueOnly(_RingStrategy):
    """No cryptographic use keyroll can test: check the value is fresh and long enough."""

    def test(self, ctx: StepContext) -> None:
        new = ctx.value(ctx.new)
        if len(new) < ctx.cls.min_length:
            raise StepFailed(f"{ctx.ref}: the new value is shorter than {ctx.cls.min_length}")
        if ctx.old is not None and not ctx.old.destroyed and ctx.value(ctx.old) == new:
            raise StepFailed(f"{ctx.ref}: the new value equals the old one")
        ctx.evidence["checked"] = {"min_length": ctx.cls.min_length, "differs_from_old": True}


class ApiKeyStrategy(_ValueOnly):
    kind = Kind.API_KEY


class OpaqueStrategy(_ValueOnly):
    kind = Kind.OPAQUE
