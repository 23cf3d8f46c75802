"""`keyroll.window`: daily change windows in local wall-clock time (zoneinfo), across midnight
and daylight-saving changes."""

from __future__ import annotations

from datetime import datetime, time

import pytest

from keyroll._compat import UTC
from keyroll.window import parse_window


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_ho_chi_minh_window_in_utc() -> None:
    window = parse_window("02:00-04:00 Asia/Ho_Chi_Minh")  # UTC+7: 19:00-21:00 UTC
    assert window.start == time(2) and window.end == time(4)
    assert not window.contains(_utc("2026-12-01 18:59"))
    assert window.contains(_utc("2026-12-01 19:00"))
    assert window.contains(_utc("2026-12-01 20:59"))
    assert not window.contains(_utc("2026-12-01 21:00"))
    assert window.next_open(_utc("2026-12-01 21:00")) == _utc("2026-12-02 19:00")
    assert window.next_open(_utc("2026-12-01 12:00")) == _utc("2026-12-01 19:00")
    inside = _utc("2026-12-01 19:30")
    assert window.next_open(inside) == inside


def test_a_window_crossing_midnight() -> None:
    window = parse_window("22:00-02:00 UTC")
    for inside in ("2026-12-01 22:00", "2026-12-01 23:59", "2026-12-02 00:00", "2026-12-02 01:59"):
        assert window.contains(_utc(inside)), inside
    for outside in ("2026-12-01 21:59", "2026-12-02 02:00", "2026-12-02 12:00"):
        assert not window.contains(_utc(outside)), outside
    assert window.next_open(_utc("2026-12-02 02:00")) == _utc("2026-12-02 22:00")


def test_the_window_follows_daylight_saving_time() -> None:
    window = parse_window("01:00-03:00 Europe/Berlin")
    # winter (UTC+1): 00:00-02:00 UTC; summer (UTC+2): 23:00-01:00 UTC the day before
    assert window.contains(_utc("2026-01-15 00:30"))
    assert not window.contains(_utc("2026-01-15 23:30"))
    assert window.contains(_utc("2026-07-14 23:30"))
    assert not window.contains(_utc("2026-07-15 01:30"))
    # spring forward, 2026-03-29 02:00 → 03:00 local: the window is 01:00-02:00 local only,
    # 00:00-01:00 UTC
    assert window.contains(_utc("2026-03-29 00:30"))
    assert not window.contains(_utc("2026-03-29 01:00"))  # 03:00 CEST: over
    # fall back, 2026-10-25 03:00 → 02:00 local: 01:00-03:00 local lasts three hours,
    # 23:00 (CEST) to 02:00 UTC (CET)
    assert window.contains(_utc("2026-10-24 23:00"))
    assert window.contains(_utc("2026-10-25 01:30"))
    assert not window.contains(_utc("2026-10-25 02:00"))
    # the next opening after a summer day is 01:00 CEST = 23:00 UTC
    assert window.next_open(_utc("2026-07-15 12:00")) == _utc("2026-07-15 23:00")


def test_a_start_the_clocks_skip_opens_after_the_gap() -> None:
    window = parse_window("02:30-04:00 America/New_York")  # 2026-03-08 02:00 → 03:00 EDT
    opens = window.next_open(_utc("2026-03-08 05:00"))  # 00:00 EST
    assert opens == _utc("2026-03-08 07:00")  # 03:00 EDT: the first instant inside
    assert window.contains(opens)


@pytest.mark.parametrize("text", ["", "02:00-04:00", "2-4 UTC", "02:00-04:00 Nowhere/City",
                                  "24:00-01:00 UTC", "01:00-01:00 UTC", "02:00 -04:00UTC"])
def test_malformed_windows_say_how_to_write_them(text: str) -> None:
    with pytest.raises(ValueError, match=r"HH:MM|IANA|empty|00-23"):
        parse_window(text)
