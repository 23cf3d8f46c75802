"""Markdown reports from the journal: the rotation checklist (seed 004 §7) and the drill report
(seed 004 §8), filled in from what actually happened. Fingerprints only, never values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from keyroll.audit import AuditRecord, Journal
from keyroll.durations import format_duration
from keyroll.errors import NotFound
from keyroll.inventory import Inventory
from keyroll.model import SecretRef
from keyroll.rehearsal import last_rehearsal
from keyroll.rotation.record import Rotation, RotationState
from keyroll.stores.base import Store

__all__ = ["checklist", "drill_report"]

_STAGING_REHEARSAL = timedelta(days=14)


def _records(journal: Journal, rotation_id: str) -> list[AuditRecord]:
    return [r for r in journal.records() if r.rotation == rotation_id]


def _first(records: Iterable[AuditRecord], action: str) -> AuditRecord | None:
    return next((r for r in records if r.action == action and r.outcome == "ok"), None)


def _box(done: bool) -> str:
    return "[x]" if done else "[ ]"


def _hooks_ok(evidence: object) -> bool:
    return isinstance(evidence, list) and all(
        isinstance(h, dict) and h.get("ok") for h in evidence
    )


def _latest(store: Store, ref: SecretRef) -> Rotation:
    rotations = store.list_rotations(ref)
    if not rotations:
        raise NotFound(f"{ref} has no rotation yet: run `keyroll rotate {ref.name} --env "
                       f"{ref.environment}`")
    return Rotation.parse(rotations[-1])


def _rehearsal(store: Store, inventory: Inventory, name: str, environment: str,
               before: datetime) -> str | None:
    """The rehearsal this rotation can point at: within the class's ``require_rehearsal`` in
    its rehearsal environments, else within 14 days in any ``drill`` environment."""
    cls = inventory.classes[name]
    gate = inventory.rehearsal_for(cls, environment)
    if gate is not None:
        within, envs = gate.within, gate.environments
    else:
        within = _STAGING_REHEARSAL
        envs = [env for env, policy in inventory.environments.items()
                if policy.drill and env in cls.environments]
    found = last_rehearsal(store, name, envs, now=before, within=within)
    if found is None:
        return None
    return (f"{found.ref.environment} {found.updated_at:%Y-%m-%d} (drill report: "
            f"`keyroll report drill {found.id}`)")


#: the checks that prove pods are up and serving (a rollout awaited, a request answered)
_READINESS = ("rollout", "rollout_status", "http", "jwt_request")


def _readiness(evidence: Sequence[object]) -> list[dict[str, Any]]:
    return [h for h in evidence if isinstance(h, dict) and h.get("check") in _READINESS]


def _deploy_line(promoted: AuditRecord | None) -> str:
    """Ticked only when a deploy hook ran and a readiness check ran and passed."""
    hooks = promoted.evidence.get("hooks", []) if promoted else []
    verify = promoted.evidence.get("verify", []) if promoted else []
    ready = _readiness([*hooks, *verify])
    deployed = bool(hooks) and _hooks_ok(hooks)
    green = bool(ready) and _hooks_ok(ready)
    what = (f"{len(ready)} readiness checks: " + ", ".join(str(h.get("hook")) for h in ready)
            if ready else "no readiness check ran: add a rollout, rollout_status, http or "
            "jwt_request hook")
    return (f"- {_box(deployed and green)} Deploy rolled; readiness probes green "
            f"({len(hooks)} on_promote hooks; {what})")


def _window_line(record: Rotation, plan: AuditRecord | None) -> str:
    span = (f"{record.created_at:%Y-%m-%d %H:%M} – {record.updated_at:%Y-%m-%d %H:%M} UTC")
    window = plan.evidence.get("window") if plan else None
    if not isinstance(window, dict):
        return f"- [ ] Change window: none configured (ran {span})"
    inside = bool(window.get("inside"))
    return (f"- {_box(inside)} Change window: {window.get('window')} "
            + ("(started inside it; " if inside else "(started OUTSIDE it: "
               + ("incident" if record.body.incident else "not enforced here") + "; ")
            + f"ran {span})")


def _backup_line(plan: AuditRecord | None) -> list[str]:
    backups = plan.evidence.get("preflight", []) if plan else []
    lines = []
    for entry in backups if isinstance(backups, list) else []:
        if isinstance(entry, dict):
            lines.append(f"- [x] Backup taken ({entry.get('backup')}): `{entry.get('path')}`, "
                         f"SHA-256 `{str(entry.get('sha256'))[:16]}…`, verified: "
                         f"{entry.get('verified', 'no')}")
    return lines


def checklist(store: Store, inventory: Inventory, journal: Journal, name: str, environment: str,
              rotation_id: str | None = None) -> str:
    """The seed 004 §7 checklist for the latest (or given) rotation of a secret, filled in."""
    cls, ref = inventory.resolve(name, environment)
    record = Rotation.parse(store.get_rotation(rotation_id)) if rotation_id else _latest(store, ref)
    records = _records(journal, record.id)
    body = record.body
    created = _first(records, "rotation.create")
    promoted = _first(records, "rotation.promote")
    retired = _first(records, "rotation.retire")
    requested = _first(records, "rotation.requested")
    new_fp = created.fingerprints[0] if created and created.fingerprints else None
    rehearsal = _rehearsal(store, inventory, name, environment, record.created_at)
    plan = _first(records, "rotation.plan")
    approvals = list(body.approvals)
    overlap_end = body.overlap_until if promoted is not None else None
    rolled_back = record.state == RotationState.ROLLED_BACK or record.reverted
    tested = _first(records, "rotation.test")
    verify_hooks = promoted.evidence.get("verify", []) if promoted else []
    verify_ok = promoted is not None and _hooks_ok(verify_hooks) and (
        bool(verify_hooks) or (tested is not None and "round_trip" in tested.evidence))
    audit = journal.verify()
    generator = cls.generator.value if cls.generator else "entered from the provider's portal"
    lines = [
        f"## Rotation — {cls.name} — {environment}",
        "",
        f"- [x] Rotation record `{record.id}` opened by {body.requested_by} "
        f"({requested.time:%Y-%m-%d %H:%M} UTC)" if requested else
        f"- [x] Rotation record `{record.id}` opened",
        _window_line(record, plan),
        f"- {_box(rehearsal is not None or body.drill)} Staging rehearsal completed: "
        + ("this is the rehearsal" if body.drill else (rehearsal or "none in the last 14 days")),
        *_backup_line(plan),
        f"- {_box(bool(approvals))} Buddy: {', '.join(approvals) if approvals else 'none recorded'}",
        f"- {_box(created is not None)} New secret generated ({generator})",
        f"- {_box(new_fp is not None)} New-secret fingerprint (SHA-256 first 16 chars): "
        f"`{new_fp or '________________'}`",
        _store_line(record, created is not None),
        _deploy_line(promoted),
        f"- {_box(verify_ok)} Smoke + metrics verified "
        f"({len(promoted.evidence.get('verify', [])) if promoted else 0} verify hooks)",
        f"- {_box(overlap_end is not None)} Overlap window end date: "
        + (f"{overlap_end:%Y-%m-%d %H:%M} UTC" if overlap_end else "____"),
        f"- {_box(retired is not None and not rolled_back)} Old secret retired: "
        + ("no: the rotation was rolled back, the old secret is current"
           if rolled_back else f"{retired.time:%Y-%m-%d %H:%M} UTC" if retired else "not yet"),
        f"- {_box(audit.ok)} Post-rotation audit: journal "
        + (f"verified ({audit.count} records, head `{audit.head[:16]}`)" if audit.ok
           else "TAMPERED: " + audit.problems[0]),
        "- [ ] Runbook updated if anything surprised us",
        "",
    ]
    return "\n".join(lines)


def _store_line(record: Rotation, created: bool) -> str:
    """The checklist's "secret store updated": a rolled-back rotation says what it restored
    and what it verified, instead of a tick."""
    body = record.body
    if record.state == RotationState.ROLLED_BACK or record.reverted:
        verified = _verified(body.rollback.get("verified")) or _verified_back(record)
        what = (f"ROLLED BACK at {body.error.step}: {body.error.message}" if body.error
                else "ROLLED BACK")
        return (f"- [ ] Secret store updated: {what}; version {body.old_version} is current "
                f"again" + (f", verified: {verified}" if verified else ", not verified yet"))
    return (f"- {_box(created)} Secret store updated (value not shown: keyroll never prints it "
            "here)")


def _verified(evidence: Any) -> str | None:
    if not isinstance(evidence, dict) or evidence.get("ok") is False:
        return None
    checks = [key for key in ("login", "round_trip", "readable") if key in evidence]
    return f"version {evidence.get('version')} accepted ({', '.join(checks) or 'checked'})"


def _verified_back(record: Rotation) -> str | None:
    for entry in reversed(record.body.steps):
        found = _verified(entry.evidence.get("verified_current"))
        if found:
            return found
    return None


def _timeline(record: Rotation, records: Sequence[AuditRecord]) -> list[str]:
    lines = []
    previous: datetime | None = None
    for entry in records:
        took = f" (+{format_duration(entry.time - previous)})" if previous else ""
        what = entry.action.removeprefix("rotation.")
        detail = ""
        if entry.fingerprints:
            detail = f", fingerprint `{entry.fingerprints[0]}`"
        if entry.outcome != "ok":
            error = entry.evidence.get("error")
            detail += f": {entry.outcome}" + (f" ({error})" if error else "")
        lines.append(f"- {entry.time:%Y-%m-%d %H:%M:%S}{took} — {what}{detail}")
        previous = entry.time
    return lines


def _rollback_line(record: Rotation) -> str:
    if not (record.state == RotationState.ROLLED_BACK or record.reverted):
        return "no"
    body = record.body
    how = ("after promote: a rotation back, the rolled-back version accepted through the "
           "overlap" if record.reverted else "before promote: target and labels restored")
    verified = _verified(body.rollback.get("verified")) or _verified_back(record)
    return (f"yes ({how}); " + (f"verified afterwards: {verified}" if verified
                                else "not verified yet"))


def drill_report(store: Store, inventory: Inventory, journal: Journal, rotation_id: str) -> str:
    """The seed 004 §8 drill report of one rotation: window, timeline with durations,
    fingerprints, verification evidence, failures and rollback."""
    record = Rotation.parse(store.get_rotation(rotation_id))
    records = _records(journal, rotation_id)
    body = record.body
    start = records[0].time if records else record.created_at
    end = records[-1].time if records else record.updated_at
    failures = [r for r in records if r.outcome not in ("ok",)]
    verify: list[str] = []
    for entry in records:
        for key in ("verify", "round_trip", "checked", "overlap", "remaining_under_old_key",
                    "verified", "verified_current"):
            if entry.evidence.get(key) not in (None, [], {}):
                verify.append(f"- {entry.action.removeprefix('rotation.')}: {key} = "
                              f"{entry.evidence[key]}")
    created = _first(records, "rotation.create")
    requested = _first(records, "rotation.requested")
    old_fp = requested.fingerprints[0] if requested and requested.fingerprints else "?"
    new_fp = created.fingerprints[0] if created and created.fingerprints else "?"
    kind = "Drill report" if body.drill else "Rotation report"
    approvals = list(body.approvals)
    lines = [
        f"## {kind} — {record.ref.name} — {record.ref.environment} — {start:%Y-%m-%d}",
        "",
        f"**Rotation:** `{record.id}` ({body.kind}"
        + (", incident" if body.incident else "") + f"), state **{record.state.value}**"
        + (" (a rotation back after promote)" if record.reverted else ""),
        f"**Window:** {start:%H:%M}–{end:%H:%M} UTC",
        f"**Rotated by:** {body.requested_by}"
        + (f" with buddy {', '.join(approvals)}" if approvals else ""),
        f"**Fingerprints:** old `{old_fp}` → new `{new_fp}`",
        "",
        "### Timeline",
        *_timeline(record, records),
        "",
        "### Verification evidence",
        *(verify or ["- none recorded"]),
        "",
        "### Results",
        f"- Duration: {format_duration(end - start)}",
        f"- Failed steps: {len(failures)}"
        + "".join(f"\n  - {f.action.removeprefix('rotation.')}: {f.evidence.get('error', f.outcome)}"
                  for f in failures),
        f"- Rollback triggered: {_rollback_line(record)}",
        "- Auth errors during rotation: see the app's metrics (keyroll counts its own steps)",
        "",
        "### Learnings",
        "- …",
        "",
    ]
    return "\n".join(lines)
