"""The forward steps of a rotation, one function each: plan, create, apply, test, promote,
overlap, retire.

The engine (`keyroll.rotation.engine.Engine._step`) writes "started" into the record, calls
``RUN[state]`` and writes the next state; each function does its step's work through the
strategy and the store, and is idempotent: after a crash it runs again and finds its work
done (a pending version already created, labels already moved). `verify_current` is the
check a rollback and a retire record as evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from keyroll.errors import KeyrollError, RotationRefused, StepFailed
from keyroll.model import Label, Version
from keyroll.rotation.gates import rehearsal_evidence
from keyroll.rotation.preflight import take_backups
from keyroll.rotation.record import Rotation, RotationState
from keyroll.rotation.strategies import StepContext, Strategy

if TYPE_CHECKING:
    from keyroll.rotation.engine import Engine

__all__ = ["RUN", "verify_current"]

S = RotationState


def plan(engine: Engine, record: Rotation, ctx: StepContext, strategy: Strategy) -> None:
    body = record.body
    if 1 + len(body.approvals) < body.approvals_required:
        raise RotationRefused(f"rotation {record.id} needs {body.approvals_required} "
                              "approvals")
    labels = engine.store.get_labels(record.ref)
    if labels.get(Label.CURRENT) != body.old_version:
        raise RotationRefused(f"{record.ref}: current version moved since the rotation was "
                              "requested")
    strategy.plan(ctx)
    gate = rehearsal_evidence(engine.store, engine.inventory, ctx.cls, ctx.ref, ctx.now)
    if gate is not None:
        ctx.evidence["rehearsal"] = gate
    window = engine.inventory.window_for(ctx.cls, ctx.ref.environment)
    if window is not None:
        ctx.evidence["window"] = {"window": str(window), "inside": window.contains(ctx.now),
                                  "enforced": ctx.policy.production and not ctx.incident}
    backups = engine.inventory.preflight_for(ctx.cls, ctx.ref.environment)
    if backups:
        names = [e.dsn_env for e in backups if e.dsn_env is not None]
        names += [n for e in backups if not isinstance(e.backup, str) for n in e.backup.pass_env]
        engine._guard()
        ctx.evidence["preflight"] = take_backups(
            ctx, backups, context=engine._hooks.context_env(ctx, "plan"),
            redact=engine._hooks.redactor(ctx, names).redact)
    if ctx.old is not None:
        ctx.evidence["current"] = {"version": ctx.old.number, "fingerprint": ctx.old.fingerprint}
    if body.approvals:
        ctx.evidence["approved_by"] = list(body.approvals)

def create(engine: Engine, record: Rotation, ctx: StepContext, strategy: Strategy) -> Rotation:
    labels = engine.store.get_labels(record.ref)
    mine = [v for v in engine.store.list_versions(record.ref)
            if v.meta.get("rotation") == record.id and not v.destroyed]
    if mine:  # a crash after put_version: reuse what this rotation stored
        version = mine[-1]
    else:
        value = strategy.create(ctx)
        meta = {"rotation": record.id, **strategy.version_meta(ctx)}
        if ctx.cls.generator is not None and ctx.entered is None:
            meta["generator"] = ctx.cls.generator.value
        engine._guard()
        version = engine.store.put_version(record.ref, value, created_at=ctx.now, meta=meta,
                                         fence=engine._fence())
    if labels.get(Label.PENDING) != version.number:
        engine.store.set_labels(
            record.ref, expected={Label.PENDING: labels.get(Label.PENDING)},
            new={Label.PENDING: version.number}, fence=engine._fence())
    ctx.new = version
    body = record.body.but(new_version=version.number,
                           pending_since=record.body.pending_since or ctx.now)
    ctx.evidence["new"] = {"version": version.number, "fingerprint": version.fingerprint,
                           "kid": version.kid_hex}
    return engine._save(record, record.state, body)

def apply(engine: Engine, record: Rotation, ctx: StepContext, strategy: Strategy) -> None:
    strategy.apply(ctx)
    if strategy.propagation(ctx) > timedelta(0) and not ctx.incident:
        # stage the new key (<VAR>_NEXT, accepted, not signing) with the same deploy that
        # promote uses: every instance accepts it before any instance signs with it
        ctx.evidence["staged"] = engine._run_hooks(record, ctx, "on_promote")

def test(engine: Engine, record: Rotation, ctx: StepContext, strategy: Strategy) -> None:
    strategy.test(ctx)

def promote(engine: Engine, record: Rotation, ctx: StepContext, strategy: Strategy) -> None:
    """Forward: pending → current, current → previous. Back: the old version current
    again, the rolled-back one previous (accepted, never used to sign or encrypt)."""
    assert ctx.new is not None
    body = record.body
    keep, retire = body.keeping_version, body.retiring_version
    labels = engine.store.get_labels(record.ref)
    if labels.get(Label.CURRENT) != keep:
        engine._guard()
        engine.store.set_labels(
            record.ref,
            expected={Label.CURRENT: retire, Label.PENDING: labels.get(Label.PENDING),
                      Label.PREVIOUS: labels.get(Label.PREVIOUS)},
            new={Label.CURRENT: keep, Label.PREVIOUS: retire, Label.PENDING: None},
            fence=engine._fence())
    if not record.reverted:
        strategy.promote(ctx)
    else:
        strategy.reinstate(ctx)
    ctx.evidence["hooks"] = engine._run_hooks(record, ctx, "on_promote")
    # on the way back the verify hooks are recorded, not obeyed (a failing one is often
    # why we turned back); what must hold is that the target accepts the old value
    ctx.evidence["verify"] = engine._run_hooks(record, ctx, "verify",
                                             check=not record.reverted)
    if record.reverted:
        ctx.evidence["verified_current"] = verify_current(engine, ctx, strategy, ctx.new)

def overlap(engine: Engine, record: Rotation, ctx: StepContext, strategy: Strategy) -> None:
    """The wait itself happened in `Engine._step`; nothing to do on the target."""

def retire(engine: Engine, record: Rotation, ctx: StepContext, strategy: Strategy) -> None:
    strategy.retire(ctx)
    body = record.body
    retiring = body.retiring_version
    labels = engine.store.get_labels(record.ref)
    if retiring is not None and labels.get(Label.PREVIOUS) == retiring:
        engine._guard()
        engine.store.set_labels(record.ref, expected={Label.PREVIOUS: retiring},
                              new={Label.PREVIOUS: None}, fence=engine._fence())
    ctx.evidence["retired"] = {"version": retiring,
                               "fingerprint": ctx.old.fingerprint if ctx.old else None}
    if ctx.incident:
        strategy.revoke(ctx)
        ctx.evidence["revoke"] = engine._run_hooks(record, ctx, "revoke", check=False)
    # deployments must stop carrying the previous value (*_PREVIOUS vars); the hooks run
    # before the value is destroyed, so their output is still masked with it. A failing
    # deploy fails the step: an app that restarts to load its keys (env vars, a Secret and
    # a rollout) still accepts the old value, so retire is not done and nothing is
    # destroyed; the rotation stops here and `advance` reruns it
    ctx.evidence["hooks"] = engine._run_hooks(record, ctx, "on_promote")
    if record.reverted and ctx.new is not None:
        ctx.evidence["verified_current"] = verify_current(engine, ctx, strategy, ctx.new)
    # destroy even if the index says destroyed: a crash may have cut a backend's two-part
    # destroy in half (destroying again is a no-op); also values entered but not used
    labelled = set(engine.store.get_labels(record.ref).values())
    keeping = body.keeping_version
    engine._guard()
    for version in engine.store.list_versions(record.ref):
        if version.number in labelled or version.number == keeping:
            continue
        if version.number == retiring or version.meta.get("rotation") == record.id:
            engine.store.destroy_version(record.ref, version.number, fence=engine._fence())

def verify_current(engine: Engine, ctx: StepContext, strategy: Strategy,
                    version: Version) -> dict[str, Any]:
    """Prove the target accepts the version that is current after a rollback."""
    try:
        return {"version": version.number, "fingerprint": version.fingerprint,
                **strategy.verify_current(ctx, version)}
    except KeyrollError as exc:
        raise StepFailed(f"{ctx.ref}: after the rollback the target does not accept the "
                         f"restored current version {version.number}: {exc}") from None


#: The function that runs each forward step (a step may return the record it saved).
RUN: Mapping[RotationState, Callable[[Engine, Rotation, StepContext, Strategy], Rotation | None]] = {
    S.PLAN: plan, S.CREATE: create, S.APPLY: apply, S.TEST: test, S.PROMOTE: promote,
    S.OVERLAP: overlap, S.RETIRE: retire,
}
