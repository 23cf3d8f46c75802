"""Change windows: ``window = "02:00-04:00 Asia/Ho_Chi_Minh"`` in keyroll.toml.

A window is a daily span of *local wall-clock* time in an IANA time zone (`zoneinfo`), so it
follows the zone's daylight-saving changes: ``01:00-03:00 Europe/Berlin`` is 01:00-03:00 on
the clock on the wall in Berlin in winter and in summer. A span whose end is not after its
start crosses midnight (``22:00-02:00``). On a day whose clocks skip part of the span (spring
forward) the window is what remains of it; on a day whose clocks repeat part of it (fall back)
both passes of the repeated hour are inside.

The engine asks `ChangeWindow.contains` before a production rotation starts and
`ChangeWindow.next_open` to say when to come back; times are aware datetimes (UTC in, UTC
out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from keyroll._compat import UTC

__all__ = ["ChangeWindow", "parse_window"]

_FORM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s+(\S+)\s*$")
_HINT = 'write it as "HH:MM-HH:MM Zone", e.g. "02:00-04:00 Asia/Ho_Chi_Minh"'


@dataclass(frozen=True, slots=True)
class ChangeWindow:
    """A daily span of local time in one zone.

    Attributes:
        start, end: local wall-clock times; ``end <= start`` crosses midnight.
        zone: the IANA zone name.
    """

    start: time
    end: time
    zone: str

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone}"

    @property
    def _tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def _inside_local(self, wall: time) -> bool:
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end  # crosses midnight (or spans 24 h)

    def contains(self, when: datetime) -> bool:
        """Whether the instant ``when`` (aware) falls inside the window."""
        local = when.astimezone(self._tz)
        return self._inside_local(local.time().replace(tzinfo=None))

    def next_open(self, when: datetime) -> datetime:
        """The first instant at or after ``when`` inside the window (UTC).

        Candidates are each day's local start (and midnight, for a window that crosses it),
        from the day before ``when`` to eight days after, and every half hour on the UTC
        clock in between: a start the clocks skip (spring forward) opens at the end of the
        gap, which is a transition on a whole or half hour, and `contains` judges each.
        """
        if self.contains(when):
            return when.astimezone(UTC)
        tz = self._tz
        today = when.astimezone(tz).date()
        found: list[datetime] = []
        for days in range(-1, 9):
            day = today + timedelta(days=days)
            for wall in (self.start, time(0, 0)):
                candidate = datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)
                if candidate > when and self.contains(candidate):
                    found.append(candidate)
        first = min(found) if found else when + timedelta(days=9)
        step = when.astimezone(UTC).replace(minute=30 if when.minute >= 30 else 0, second=0,
                                            microsecond=0)
        for _ in range(9 * 48):  # bounded: the half hours up to the first start found
            step += timedelta(minutes=30)
            if step >= first:
                break
            if self.contains(step):
                first = step
                break
        if first > when + timedelta(days=8):  # pragma: no cover - a window opens every day
            raise ValueError(f"window {self} never opens")
        return first


def parse_window(text: str) -> ChangeWindow:
    """Parse ``"HH:MM-HH:MM Zone"``.

    Raises:
        ValueError: a malformed span, an hour or minute out of range, an empty span, or an
            unknown zone; the message says how to write it.
    """
    if not isinstance(text, str):
        raise ValueError(f"a window is a string: {_HINT}")  # noqa: TRY004  (pydantic reports ValueError)
    match = _FORM.match(text)
    if match is None:
        raise ValueError(f"{text[:60]!r} is not a window: {_HINT}")
    h1, m1, h2, m2, zone = match.groups()
    try:
        start, end = time(int(h1), int(m1)), time(int(h2), int(m2))
    except ValueError:
        raise ValueError(f"{text[:60]!r}: hours are 00-23 and minutes 00-59 ({_HINT})") from None
    if start == end:
        raise ValueError(f"{text[:60]!r}: the window is empty (start equals end): {_HINT}")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{zone[:60]!r} is not an IANA time zone (e.g. Asia/Ho_Chi_Minh, "
                         "Europe/Berlin, UTC); install tzdata if the zone exists") from None
    return ChangeWindow(start, end, zone)
