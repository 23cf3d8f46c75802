"""Fixtures for the runtime tests: a real local store, fake clocks, fresh keys."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyroll.model import SecretRef
from keyroll.stores.sqlite import SQLiteStore
from tests.clocks import SecondsClock

#: The one test clock of seconds (`tests.clocks.SecondsClock`), by the name these tests use.
FakeClock = SecondsClock


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
