"""Rollback and turn-back: how a rotation returns to the old value, and when it may not.

Before promote, `restore` puts the labels back first (the target only ever *gained* a
credential, so the old value is still accepted), redeploys, waits for apps to reload, and
only then resets the target and destroys the new value. After promote, `turn_back` turns the
rotation into a rotation back (`Direction.BACK`): the old version is current again and the
rolled-back one stays accepted through the overlap and its gates before it retires; nothing
that may be in use is destroyed. `no_way_back` says when neither is allowed (an incident
rotation after create, a provider secret after its portal step). `fail` decides which of the
three a failed step gets.

These functions are the engine's (`keyroll.rotation.engine.Engine.rollback` and its step
loop call them) and work through its persistence, lease and journal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keyroll.errors import KeyrollError, LeaseLost, RotationRefused, StepFailed
from keyroll.model import Label
from keyroll.rotation.record import Direction, ErrorInfo, Rotation, RotationState, StepEntry
from keyroll.rotation.steps import verify_current
from keyroll.rotation.strategies import StepContext, Strategy

if TYPE_CHECKING:
    from keyroll.rotation.engine import Engine

__all__ = ["MAX_SLEEP", "fail", "no_way_back", "promoted", "refuse", "restore", "roll_back",
           "turn_back"]

S = RotationState
ROLLING_BACK = S.ROLLING_BACK
#: The longest one wait of the engine sleeps in a process (propagation before a target
#: stops accepting a value); a longer wait ends the run and resumes at the next tick.
MAX_SLEEP = 120.0


def no_way_back(record: Rotation, strategy: Strategy) -> str | None:
    """Why this rotation can no longer return to the old value, or None if it can."""
    body = record.body
    if body.incident and (body.new_version is not None or body.ran(S.CREATE)):
        return ("it is an incident rotation: the old value is burned and returning to it "
                "is refused")
    if any(m.name == "portal" for m in strategy.manual_steps) and "portal" in body.confirmed:
        return ("the provider has already replaced the value in its portal, so the old "
                "value is dead")
    if record.reverted:
        return "it is already a rotation back to the old version"
    return None

def promoted(engine: Engine, record: Rotation) -> bool:
    """The new version has been current (it may have signed tokens or encrypted data)."""
    body = record.body
    if body.new_version is None:
        return False
    if record.state in (S.OVERLAP, S.RETIRE) or body.overlap_started is not None:
        return True
    return engine.store.get_labels(record.ref).get(Label.CURRENT) == body.new_version

def fail(engine: Engine, record: Rotation, step: RotationState, ctx: StepContext,
         exc: Exception) -> Rotation:
    # keyroll's own errors never carry a value; anything else may quote one (a driver's
    # message with a statement in it), so only its type is kept
    message = str(exc) if isinstance(exc, KeyrollError) else (
        f"{exc.__class__.__name__} in step {step} (details withheld: they may quote a value)"
    )
    body = record.body
    error = ErrorInfo(step.value, message, engine.clock())
    last = body.steps[-1]
    failed_entry = StepEntry(last.step, last.started_at, engine.clock(), "failed",
                             {**ctx.evidence, "error": message})
    body = body.but(error=error, steps=(*body.steps[:-1], failed_entry), strategy=ctx.state)
    engine._emit(record, "step.failed", step, message)
    strategy = engine.strategy(ctx.cls)
    stuck = no_way_back(record, strategy)
    if step in (S.OVERLAP, S.RETIRE) or stuck is not None:
        record = engine._save(record, step, body)
        engine._audit(record, f"rotation.{step.value}", outcome="failed",
                    evidence={**ctx.evidence, "error": message})
        why = (f"{stuck}; fix forward" if stuck is not None
               else "rolling back is no longer safe")
        raise StepFailed(
            f"rotation {record.id}: {step} failed: {message}; the rotation stopped where it "
            f"is ({why}): fix the cause and run `keyroll advance` to retry"
        ) from None
    if promoted(engine, record):
        record = engine._save(record, step, body)
        engine._audit(record, f"rotation.{step.value}", outcome="failed",
                    evidence={**ctx.evidence, "error": message})
        return turn_back(engine, record, reason=f"{step} failed")
    record = engine._save(record, ROLLING_BACK, body)
    engine._audit(record, f"rotation.{step.value}", outcome="failed",
                evidence={**ctx.evidence, "error": message})
    return restore(engine, record)

def roll_back(engine: Engine, rotation_id: str, *, reason: str = "requested") -> Rotation:
    """`Engine.rollback` (its docstring says what happens and when it is refused)."""
    record = engine.get(rotation_id)
    refuse(engine, record)
    with engine._holding(record) as record:  # re-read under the lease
        refuse(engine, record)
        if record.state == ROLLING_BACK:
            return restore(engine, record)
        if promoted(engine, record):
            return turn_back(engine, record, reason=f"rolled back: {reason} by {engine.actor}")
        body = record.body
        error = body.error or ErrorInfo(record.state.value,
                                        f"rolled back: {reason} by {engine.actor}", engine.clock())
        record = engine._save(record, ROLLING_BACK, body.but(error=error))
        return restore(engine, record)

def refuse(engine: Engine, record: Rotation) -> None:
    if record.state == ROLLING_BACK:
        return
    if record.terminal or record.state == S.RETIRE:
        raise RotationRefused(
            f"rotation {record.id} is {record.state}: too late to roll back (the old value "
            "is retired or retiring); rotate forward instead"
        )
    if record.reverted:
        raise RotationRefused(
            f"rotation {record.id} is already rolling back (a rotation back after promote, "
            f"now at {record.state}): `keyroll advance` retires version "
            f"{record.body.new_version} once its overlap ends"
        )
    stuck = no_way_back(record, engine.strategy(engine._class_of(record)))
    if stuck is not None:
        raise RotationRefused(
            f"rotation {record.id} cannot be rolled back: {stuck}. Rotate forward: fix "
            f"the cause and run `keyroll advance`, or start a new rotation once this one "
            "is done"
        )

def turn_back(engine: Engine, record: Rotation, *, reason: str) -> Rotation:
    """After promote: turn the rotation into a rotation back (see `rollback`)."""
    body = record.body
    error = body.error or ErrorInfo(record.state.value, reason, engine.clock())
    body = body.but(direction=Direction.BACK, reverted_at=engine.clock(), error=error,
                    waiting=None, overlap_started=None, overlap_started_real=None,
                    overlap_until=None)
    record = engine._save(record, S.PROMOTE, body)
    engine._audit(record, "rotation.rollback", outcome="turned-back",
                evidence={"reason": reason, "retiring_version": body.new_version,
                          "current_again": body.old_version})
    engine._emit(record, "step.started", "rollback",
               f"rolling back after promote: version {body.old_version} becomes current "
               f"again; version {body.new_version} stays accepted through the overlap, then "
               "retires")
    _, record = engine._step(record)  # the labels go back now, not at the next tick
    return record

def restore(engine: Engine, record: Rotation) -> Rotation:
    """Before promote: restore labels, deployments, then the target. Idempotent.

    The order keeps the invariant: the labels go back first (the old value is still
    accepted by the target, which only ever *gained* a credential), the deployments follow,
    apps get the propagation time to reload, and only then does the target stop accepting
    the new value. If the target cannot be reset, the rotation stays ``rolling-back`` and
    the next ``keyroll advance`` tries again.

    Raises:
        StepFailed: the target could not be reset (labels and deployments are restored).
    """
    cls = engine._class_of(record)
    strategy = engine.strategy(cls)
    ctx = engine._context(record, cls)
    engine._emit(record, "step.started", "rollback", "rolling back…")
    evidence: dict[str, Any] = {}
    before = dict(record.body.labels_before)
    versions = [v for v in engine.store.list_versions(record.ref)
                if v.meta.get("rotation") == record.id]
    mine = {v.number for v in versions}
    # values are destroyed only after the target was reset: if one is gone, a run before
    # a crash already reset the target (and the strategy could no longer read the value)
    target_reset = any(v.destroyed for v in versions)
    labels = engine.store.get_labels(record.ref)
    if mine & set(labels.values()):  # found by meta: a crash may have lost new_version
        engine._guard()
        engine.store.set_labels(
            record.ref,
            expected={label: labels.get(label) for label in Label},
            new={label: before.get(label) for label in Label}, fence=engine._fence())
    # from the history, not the labels: a rerun after a crash must still redeploy
    body = record.body
    if body.ran(S.APPLY) or body.ran(S.PROMOTE):
        evidence["hooks"] = engine._run_hooks(record, ctx, "on_promote", check=False)
    resets_target = type(strategy).rollback is not Strategy.rollback
    if resets_target and body.ran(S.PROMOTE):
        # apps reload the old credential before the new one stops working
        engine.sleep(min(cls.propagation(record.ref.environment).total_seconds(), MAX_SLEEP))
    try:
        if not target_reset:
            engine._guard()
            strategy.rollback(ctx)
    except LeaseLost:
        raise
    except KeyrollError as exc:
        failed = body.but(rollback={**evidence, "target_error": str(exc)})
        engine._save(record, ROLLING_BACK, failed)
        engine._audit(record, "rotation.rollback", outcome="failed",
                    evidence={"target_error": str(exc)})
        raise StepFailed(
            f"rotation {record.id}: labels and deployments are restored, but the target "
            f"could not be reset: {exc}; fix it and run `keyroll advance` to finish the "
            "rollback"
        ) from None
    engine._guard()
    for number in sorted(mine):
        if number not in engine.store.get_labels(record.ref).values():
            engine.store.destroy_version(record.ref, number, fence=engine._fence())
    restored = engine.store.get_labels(record.ref)
    evidence["labels"] = {k.value: v for k, v in restored.items()}
    current = restored.get(Label.CURRENT)
    if current is not None:
        kept = engine.store.get_version(record.ref, current)
        try:
            evidence["verified"] = verify_current(engine, ctx, strategy, kept)
        except StepFailed as exc:
            evidence["verified"] = {"version": current, "ok": False, "error": str(exc)}
    record = engine._save(record, S.ROLLED_BACK, body.but(rollback=evidence))
    error = body.error
    engine._audit(record, "rotation.rollback", outcome="rolled-back",
                evidence={**evidence, "error": {"step": error.step, "message": error.message,
                                                "at": error.at.isoformat()} if error else None})
    engine._emit(record, "rolled-back", "rollback", "rolled back: labels and target restored",
               evidence)
    return record
