"""The rotation calendar: what is due when, per environment, with owners; and its ``.ics``.

Built from `keyroll.status` (the same "due" as ``status``, ``notify`` and the dashboard): one
entry per secret whose due date falls within the window (overdue ones first, dated today),
never-created secrets left out. `to_ics` writes RFC 5545 by hand (no dependency): one all-day
event per entry, a stable UID per secret and due date so a calendar that re-imports the file
updates events instead of duplicating them, text escaped and lines folded at 75 octets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from keyroll.inventory import Inventory
from keyroll.status import State, statuses
from keyroll.stores.base import Store

__all__ = ["CalendarEntry", "calendar", "to_ics"]


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    """One secret that is due within the window (fingerprints only, never values)."""

    environment: str
    name: str
    owner: str
    tier: str
    kind: str
    due_at: datetime
    state: str
    days_left: int
    version: int
    rotation: str | None

    def to_json(self) -> dict[str, object]:
        return {"environment": self.environment, "class": self.name, "owner": self.owner,
                "tier": self.tier, "kind": self.kind, "due_at": self.due_at.isoformat(),
                "state": self.state, "days_left": self.days_left, "version": self.version,
                "rotation": self.rotation}


def calendar(
    store: Store,
    inventory: Inventory,
    now: datetime,
    *,
    days: int = 90,
    environment: str | None = None,
    now_for: Callable[[str], datetime] | None = None,
) -> list[CalendarEntry]:
    """Secrets due before ``now + days``, soonest first (overdue ones lead)."""
    end = now + timedelta(days=days)
    out = []
    for row in statuses(store, inventory, now, environment=environment, now_for=now_for):
        if row.state is State.MISSING or row.due_at is None or row.version is None:
            continue
        if row.due_at > end:
            continue
        out.append(CalendarEntry(row.ref.environment, row.cls.name, row.cls.owner,
                                 row.cls.tier.value, row.cls.kind.value, row.due_at,
                                 row.state.value, row.days_left or 0, row.version,
                                 row.rotation))
    out.sort(key=lambda e: (e.due_at, e.environment, e.name))
    return out


def _escape(text: str) -> str:
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def _fold(line: str) -> list[str]:
    """RFC 5545 §3.1: lines of at most 75 octets, continued with a leading space."""
    raw = line.encode()
    if len(raw) <= 75:
        return [line]
    parts: list[str] = []
    current = b""
    limit = 75
    for char in line:
        encoded = char.encode()
        if len(current) + len(encoded) > limit:
            parts.append(current.decode())
            current = b""
            limit = 74  # the leading space counts
        current += encoded
    parts.append(current.decode())
    return [parts[0], *(" " + p for p in parts[1:])]


def to_ics(entries: list[CalendarEntry], project: str, now: datetime) -> str:
    """The entries as an iCalendar file (all-day events on the due date; overdue on today)."""
    stamp = f"{now:%Y%m%dT%H%M%SZ}"
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:-//keyroll//{_escape(project)}//EN",
             "CALSCALE:GREGORIAN", f"X-WR-CALNAME:{_escape(f'keyroll: {project} rotations')}"]
    for entry in entries:
        day = max(entry.due_at, now) if entry.state == State.OVERDUE.value else entry.due_at
        after = day + timedelta(days=1)
        summary = f"Rotate {entry.name} ({entry.environment})" + (
            " — OVERDUE" if entry.state == State.OVERDUE.value else "")
        description = (f"{entry.name} in {entry.environment}: {entry.kind}, {entry.tier} tier, "
                       f"owner {entry.owner}; version {entry.version} is due "
                       f"{entry.due_at:%Y-%m-%d}.\nRun: keyroll rotate {entry.name} --env "
                       f"{entry.environment}")
        lines += [
            "BEGIN:VEVENT",
            f"UID:{entry.environment}.{entry.name}.v{entry.version}@{_escape(project)}.keyroll",
            f"DTSTAMP:{stamp}",
            f"DTSTART;VALUE=DATE:{day:%Y%m%d}",
            f"DTEND;VALUE=DATE:{after:%Y%m%d}",
            f"SUMMARY:{_escape(summary)}",
            f"DESCRIPTION:{_escape(description)}",
            f"CATEGORIES:{_escape(entry.environment)},{_escape(entry.tier)}",
            "TRANSP:TRANSPARENT",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(f"{part}\r\n" for line in lines for part in _fold(line))
