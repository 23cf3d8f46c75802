"""Field-encryption keys (seed 004 §6, seed 001).

apply: nothing (readers decrypt with every retained key); test: an encrypt/decrypt round trip
through `FieldCipher` with the new key current and the old one retained; overlap: the deadline
*and* no data left under the old key. Retire is refused while any record is still encrypted
under the old kid: the count comes from ``hooks.remaining`` commands (each prints a number,
run through `keyroll.rotation.deploy.HookRunner`) and, for ``columns`` in the inventory, from
the re-encryption gate (`keyroll.reencrypt.gate`); it goes into the audit evidence. With no
way to count, retire waits (set ``overlap.until_unused = false`` to accept the risk
explicitly).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from keyroll import escrow
from keyroll.errors import HookFailed, KeyrollError, NotFound, StepFailed, UsageError
from keyroll.model import Kind, Label, Version, format_kid
from keyroll.reencrypt.gate import count_remaining
from keyroll.rotation.deploy import HookRunner
from keyroll.rotation.strategies.base import StepContext, Strategy, Verdict
from keyroll.rotation.strategies.signing_key import current_round_trip, pending_round_trip
from keyroll.runtime.fields import FieldCipher
from keyroll.runtime.keysource import StoreKeySource

__all__ = ["EncryptionKeyStrategy", "RemainingCounter", "escrow_old_key"]

#: How the engine counts records still under a kid: ``(ctx, old_kid) -> count or None``.
RemainingCounter = Callable[[StepContext, int], "int | None"]


def count_by_hooks(ctx: StepContext, old_kid: int) -> int | None:
    """Sum what the class's ``hooks.remaining`` commands print (None without such hooks).

    They run through the engine's `HookRunner`, so their output is masked by the store
    redactor like every other hook's, and they get the same environment plus
    ``KEYROLL_OLD_KID``.
    """
    if not any(h.applies_to(ctx.ref.environment) for h in ctx.cls.hooks.remaining):
        return None
    runner = HookRunner(ctx.store, ctx.inventory, ctx.workdir)
    results = runner.run(ctx, "remaining", step="overlap", report=lambda _line: None,
                         extra_env={"KEYROLL_OLD_KID": format_kid(old_kid)})
    total = 0
    for result in results:
        try:
            total += int(str(result["output"]).strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise HookFailed(
                f"hook {result['hook']!r} must print the number of records under the old key"
            ) from None
    return total


def _current_kid(ctx: StepContext) -> int:
    """The kid rows should be under: the current version's (the new one before promote)."""
    number = ctx.store.get_labels(ctx.ref).get(Label.CURRENT)
    if number is not None:
        return ctx.store.get_version(ctx.ref, number).kid
    if ctx.new is not None:
        return ctx.new.kid
    raise NotFound(f"{ctx.ref} has no current version: nothing to count rows against")


def count_by_columns(ctx: StepContext, old_kid: int) -> int | None:
    """Rows not under the current kid in the class's ``columns`` (`keyroll.reencrypt.gate`)."""
    if not ctx.cls.columns:
        return None
    counted = count_remaining(ctx.cls.columns, ctx.ref.environment,
                              current_kid=_current_kid(ctx), old_kid=old_kid)
    if counted is None:
        return None
    ctx.evidence["reencrypt_remaining"] = counted.evidence()
    return counted.total


class EncryptionKeyStrategy(Strategy):
    kind = Kind.ENCRYPTION_KEY

    def __init__(self, counters: list[RemainingCounter] | None = None) -> None:
        self.counters = counters if counters is not None else [count_by_hooks, count_by_columns]

    def propagation(self, ctx: StepContext) -> timedelta:
        return ctx.cls.propagation(ctx.ref.environment)

    def test(self, ctx: StepContext) -> None:
        kid = pending_round_trip(ctx)
        if ctx.old is not None and not ctx.old.destroyed:
            # what the apps hold now encrypts; the ring they will hold decrypts it
            now = FieldCipher(StoreKeySource(ctx.store, ctx.ref, accept=(), refresh_interval=0))
            after = FieldCipher(StoreKeySource(ctx.store, ctx.ref, primary=Label.PENDING,
                                               accept=(Label.CURRENT,), refresh_interval=0))
            probe = secrets.token_bytes(16)
            context = ("keyroll", "rotation-test", ctx.rotation)
            if after.decrypt(now.encrypt(probe, context=context), context=context) != probe:
                raise StepFailed(f"{ctx.ref}: data under the current key would not decrypt")
        ctx.evidence["round_trip"] = {"kid": format_kid(kid), "old_still_decrypts": True}

    def verify_current(self, ctx: StepContext, version: Version) -> dict[str, Any]:
        return current_round_trip(ctx, version)

    def remaining(self, ctx: StepContext) -> int | None:
        """Records still under the old kid, summed over every counter; None if none can count."""
        if ctx.old is None:
            return 0
        counts = [c(ctx, ctx.old.kid) for c in self.counters]
        known = [c for c in counts if c is not None]
        return sum(known) if known else None

    def overlap_done(self, ctx: StepContext, started: datetime) -> Verdict:
        by_time = super().overlap_done(ctx, started)
        if not by_time.done:
            return by_time
        if not ctx.cls.overlap.until_unused:
            return Verdict(True, "deadline passed; remaining data not checked (until_unused "
                           "= false)", by_time.evidence)
        try:
            left = self.remaining(ctx)
        except KeyrollError as exc:  # a hook, a database down, a renamed column: keep waiting
            return Verdict(False, f"cannot count data under the old key: {exc}", {})
        evidence = {**by_time.evidence, "remaining_under_old_key": left}
        if left is None:
            return Verdict(False, "no way to count data under the old key: add hooks.remaining "
                           "or columns to the class (or run `keyroll reencrypt`)", evidence)
        if left > 0:
            return Verdict(False, f"{left} records still encrypted under the old key: run "
                           "`keyroll reencrypt`", evidence)
        return Verdict(True, "no data left under the old key", evidence)

    def retire(self, ctx: StepContext) -> None:
        if ctx.cls.overlap.until_unused:
            left = self.remaining(ctx)
            ctx.evidence["remaining_under_old_key"] = left
            if left is None or left > 0:
                raise StepFailed(
                    f"{ctx.ref}: refusing to retire the old key: "
                    f"{'unknown' if left is None else left} records still use it"
                )
        escrow_old_key(ctx)


def escrow_old_key(ctx: StepContext) -> None:
    """Seal the retiring key to the escrow public key before the engine destroys it.

    The engine destroys ``ctx.old`` right after `Strategy.retire` returns (forward: the old
    key; on a rotation back: the rolled-back key, which encrypted rows while it was current),
    so a backup taken before the retire needs this record to be read after a restore. A
    failure to seal fails the step: nothing is destroyed. Without ``[escrow]`` in keyroll.toml
    the key is destroyed unescrowed, and the evidence and a progress line say so.
    """
    old = ctx.old
    if old is None or old.destroyed:
        return
    try:
        source = escrow.escrow_public_key(ctx.inventory, ctx.workdir)
    except UsageError as exc:
        raise StepFailed(f"{ctx.ref}: refusing to retire: cannot escrow version "
                         f"{old.number}: {exc}") from None
    if source is None:
        ctx.evidence["escrow"] = {"sealed": False, "reason": "no [escrow] in keyroll.toml"}
        ctx.emit(f"warning: version {old.number} (kid {old.kid_hex}) is destroyed without "
                 "escrow: a backup taken under it cannot be read after a restore; add "
                 "[escrow] public_key to keyroll.toml")
        return
    pem, where = source
    try:
        record = escrow.seal_version(
            ctx.store, ctx.ref, old, ctx.value(old), public_pem=pem, where=where,
            days=ctx.inventory.escrow_days(escrow.DEFAULT_ESCROW_DAYS), now=ctx.now,
            rotation=ctx.rotation)
    except UsageError as exc:
        raise StepFailed(f"{ctx.ref}: refusing to retire: cannot escrow version "
                         f"{old.number}: {exc}") from None
    purged = escrow.purge_expired(ctx.store, ctx.now)
    ctx.evidence["escrow"] = {"sealed": True, **record.public_view(),
                              "purged_expired": [f"{r.ref}#{r.version}" for r in purged]}
    ctx.emit(f"escrowed version {old.number} (kid {old.kid_hex}) until {record.expires_at}")
