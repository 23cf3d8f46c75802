"""The one test clock (`Clock` for datetimes, `SecondsClock` for monotonic or epoch seconds).

Its own module, free of the engine and of Python 3.11-only names, so that the runtime's tests
(which also run under Python 3.10: `make runtime-py310`) can use it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from keyroll._compat import UTC  # Python 3.10 has no datetime.UTC

__all__ = ["T0", "Clock", "SecondsClock"]

#: Where every frozen test clock starts.
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


class Clock:
    """A datetime clock the test moves: frozen at ``start`` or, with ``real``, wall time, plus
    every `tick`. Setting ``now`` freezes it there."""

    def __init__(self, start: datetime = T0, *, real: bool = False) -> None:
        self._start = start
        self.real = real
        self.offset = timedelta(0)

    @property
    def now(self) -> datetime:
        return (datetime.now(UTC) if self.real else self._start) + self.offset

    @now.setter
    def now(self, value: datetime) -> None:
        self._start, self.offset, self.real = value, timedelta(0), False

    def __call__(self) -> datetime:
        return self.now

    def tick(self, delta: timedelta) -> None:
        self.offset += delta


class SecondsClock:
    """A clock of float seconds (monotonic or epoch) the test moves by hand."""

    def __init__(self, start: float = 1_763_776_800.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
