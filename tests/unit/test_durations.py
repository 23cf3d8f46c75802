from __future__ import annotations

from datetime import timedelta

import pytest

from keyroll.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    "text,expected",
    [
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("31d", timedelta(days=31)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("2w", timedelta(weeks=2)),
        ("0", timedelta(0)),
        (90, timedelta(seconds=90)),
    ],
)
def test_parse(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "15", "m15", "1y", "-5m", "15 minutes", "1.5h"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format() -> None:
    assert format_duration(timedelta(days=31, minutes=5)) == "31d5m"
    assert format_duration(timedelta(0)) == "0s"


@pytest.mark.parametrize(
    "text", ["99999999999d", "999999999d", "36501d", "9" * 400 + "s", 10**30, float("inf"),
             float("nan"), timedelta(days=40000)],
)
def test_overflowing_durations_are_a_value_error(text: object) -> None:
    # issue 10 §6: these raised OverflowError (exit 1), or parsed and overflowed later
    with pytest.raises(ValueError, match=r"too long|NaN"):
        parse_duration(text)  # type: ignore[arg-type]
