"""Human durations as the runbooks write them: ``15m``, ``24h``, ``31d``, ``90s``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["LONGEST", "format_duration", "parse_duration"]

# Longer than any cadence, overlap or timeout makes sense (cadences stop at 10 years), and far
# from timedelta's limit, so a parsed duration added to any plausible time cannot overflow.
LONGEST = timedelta(days=36500)
_TOO_LONG = "is too long: keyroll accepts durations up to 36500d (100 years)"

_PART = re.compile(r"(\d+)\s*(w|d|h|m|s)")
_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse ``1d12h``, ``15m``, ``0`` (or a number of seconds) into a timedelta.

    Raises:
        ValueError: anything else (also a negative duration or one longer than `LONGEST`), with
            the accepted forms in the message. Never OverflowError.
    """
    if isinstance(text, timedelta):
        if not timedelta(0) <= text <= LONGEST:
            raise ValueError(f"{format_duration(text)} {_TOO_LONG}" if text > LONGEST
                             else "a duration cannot be negative")
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text != text:  # NaN
            raise ValueError("a duration must be a number of seconds, not NaN")
        if text < 0:
            raise ValueError("a duration cannot be negative")
        if text > LONGEST.total_seconds():
            raise ValueError(f"{text!r} seconds {_TOO_LONG}")
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
    seconds = sum(int(number) * _SECONDS[unit] for number, unit in parts)  # exact, no overflow
    if seconds > LONGEST.total_seconds():
        raise ValueError(f"{text[:40]!r} {_TOO_LONG}")
    return timedelta(seconds=seconds)


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
