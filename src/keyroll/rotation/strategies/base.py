"""The step contract every strategy implements, and what a step gets to see.

A strategy knows one *kind* of secret (JWT key, database role …) and what each step means for
it. The engine owns everything common: the record, the labels, the lock, hooks, the journal.
Every method must be safe to run again after a crash (the AWS rotation template's rule: check
whether the step already happened, and return if so).
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from keyroll.errors import StepFailed
from keyroll.generate import generate
from keyroll.inventory import EnvironmentPolicy, Inventory, SecretClass
from keyroll.model import Kind, SecretRef, SecretValue, Version, fingerprint
from keyroll.stores.base import Fence, Store

__all__ = ["ManualStep", "StepContext", "Strategy", "Verdict"]


@dataclass(frozen=True, slots=True)
class ManualStep:
    """A pause where a person acts, then runs ``keyroll confirm ROTATION NAME``.

    Attributes:
        name: what to type after ``confirm`` (``drain``, ``portal``, ``enter``, ``smoke``).
        before: the engine step it comes before.
        prompt: what to do, shown by the CLI.
        takes_value: the confirmation reads the new value from stdin (no echo).
    """

    name: str
    before: str
    prompt: str
    takes_value: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an overlap may end, and why (kept as evidence)."""

    done: bool
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """What a strategy sees during one step.

    Attributes:
        rotation: the rotation id.
        ref, cls, policy, inventory: the secret, its class and its environment's policy.
        store: the store (read values with `value`).
        now: the engine's clock reading for this step.
        incident: incident mode (no overlap; revoke after retire).
        old, new: the version being replaced and the new one (None until known).
        state: the strategy's own JSON-serialisable notes, persisted with the record.
        evidence: what this step proved, for the journal (no values).
        workdir: the inventory's folder (hooks, relative paths).
        entered: a value a person entered for this rotation (provider-shared), if any.
        emit: report progress to observers (one line).
        fence: what a strategy's own store writes carry (``fence=ctx.fence``): the
            rotation's lease (None outside one, e.g. a dry run).
        back: True on a rotation back (rolled back after promote): ``old`` is the newer
            version that retires, ``new`` the older one that stays.
    """

    rotation: str
    ref: SecretRef
    cls: SecretClass
    policy: EnvironmentPolicy
    inventory: Inventory
    store: Store
    now: datetime
    incident: bool
    old: Version | None
    new: Version | None
    state: MutableMapping[str, Any]
    evidence: dict[str, Any]
    workdir: Path
    entered: SecretValue | None = None
    emit: Callable[[str], None] = lambda _message: None
    fence: Fence | None = None
    back: bool = False

    def value(self, version: Version | None) -> SecretValue:
        """The value of a version (old or new). Only strategies and targets call this."""
        if version is None:
            raise ValueError("no such version in this rotation")
        return self.store.read_value(self.ref, version.number)

    @property
    def options(self) -> Mapping[str, Any]:
        return self.cls.options


class Strategy(ABC):
    """The steps of a rotation for one kind. Defaults suit keys that readers keep in a ring."""

    kind: Kind
    manual_steps: tuple[ManualStep, ...] = ()
    #: the new value comes from the provider's API (issued-key, aws-iam), not a generator
    issues_value: bool = False

    def validate(self, cls: SecretClass) -> None:  # noqa: B027  (optional)
        """Check the class's kind-specific options; raise `UsageError` naming the field."""

    def plan(self, ctx: StepContext) -> None:  # noqa: B027  (optional)
        """Preflight: is the target reachable and does the current credential still work?"""

    def create(self, ctx: StepContext) -> SecretValue:
        """The new value. Default: the class's generator (provider kinds use ``ctx.entered``)."""
        if ctx.cls.generator is None:
            raise ValueError(f"{ctx.ref}: no generator and no entered value")
        return generate(ctx.cls.generator, prefix=ctx.cls.prefix)

    def version_meta(self, ctx: StepContext) -> dict[str, Any]:
        """Non-secret metadata to keep with the new version (e.g. the role it belongs to)."""
        return {}

    def apply(self, ctx: StepContext) -> None:  # noqa: B027  (optional)
        """Make the target accept the new value *in addition to* the current one."""

    def test(self, ctx: StepContext) -> None:  # noqa: B027  (optional)
        """Prove the new value works against the target. Raise to roll back."""

    def promote(self, ctx: StepContext) -> None:  # noqa: B027  (optional)
        """Target-side work after the labels moved (the engine runs deploy hooks)."""

    def propagation(self, ctx: StepContext) -> timedelta:
        """How long promote waits after create for running apps to load the pending key.

        Zero unless apps *read* pending keys (key rings do: see `keyroll.runtime.keysource`).
        """
        return timedelta(0)

    def overlap_deadline(self, ctx: StepContext) -> timedelta:
        """How long the overlap lasts at least (incident mode: zero)."""
        return timedelta(0) if ctx.incident else ctx.cls.overlap.deadline()

    def overlap_done(self, ctx: StepContext, started: datetime) -> Verdict:
        """Whether the overlap may end now. Default: the deadline alone."""
        deadline = started + self.overlap_deadline(ctx)
        if ctx.now < deadline:
            return Verdict(False, f"overlap runs until {deadline:%Y-%m-%d %H:%M} UTC",
                           {"deadline": deadline.isoformat()})
        return Verdict(True, "overlap deadline passed", {"deadline": deadline.isoformat()})

    def retire(self, ctx: StepContext) -> None:  # noqa: B027  (optional)
        """Make the target stop accepting the old value."""

    def reinstate(self, ctx: StepContext) -> None:  # noqa: B027  (optional)
        """On a rotation back, before its verify: make the target accept ``ctx.new`` (the old
        version, current again) if the forward overlap had begun to disable it (an AWS key
        already deactivated while its deletion waited). Must be safe to rerun."""

    def revoke(self, ctx: StepContext) -> None:  # noqa: B027  (optional)
        """Incident mode, after retire: cut what the old value still holds open."""

    def rollback(self, ctx: StepContext) -> None:  # noqa: B027  (optional)
        """Undo ``apply`` on the target (the engine restores the labels)."""

    def verify_current(self, ctx: StepContext, version: Version) -> dict[str, Any]:
        """After a rollback: prove the target accepts ``version``, the current one again.

        Returns the evidence (no values). Default: the value is readable and matches its
        fingerprint; strategies with a target log in with it, key rings run a round trip.

        Raises:
            KeyrollError: the target refuses it (the engine records that).
        """
        value = ctx.store.read_value(ctx.ref, version.number)
        if fingerprint(value.reveal_bytes()) != version.fingerprint:
            raise StepFailed(f"{ctx.ref}: version {version.number} does not match its "
                             "fingerprint")
        return {"readable": True}
