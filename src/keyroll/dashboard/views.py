"""What the dashboard shows, as plain data: one function per page, shared by HTML and JSON.

Nothing here imports FastAPI or jinja2, so the pages' content is testable on its own and the
JSON API says exactly what the HTML says. Every function only reads the store: it lists
versions (metadata and fingerprints), labels, rotation records and the journal, and never
calls `Store.read_value`. A value cannot reach a page because no code path here holds one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from keyroll.audit import AuditRecord, Journal, VerifyReport
from keyroll.audit_check import JournalCheck, check_recent
from keyroll.calendar import calendar
from keyroll.dashboard.journal_index import JournalIndex
from keyroll.durations import format_duration
from keyroll.errors import KeyrollError, NotFound
from keyroll.inventory import Inventory
from keyroll.model import Label
from keyroll.reports import checklist, drill_report
from keyroll.rotation.record import ACTIVE, STEPS, Rotation, RotationState
from keyroll.runtime.usage import read_usage
from keyroll.status import SecretStatus, State, statuses
from keyroll.stores.base import Store

__all__ = [
    "JOURNAL_ACTOR",
    "SECRET_JOURNAL_LIMIT",
    "ReadOnlyJournal",
    "audit_page",
    "journal_health",
    "overview",
    "rotation_detail",
    "rotations_page",
    "secret_detail",
    "valid_rotation_id",
]

#: The actor name of the dashboard's read-only `Journal` (it never appends).
JOURNAL_ACTOR = "keyroll-dashboard"
#: How many journal records a secret's page shows (newest first; the rest on /audit).
SECRET_JOURNAL_LIMIT = 200
_ROTATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_STATE_ORDER = {State.OVERDUE: 0, State.MISSING: 1, State.DUE: 2, State.OK: 3}


class ReadOnlyJournal(Journal):
    """The journal as one request sees it, and no way to append.

    Records are found through the app's `JournalIndex` (`select`: the matching records
    without reading the whole journal); `verify` is the incremental check from the verified
    head (`keyroll.audit_check.check_recent`), run once per request, plus a problem for every
    shown record whose text is not a journal record.

    Args:
        store: where the entries live.
        clock: the time source (unused for reading; kept for `Journal`'s contract).
        index: the app-wide index (a private one when None: tests, one-off use).
    """

    def __init__(self, store: Store, *, clock: Callable[[], datetime],
                 index: JournalIndex | None = None) -> None:
        super().__init__(store, actor=JOURNAL_ACTOR, clock=clock)
        self.index = index if index is not None else JournalIndex()
        self._check: JournalCheck | None = None
        #: problems found in the records a page showed (text that is not a record)
        self.shown_problems: list[str] = []

    def health(self) -> JournalCheck:
        """The incremental check (once per request)."""
        if self._check is None:
            self._check = self.index.check(self.store, self.actor)
        return self._check

    def verify(self, *, expect_head: str | None = None) -> VerifyReport:
        """The incremental check's report (a pinned head: the full walk)."""
        if expect_head is not None:
            return super().verify(expect_head=expect_head)
        report = self.health().report
        return VerifyReport(report.count, report.head,
                            (*report.problems, *self.shown_problems))

    def select(
        self,
        *,
        environment: str | None = None,
        secret: str | None = None,
        rotation: str | None = None,
        action: str | None = None,
        limit: int | None = None,
    ) -> tuple[int, list[AuditRecord]]:
        """Like `Journal.select`, answered from the app's index."""
        total, records, problems = self.index.select(
            self.store, environment=environment, secret=secret, rotation=rotation,
            action=action, limit=limit)
        self.shown_problems.extend(p for p in problems if p not in self.shown_problems)
        return total, records

    def append(self, action: str, **kwargs: Any) -> AuditRecord:
        """Refused: the dashboard changes nothing, not even the journal."""
        raise RuntimeError(f"the dashboard never writes to the journal (tried {action!r})")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _age(delta: timedelta) -> str:
    """A human age: ``101d``, ``3d 4h``, ``21h 59m``, ``5m``, ``12s`` (two units at most)."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d" + (f" {hours}h" if hours and days < 10 else "")
    if hours:
        return f"{hours}h" + (f" {minutes}m" if minutes else "")
    return f"{minutes}m" if minutes else f"{seconds}s"


def valid_rotation_id(text: str) -> bool:
    """Whether ``text`` looks like a rotation id (checked before any store lookup)."""
    return bool(_ROTATION_ID.match(text))


def _record_json(record: AuditRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "time": record.time.isoformat(),
        "actor": record.actor,
        "action": record.action,
        "environment": record.environment,
        "secret": record.secret,
        "version": record.version,
        "fingerprints": list(record.fingerprints),
        "evidence": dict(record.evidence),
        "outcome": record.outcome,
        "rotation": record.rotation,
    }


def _status_json(row: SecretStatus, now: datetime) -> dict[str, Any]:
    doc = row.to_json(now)
    age = row.age_at(now)
    doc.update({
        "description": row.cls.description,
        "blast_radius": row.cls.blast_radius,
        "cadence_days": row.cls.cadence_days,
        "age_seconds": age.total_seconds() if age is not None else None,
        "age": _age(age) if age is not None else None,
    })
    return doc


def _rotation_summary(record: Rotation) -> dict[str, Any]:
    body = record.body
    return {
        "id": record.id,
        "environment": record.ref.environment,
        "class": record.ref.name,
        "state": record.state.value,
        "active": record.active,
        "direction": body.direction.value,
        "kind": body.kind,
        "incident": body.incident,
        "drill": body.drill,
        "requested_by": body.requested_by,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "duration": format_duration(record.updated_at - record.created_at),
        "old_version": body.old_version,
        "new_version": body.new_version,
        "waiting": body.waiting,
        "awaiting": body.awaiting,
        "error": body.error.message if body.error else None,
    }


def journal_health(journal: Journal) -> dict[str, Any]:
    """The journal's verification: record count, head hash, every break found, how it was
    checked (``mode``: incremental from checkpoint ``since``, or full) and the last full
    check's time and result (None: never ran; run ``keyroll audit verify --full``)."""
    if isinstance(journal, ReadOnlyJournal):
        check = journal.health()
        report = journal.verify()
    else:
        check = check_recent(journal)
        report = check.report
    last = check.last_full
    return {"ok": report.ok, "count": report.count, "head": report.head,
            "problems": list(report.problems), "mode": check.mode, "since": check.since,
            "walked": check.walked,
            "last_full_check": None if last is None else {
                "at": last.at.isoformat(), "ok": last.ok, "count": last.count,
                "problems": list(last.problems), "by": last.by}}


def overview(
    store: Store,
    inventory: Inventory,
    now: datetime,
    *,
    environment: str | None = None,
    state: State | None = None,
    show_missing: bool = True,
) -> dict[str, Any]:
    """Every secret (optionally of one environment), worst state first, with counts by state
    (counted before the ``state`` filter, so the page can offer every state).

    Args:
        show_missing: list never-created secrets too (the HTML page hides them behind their
            count, ``hidden_missing``, unless asked for them).

    Raises:
        UnknownSecret: ``environment`` is not in the inventory.
    """
    if environment is not None:
        inventory.policy(environment)
    rows = statuses(store, inventory, now, environment=environment)
    rows.sort(key=lambda r: (_STATE_ORDER[r.state], r.days_left if r.days_left is not None else 0,
                             r.ref.environment, r.ref.name))
    counts = {state.value: 0 for state in State}
    for row in rows:
        counts[row.state.value] += 1
    in_flight = [_rotation_summary(Rotation.parse(r)) for r in store.list_rotations()
                 if r.state in ACTIVE]
    return {
        "project": inventory.project,
        "now": now.isoformat(),
        "environment": environment,
        "state": state.value if state is not None else None,
        "environments": sorted(inventory.environments),
        "counts": counts,
        "secrets": [_status_json(row, now) for row in rows
                    if (state is None or row.state is state)
                    and (show_missing or state is State.MISSING or row.state is not State.MISSING)],
        "hidden_missing": 0 if show_missing or state is not None else counts[State.MISSING.value],
        "in_flight": in_flight,
    }


def calendar_page(store: Store, inventory: Inventory, now: datetime, *, days: int = 90,
                  environment: str | None = None) -> dict[str, Any]:
    """What is due in the next ``days``, soonest first (`keyroll.calendar`).

    Raises:
        UnknownSecret: ``environment`` is not in the inventory.
    """
    if environment is not None:
        inventory.policy(environment)
    entries = calendar(store, inventory, now, days=days, environment=environment)
    return {"now": now.isoformat(), "days": days, "environment": environment,
            "environments": sorted(inventory.environments),
            "entries": [e.to_json() for e in entries]}


def secret_detail(
    store: Store, inventory: Inventory, journal: Journal, now: datetime, environment: str, name: str
) -> dict[str, Any]:
    """One secret: its class, status, versions (fingerprints, kids, usage reported by apps),
    labels, lock, rotations
    and the newest `SECRET_JOURNAL_LIMIT` journal records about it (``journal_total``: all).

    Raises:
        UnknownSecret: no such class, environment, or class in that environment.
    """
    cls, ref = inventory.resolve(name, environment)
    statuses_ = [s for s in statuses(store, inventory, now, environment=environment)
                 if s.ref == ref]
    status = statuses_[0]
    labels = store.get_labels(ref)
    by_version: dict[int, list[str]] = {}
    for label, number in labels.items():
        by_version.setdefault(number, []).append(label.value)
    usage = read_usage(store, ref)
    versions = [
        {
            "number": v.number,
            "kid": v.kid_hex,
            "fingerprint": v.fingerprint,
            "created_at": v.created_at.isoformat(),
            "age": _age(now - v.created_at),
            "destroyed": v.destroyed,
            "labels": sorted(by_version.get(v.number, [])),
            "meta": {str(k): v.meta[k] for k in sorted(v.meta)},
            "usage": usage[v.kid].to_json() if v.kid in usage else None,
        }
        for v in reversed(store.list_versions(ref))
    ]
    lock = store.get_lock(ref, now=now)
    rotations = [_rotation_summary(Rotation.parse(r)) for r in reversed(store.list_rotations(ref))]
    total, newest = journal.select(environment=ref.environment, secret=ref.name,
                                   limit=SECRET_JOURNAL_LIMIT)
    records = [_record_json(r) for r in reversed(newest)]
    return {
        "class": {
            "name": cls.name,
            "kind": cls.kind.value,
            "description": cls.description,
            "tier": cls.tier.value,
            "owner": cls.owner,
            "blast_radius": cls.blast_radius,
            "cadence_days": cls.cadence_days,
            "env_vars": list(cls.env_vars),
            "environments": list(cls.environments),
            "overlap": format_duration(cls.overlap.deadline()),
        },
        "environment": ref.environment,
        "status": _status_json(status, now),
        "labels": {label.value: labels[label] for label in Label if label in labels},
        "versions": versions,
        "lock": ({"owner": lock.owner, "expires_at": lock.expires_at.isoformat()}
                 if lock is not None else None),
        "rotations": rotations,
        "journal": records,
        "journal_total": total,
    }


def rotations_page(store: Store, *, active_only: bool = False) -> dict[str, Any]:
    """Every rotation (or only those in flight), in flight first, then newest first."""
    records = [Rotation.parse(r) for r in store.list_rotations()]
    records = [r for r in records if not active_only or r.active]
    records.sort(key=lambda r: (r.terminal, -r.created_at.timestamp(), r.id))
    return {"active_only": active_only, "rotations": [_rotation_summary(r) for r in records]}


def _timeline(record: Rotation) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    previous_end: datetime | None = record.created_at
    for step in record.body.steps:
        started, finished = step.started_at, step.finished_at
        took = finished - started if finished else None
        waited = started - previous_end if previous_end else None
        rows.append({
            "step": step.step,
            "started_at": _iso(started),
            "finished_at": _iso(finished),
            "duration": format_duration(took) if took is not None else None,
            "duration_seconds": took.total_seconds() if took is not None else None,
            "waited_before": format_duration(waited) if waited and waited.total_seconds() >= 1
            else None,
            "outcome": step.outcome or ("running" if finished is None else None),
            "evidence": dict(step.evidence),
        })
        previous_end = finished or started
    return rows


def _markdown_or_none(make: Any, *args: Any) -> str | None:
    try:
        text = make(*args)
    except KeyrollError:  # the class left the inventory, or the record is incomplete
        return None
    return str(text)


def rotation_detail(
    store: Store, inventory: Inventory, journal: Journal, now: datetime, rotation_id: str
) -> dict[str, Any]:
    """One rotation: summary, step timeline with durations and evidence, approvals and
    confirmations, the error if any, its journal records, and the checklist and drill report
    (markdown) built from the journal.

    Raises:
        NotFound: no rotation with that id.
    """
    if not valid_rotation_id(rotation_id):
        raise NotFound(f"no rotation {rotation_id!r}: see /rotations for the ids")
    record = Rotation.parse(store.get_rotation(rotation_id))
    body = record.body
    summary = _rotation_summary(record)
    position: str | None = None
    if record.state in STEPS:
        position = record.state.value
    elif record.state == RotationState.AWAITING_CONFIRMATION and body.resume_state:
        position = body.resume_state.value
    records = [_record_json(r) for r in journal.select(rotation=record.id)[1]]
    return {
        "rotation": summary,
        "now": now.isoformat(),
        "steps_planned": [step.value for step in STEPS],
        "next_step": position,
        "approvals_required": body.approvals_required,
        "approvals": list(body.approvals),
        "confirmations": [{"name": c.name, "by": c.by, "at": c.at.isoformat()}
                          for c in body.confirmations],
        "overlap_started": _iso(body.overlap_started),
        "overlap_ends_no_earlier_than": _iso(body.overlap_until),
        "error_detail": {"step": body.error.step, "message": body.error.message,
                         "at": body.error.at.isoformat()} if body.error else {},
        "rollback": dict(body.rollback),
        "timeline": _timeline(record),
        "journal": records,
        "drill_report": _markdown_or_none(drill_report, store, inventory, journal, record.id),
        "checklist": _markdown_or_none(checklist, store, inventory, journal, record.ref.name,
                                       record.ref.environment, record.id),
    }


def audit_page(
    journal: Journal,
    *,
    limit: int,
    environment: str | None = None,
    secret: str | None = None,
    rotation: str | None = None,
    action: str | None = None,
) -> dict[str, Any]:
    """The last ``limit`` journal records (newest first) matching the filters, and the chain's
    verification."""
    _, last = journal.select(environment=environment, secret=secret, rotation=rotation,
                             action=action, limit=limit)
    records = [_record_json(r) for r in last]
    records.reverse()
    return {
        "verification": journal_health(journal),
        "limit": limit,
        "filters": {"environment": environment, "secret": secret, "rotation": rotation,
                    "action": action},
        "records": records,
    }
