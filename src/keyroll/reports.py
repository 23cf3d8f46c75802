"""Markdown reports from the journal: the rotation checklist (seed 004 §7) and the drill report
(seed 004 §8), filled in from what actually happened. Fingerprints only, never values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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

__all__ = ["Checklist", "DrillReport", "TimelineEntry", "checklist", "checklist_data",
           "drill_data", "drill_report"]

_STAGING_REHEARSAL = timedelta(days=14)


def _records(journal: Journal, rotation_id: str) -> list[AuditRecord]:
    return journal.select(rotation=rotation_id)[1]


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


def _deploy_line(promoted: AuditRecord | None) -> tuple[bool, str]:
    """Ticked only when a deploy hook ran and a readiness check ran and passed."""
    hooks = promoted.evidence.get("hooks", []) if promoted else []
    verify = promoted.evidence.get("verify", []) if promoted else []
    ready = _readiness([*hooks, *verify])
    deployed = bool(hooks) and _hooks_ok(hooks)
    green = bool(ready) and _hooks_ok(ready)
    what = (f"{len(ready)} readiness checks: " + ", ".join(str(h.get("hook")) for h in ready)
            if ready else "no readiness check ran: add a rollout, rollout_status, http or "
            "jwt_request hook")
    return (deployed and green,
            f"Deploy rolled; readiness probes green ({len(hooks)} on_promote hooks; {what})")


def _window_line(record: Rotation, plan: AuditRecord | None) -> tuple[bool, str]:
    span = (f"{record.created_at:%Y-%m-%d %H:%M} – {record.updated_at:%Y-%m-%d %H:%M} UTC")
    window = plan.evidence.get("window") if plan else None
    if not isinstance(window, dict):
        return (False, f"Change window: none configured (ran {span})")
    inside = bool(window.get("inside"))
    return (inside, f"Change window: {window.get('window')} "
            + ("(started inside it; " if inside else "(started OUTSIDE it: "
               + ("incident" if record.body.incident else "not enforced here") + "; ")
            + f"ran {span})")


def _backup_line(plan: AuditRecord | None) -> list[tuple[bool, str]]:
    backups = plan.evidence.get("preflight", []) if plan else []
    lines: list[tuple[bool, str]] = []
    for entry in backups if isinstance(backups, list) else []:
        if isinstance(entry, dict):
            lines.append((True, f"Backup taken ({entry.get('backup')}): `{entry.get('path')}`, "
                         f"SHA-256 `{str(entry.get('sha256'))[:16]}…`, verified: "
                         f"{entry.get('verified', 'no')}"))
    return lines


@dataclass(frozen=True, slots=True)
class Checklist:
    """The seed 004 §7 checklist of one rotation, as data: `markdown` for people,
    `to_json` for ``keyroll report checklist --json`` (``keyroll.report-checklist/v1``)."""

    secret: SecretRef
    rotation: str
    state: str
    items: tuple[tuple[bool, str], ...]  # (done, what), in the runbook's order
    new_fingerprint: str | None
    overlap_until: datetime | None
    approvals: tuple[str, ...]
    journal_ok: bool

    def markdown(self) -> str:
        lines = [f"## Rotation — {self.secret.name} — {self.secret.environment}", ""]
        lines += [f"- {_box(done)} {what}" for done, what in self.items]
        return "\n".join([*lines, ""])

    def to_json(self) -> dict[str, Any]:
        return {"schema": "keyroll.report-checklist/v1", "secret": str(self.secret),
                "rotation": self.rotation, "state": self.state,
                "items": [{"done": done, "item": what} for done, what in self.items],
                "new_fingerprint": self.new_fingerprint,
                "overlap_until": self.overlap_until.isoformat() if self.overlap_until else None,
                "approvals": list(self.approvals), "journal_ok": self.journal_ok}


def checklist(store: Store, inventory: Inventory, journal: Journal, name: str, environment: str,
              rotation_id: str | None = None) -> str:
    """The seed 004 §7 checklist for the latest (or given) rotation of a secret, filled in."""
    return checklist_data(store, inventory, journal, name, environment, rotation_id).markdown()


def checklist_data(store: Store, inventory: Inventory, journal: Journal, name: str,
                   environment: str, rotation_id: str | None = None) -> Checklist:
    """The checklist of `checklist`, as a `Checklist`."""
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
    items = [
        (True, f"Rotation record `{record.id}` opened by {body.requested_by} "
               f"({requested.time:%Y-%m-%d %H:%M} UTC)" if requested else
               f"Rotation record `{record.id}` opened"),
        _window_line(record, plan),
        (rehearsal is not None or body.drill, "Staging rehearsal completed: "
         + ("this is the rehearsal" if body.drill else (rehearsal or "none in the last 14 days"))),
        *_backup_line(plan),
        (bool(approvals), f"Buddy: {', '.join(approvals) if approvals else 'none recorded'}"),
        (created is not None, f"New secret generated ({generator})"),
        (new_fp is not None, "New-secret fingerprint (SHA-256 first 16 chars): "
                             f"`{new_fp or '________________'}`"),
        _store_line(record, created is not None),
        _deploy_line(promoted),
        (verify_ok, "Smoke + metrics verified "
                    f"({len(promoted.evidence.get('verify', [])) if promoted else 0} verify "
                    "hooks)"),
        (overlap_end is not None, "Overlap window end date: "
         + (f"{overlap_end:%Y-%m-%d %H:%M} UTC" if overlap_end else "____")),
        (retired is not None and not rolled_back, "Old secret retired: "
         + ("no: the rotation was rolled back, the old secret is current"
            if rolled_back else f"{retired.time:%Y-%m-%d %H:%M} UTC" if retired else "not yet")),
        (audit.ok, "Post-rotation audit: journal "
         + (f"verified ({audit.count} records, head `{audit.head[:16]}`)" if audit.ok
            else "TAMPERED: " + audit.problems[0])),
        (False, "Runbook updated if anything surprised us"),
    ]
    return Checklist(ref, record.id, record.state.value, tuple(items), new_fp, overlap_end,
                     tuple(approvals), audit.ok)


def _store_line(record: Rotation, created: bool) -> tuple[bool, str]:
    """The checklist's "secret store updated": a rolled-back rotation says what it restored
    and what it verified, instead of a tick."""
    body = record.body
    if record.state == RotationState.ROLLED_BACK or record.reverted:
        verified = _verified(body.rollback.get("verified")) or _verified_back(record)
        what = (f"ROLLED BACK at {body.error.step}: {body.error.message}" if body.error
                else "ROLLED BACK")
        return (False, f"Secret store updated: {what}; version {body.old_version} is current "
                f"again" + (f", verified: {verified}" if verified else ", not verified yet"))
    return (created, "Secret store updated (value not shown: keyroll never prints it here)")


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


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One journal record of a rotation, as the drill report shows it."""

    at: datetime
    action: str
    fingerprint: str | None
    outcome: str
    error: str | None
    since_previous: timedelta | None


@dataclass(frozen=True, slots=True)
class DrillReport:
    """The seed 004 §8 report of one rotation, as data: `markdown` for people, `to_json` for
    ``keyroll report drill --json`` (``keyroll.report-drill/v1``). Fingerprints only; the
    evidence is the journal's, redacted before it was written."""

    secret: SecretRef
    rotation: str
    drill: bool
    kind: str
    incident: bool
    state: str
    reverted: bool
    start: datetime
    end: datetime
    rotated_by: str
    approvals: tuple[str, ...]
    old_fingerprint: str | None
    new_fingerprint: str | None
    timeline: tuple[TimelineEntry, ...]
    verification: tuple[tuple[str, str, Any], ...]  # (step, evidence key, value)
    failures: tuple[tuple[str, Any], ...]  # (step, error or outcome)
    rollback: str | None  # how it rolled back and what was verified, or None

    def markdown(self) -> str:
        title = "Drill report" if self.drill else "Rotation report"
        lines = [
            f"## {title} — {self.secret.name} — {self.secret.environment} — "
            f"{self.start:%Y-%m-%d}",
            "",
            f"**Rotation:** `{self.rotation}` ({self.kind}"
            + (", incident" if self.incident else "") + f"), state **{self.state}**"
            + (" (a rotation back after promote)" if self.reverted else ""),
            f"**Window:** {self.start:%H:%M}–{self.end:%H:%M} UTC",
            f"**Rotated by:** {self.rotated_by}"
            + (f" with buddy {', '.join(self.approvals)}" if self.approvals else ""),
            f"**Fingerprints:** old `{self.old_fingerprint or '?'}` → new "
            f"`{self.new_fingerprint or '?'}`",
            "",
            "### Timeline",
            *(_timeline_line(entry) for entry in self.timeline),
            "",
            "### Verification evidence",
            *([f"- {step}: {key} = {value}" for step, key, value in self.verification]
              or ["- none recorded"]),
            "",
            "### Results",
            f"- Duration: {format_duration(self.end - self.start)}",
            f"- Failed steps: {len(self.failures)}"
            + "".join(f"\n  - {step}: {why}" for step, why in self.failures),
            f"- Rollback triggered: {'no' if self.rollback is None else self.rollback}",
            "- Auth errors during rotation: see the app's metrics (keyroll counts its own steps)",
            "",
            "### Learnings",
            "- …",
            "",
        ]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "keyroll.report-drill/v1", "secret": str(self.secret),
            "rotation": self.rotation, "drill": self.drill, "kind": self.kind,
            "incident": self.incident, "state": self.state, "reverted": self.reverted,
            "start": self.start.isoformat(), "end": self.end.isoformat(),
            "duration_seconds": (self.end - self.start).total_seconds(),
            "rotated_by": self.rotated_by, "approvals": list(self.approvals),
            "old_fingerprint": self.old_fingerprint, "new_fingerprint": self.new_fingerprint,
            "timeline": [{"at": e.at.isoformat(), "action": e.action,
                          "fingerprint": e.fingerprint, "outcome": e.outcome, "error": e.error,
                          "since_previous_seconds": None if e.since_previous is None
                          else e.since_previous.total_seconds()} for e in self.timeline],
            "verification": [{"step": step, "key": key, "value": value}
                             for step, key, value in self.verification],
            "failures": [{"step": step, "error": why} for step, why in self.failures],
            "rollback": self.rollback,
        }


def _timeline(records: Sequence[AuditRecord]) -> tuple[TimelineEntry, ...]:
    entries = []
    previous: datetime | None = None
    for entry in records:
        error = entry.evidence.get("error") if entry.outcome != "ok" else None
        entries.append(TimelineEntry(
            entry.time, entry.action.removeprefix("rotation."),
            entry.fingerprints[0] if entry.fingerprints else None, entry.outcome,
            str(error) if error else None, entry.time - previous if previous else None))
        previous = entry.time
    return tuple(entries)


def _timeline_line(entry: TimelineEntry) -> str:
    took = (f" (+{format_duration(entry.since_previous)})" if entry.since_previous is not None
            else "")
    detail = f", fingerprint `{entry.fingerprint}`" if entry.fingerprint else ""
    if entry.outcome != "ok":
        detail += f": {entry.outcome}" + (f" ({entry.error})" if entry.error else "")
    return f"- {entry.at:%Y-%m-%d %H:%M:%S}{took} — {entry.action}{detail}"


def _rollback_line(record: Rotation) -> str | None:
    if not (record.state == RotationState.ROLLED_BACK or record.reverted):
        return None
    body = record.body
    how = ("after promote: a rotation back, the rolled-back version accepted through the "
           "overlap" if record.reverted else "before promote: target and labels restored")
    verified = _verified(body.rollback.get("verified")) or _verified_back(record)
    return (f"yes ({how}); " + (f"verified afterwards: {verified}" if verified
                                else "not verified yet"))


def drill_report(store: Store, inventory: Inventory, journal: Journal, rotation_id: str) -> str:
    """The seed 004 §8 drill report of one rotation: window, timeline with durations,
    fingerprints, verification evidence, failures and rollback."""
    return drill_data(store, inventory, journal, rotation_id).markdown()


def drill_data(store: Store, inventory: Inventory, journal: Journal,
               rotation_id: str) -> DrillReport:
    """The report of `drill_report`, as a `DrillReport`."""
    record = Rotation.parse(store.get_rotation(rotation_id))
    records = _records(journal, rotation_id)
    body = record.body
    start = records[0].time if records else record.created_at
    end = records[-1].time if records else record.updated_at
    failures = [r for r in records if r.outcome not in ("ok",)]
    verify: list[tuple[str, str, Any]] = []
    for entry in records:
        for key in ("verify", "round_trip", "checked", "overlap", "remaining_under_old_key",
                    "verified", "verified_current"):
            if entry.evidence.get(key) not in (None, [], {}):
                verify.append((entry.action.removeprefix("rotation."), key, entry.evidence[key]))
    created = _first(records, "rotation.create")
    requested = _first(records, "rotation.requested")
    return DrillReport(
        secret=record.ref, rotation=record.id, drill=body.drill, kind=body.kind,
        incident=body.incident, state=record.state.value, reverted=record.reverted,
        start=start, end=end, rotated_by=body.requested_by, approvals=tuple(body.approvals),
        old_fingerprint=requested.fingerprints[0] if requested and requested.fingerprints
        else None,
        new_fingerprint=created.fingerprints[0] if created and created.fingerprints else None,
        timeline=_timeline(records), verification=tuple(verify),
        failures=tuple((f.action.removeprefix("rotation."), f.evidence.get("error", f.outcome))
                       for f in failures),
        rollback=_rollback_line(record),
    )
