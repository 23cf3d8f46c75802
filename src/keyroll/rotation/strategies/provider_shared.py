"""Secrets shared with a provider (VNPay, MoMo, ZaloPay, a bank; seed 004 §4): a guided
cut-over.

The provider issues the value in its portal and most cannot keep old and new alive together,
so the rotation pauses where a person must act and resumes on ``keyroll confirm ROTATION
STEP``: drain the consumers and let in-flight callbacks settle (the provider's retry window),
rotate in the portal, enter the new value (stdin, no echo), then after the deploy run the
provider's smoke transaction. Incident mode skips the drain (seed 004 §4.4: accept failed
in-flight transactions).
"""

from __future__ import annotations

from keyroll.durations import parse_duration
from keyroll.errors import StepFailed, UsageError
from keyroll.inventory import SecretClass
from keyroll.model import Kind, SecretValue
from keyroll.rotation.strategies.base import ManualStep, StepContext, Strategy

__all__ = ["ProviderSharedStrategy"]


class ProviderSharedStrategy(Strategy):
    kind = Kind.PROVIDER_SHARED
    manual_steps = (
        ManualStep("drain", "create", "stop the consumers (checkout queue) and let in-flight "
                   "callbacks settle for the provider's retry window"),
        ManualStep("portal", "create", "rotate the secret in the provider's portal"),
        ManualStep("enter", "create", "enter the new value from the portal", takes_value=True),
        ManualStep("smoke", "retire", "run the provider's test transaction: checkout and "
                   "callback must both sign and verify with the new value"),
    )

    def validate(self, cls: SecretClass) -> None:
        window = cls.options.get("retry_window")
        if window is not None:
            try:
                parse_duration(window)
            except ValueError as exc:
                raise UsageError(f"class {cls.name!r}: options.retry_window: {exc}") from None

    def create(self, ctx: StepContext) -> SecretValue:
        if ctx.entered is None:
            raise StepFailed(f"{ctx.ref}: no value was entered (`keyroll confirm ... enter`)")
        return ctx.entered

    def test(self, ctx: StepContext) -> None:
        new = ctx.value(ctx.new)
        if len(new) < min(ctx.cls.min_length, 8):
            raise StepFailed(f"{ctx.ref}: the entered value is implausibly short")
        if ctx.old is not None and not ctx.old.destroyed and ctx.value(ctx.old) == new:
            raise StepFailed(f"{ctx.ref}: the entered value equals the current one; rotate it "
                             "in the provider's portal first")
        ctx.evidence["checked"] = {"differs_from_old": True}
