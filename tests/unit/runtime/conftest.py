"""Fixtures for the runtime tests: a real local store, fake clocks, fresh keys."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyroll.model import SecretRef
from keyroll.stores.sqlite import SQLiteStore


class FakeClock:
    """A clock the test moves by hand (monotonic or wall seconds)."""

    def __init__(self, start: float = 1_763_776_800.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "store.db", os.urandom(32))
    yield s
    s.close()


@pytest.fixture
def ref() -> SecretRef:
    return SecretRef("prod", "jwt-access")
