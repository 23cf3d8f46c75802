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

from keyroll.durations import parse_duration
from keyroll.errors import StepFailed, UsageError
from keyroll.inventory import SecretClass
from keyroll.jwk import ASYMMETRIC_ALGORITHMS, algorithm_problem
from keyroll.model import Kind, Label, Version, format_kid
from keyroll.rotation.strategies._usage import old_kid_unused
from keyroll.rotation.strategies.base import StepContext, Strategy, Verdict
from keyroll.runtime.keysource import StoreKeySource
from keyroll.runtime.selftest import round_trip

__all__ = [
    "ApiKeyStrategy",
    "JWTSigningStrategy",
    "OpaqueStrategy",
    "WebhookStrategy",
    "current_round_trip",
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


def current_round_trip(ctx: StepContext, version: Version, *,
                       algorithm: str = "HS256") -> dict[str, Any]:
    """After a rollback: apps' key ring signs (encrypts) with ``version`` again, and it works."""
    source = StoreKeySource(ctx.store, ctx.ref, refresh_interval=0)
    kid = round_trip(source, ctx.cls.kind, algorithm=algorithm)
    if kid != version.kid:
        raise StepFailed(f"{ctx.ref}: the key ring signs with kid {kid:08x}, not version "
                         f"{version.number}'s")
    return {"round_trip": {"kid": format_kid(kid), "verified": True}}


class _RingStrategy(Strategy):
    def propagation(self, ctx: StepContext) -> timedelta:
        return ctx.cls.propagation(ctx.ref.environment)

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


def _published(cls: SecretClass) -> bool:
    """An asymmetric JWT class: its public keys are published in a JWKS."""
    return str(cls.options.get("algorithm", "HS256")) in ASYMMETRIC_ALGORITHMS


def _jwks_wait(cls: SecretClass) -> timedelta:
    """How long verifiers may cache the JWKS (``jwks_max_age``) plus ``jwks_margin``."""
    return (parse_duration(cls.options.get("jwks_max_age", _JWKS_MAX_AGE))
            + parse_duration(cls.options.get("jwks_margin", _JWKS_MARGIN)))


_JWKS_MAX_AGE = "5m"
_JWKS_MARGIN = "1m"


class JWTSigningStrategy(_RingStrategy):
    """HMAC secrets, and key pairs whose public keys are published (ES256, RS256, PS256,
    EdDSA). For a key pair the pending public key is published at create (every store-backed
    JWKS endpoint and the ``write_jwks`` hook at apply), and promote waits until every verifier
    can have fetched it: the JWKS ``Cache-Control`` max-age (``options.jwks_max_age``, 5m by
    default, which the publisher must not exceed) plus ``options.jwks_margin`` (1m) plus the
    publisher's own reload time (``overlap.propagation``). The old public key stays published
    through the overlap and is unpublished at retire. Incident mode signs with the new key at
    once (verifiers learn it by refetching on its unknown kid) and unpublishes the old one at
    once.
    """

    kind = Kind.JWT_SIGNING

    def propagation(self, ctx: StepContext) -> timedelta:
        base = ctx.cls.propagation(ctx.ref.environment)
        return base + _jwks_wait(ctx.cls) if _published(ctx.cls) else base

    def validate(self, cls: SecretClass) -> None:
        problem = algorithm_problem(cls.options.get("algorithm", "HS256"),
                                    cls.generator.value if cls.generator else None)
        if problem:
            raise UsageError(f"class {cls.name!r}: {problem}")
        for option in ("jwks_max_age", "jwks_margin"):
            if option in cls.options:
                try:
                    parse_duration(cls.options[option])
                except ValueError as exc:
                    raise UsageError(f"class {cls.name!r}: options.{option}: {exc}") from None
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

    def verify_current(self, ctx: StepContext, version: Version) -> dict[str, Any]:
        return current_round_trip(ctx, version,
                                  algorithm=str(ctx.options.get("algorithm", "HS256")))


class WebhookStrategy(_RingStrategy):
    kind = Kind.WEBHOOK_HMAC

    def test(self, ctx: StepContext) -> None:
        kid = pending_round_trip(ctx)
        ctx.evidence["round_trip"] = {"kid": format_kid(kid), "verified": True}

    def verify_current(self, ctx: StepContext, version: Version) -> dict[str, Any]:
        return current_round_trip(ctx, version)


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
