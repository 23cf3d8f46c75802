"""Human durations as the runbooks write them: ``15m``, ``24h``, ``31d``, ``90s``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_PART = re.compile(r"(\d+)\s*(w|d|h|m|s)")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse ``1d12h``, ``15m``, ``0`` (or a number of seconds) into a timedelta.

    Raises:
        ValueError: anything else, with the accepted forms in the message.
    """
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=text)
    if not isinstance(text, str):
        # ValueError, not TypeError: pydantic turns only ValueError into a validation message
        raise ValueError("expected a duration such as '15m', '24h', '31d' or '1d12h'")  # noqa: TRY004
    compact = text.strip().lower().replace(" ", "")
    if compact == "0":
        return timedelta(0)
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit (w, d, h, m, s), "
            "e.g. '15m', '24h', '31d' or '1d12h'"
        )
    total = timedelta(0)
    for number, unit in parts:
        total += timedelta(**{_UNITS[unit]: int(number)})
    return total


def format_duration(delta: timedelta) -> str:
    """The shortest ``1d2h3m4s`` form of a duration (``0s`` for zero)."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + ("".join(out) or "0s")
