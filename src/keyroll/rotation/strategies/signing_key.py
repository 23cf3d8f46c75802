"""Key kinds that readers keep in a ring: JWT signing keys, webhook HMAC secrets, API keys and
opaque values.

apply: nothing (every retained version is accepted); test: a sign/verify round trip with the
new key through the same key ring apps use; overlap: the inventory's deadline (JWT: longest
token TTL + margin, seed 004 §3.2) and, where apps report usage, until the old kid is quiet;
retire: the previous version leaves the ring.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from keyroll.errors import StepFailed, UsageError
from keyroll.inventory import SecretClass
from keyroll.model import Kind, Label
from keyroll.rotation.strategies._usage import old_kid_unused
from keyroll.rotation.strategies.base import StepContext, Strategy, Verdict
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import Key, StaticKeySource
from keyroll.runtime.webhooks import WebhookKeyRing

__all__ = ["ApiKeyStrategy", "JWTSigningStrategy", "OpaqueStrategy", "WebhookStrategy"]


def _ring_keys(ctx: StepContext) -> list[Key]:
    """The ring apps will hold after promote: the new key signs, the old one verifies."""
    assert ctx.new is not None
    keys = [Key(ctx.new.kid, ctx.value(ctx.new), Label.CURRENT, ctx.new.number)]
    if ctx.old is not None and not ctx.old.destroyed:
        keys.append(Key(ctx.old.kid, ctx.value(ctx.old), Label.PREVIOUS, ctx.old.number))
    return keys


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
        alg = str(cls.options.get("algorithm", "HS256"))
        if not alg.startswith("HS"):
            raise UsageError(
                f"class {cls.name!r}: options.algorithm {alg!r}: keyroll generates HMAC keys "
                "(HS256, HS384, HS512)"
            )
        if cls.overlap.token_ttl is None and cls.overlap.min == timedelta(0):
            raise UsageError(
                f"class {cls.name!r}: set overlap.token_ttl (the longest token lifetime) so old "
                "tokens keep verifying until they expire"
            )

    def test(self, ctx: StepContext) -> None:
        alg = str(ctx.options.get("algorithm", "HS256"))
        ring = JWTKeyRing(StaticKeySource(_ring_keys(ctx), name=str(ctx.ref)), algorithm=alg)
        nonce = secrets.token_hex(8)
        token = ring.sign({"sub": "keyroll-rotation-test", "n": nonce}, ttl=timedelta(minutes=1))
        claims, kid = ring.verify_with_kid(token)
        assert ctx.new is not None
        if claims.get("n") != nonce or kid != ctx.new.kid:
            raise StepFailed(f"{ctx.ref}: the new key did not sign and verify a test token")
        ctx.evidence["round_trip"] = {"alg": alg, "kid": ctx.new.kid_hex, "verified": True}


class WebhookStrategy(_RingStrategy):
    kind = Kind.WEBHOOK_HMAC

    def test(self, ctx: StepContext) -> None:
        ring = WebhookKeyRing(StaticKeySource(_ring_keys(ctx), name=str(ctx.ref)))
        body = b'{"type":"keyroll.rotation.test"}'
        headers = ring.sign(f"msg_{secrets.token_hex(8)}", body)
        # a receiver that knows only the new secret must accept the signature
        assert ctx.new is not None
        only_new = WebhookKeyRing(StaticKeySource(_ring_keys(ctx)[:1], name=str(ctx.ref)))
        kid = only_new.verify(body, headers)
        if kid != ctx.new.kid:
            raise StepFailed(f"{ctx.ref}: the new secret did not sign and verify a test webhook")
        ctx.evidence["round_trip"] = {
            "kid": ctx.new.kid_hex, "signatures": len(headers["webhook-signature"].split()),
        }


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
