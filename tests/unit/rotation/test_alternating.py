"""The alternating-account rules every such strategy shares (`strategies/_alternating.py`):
which account a version's password belongs to, and that a step only changes the idle one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from keyroll.errors import RotationRefused, StepFailed
from keyroll.model import SecretRef, Version
from keyroll.rotation.strategies._alternating import account_of, old_and_new, other

PAIR = ("app_a", "app_b")
REF = SecretRef("prod", "database")


def version(**meta: Any) -> Version:
    return Version(2, 0x1234ABCD, "sha256:00", datetime(2026, 12, 1, tzinfo=UTC), meta=meta)


def test_other_is_the_other_one() -> None:
    assert other(PAIR, "app_a") == "app_b" and other(PAIR, "app_b") == "app_a"


def test_a_version_belongs_to_the_account_it_names_else_the_first() -> None:
    assert account_of(version(role="app_b"), PAIR, REF) == "app_b"
    assert account_of(version(), PAIR, REF) == "app_a"  # imported, adopted: no role
    assert account_of(None, PAIR, REF) == "app_a"


def test_an_account_outside_the_pair_is_refused_with_what_to_fix() -> None:
    with pytest.raises(RotationRefused) as caught:
        account_of(version(role="admin"), PAIR, REF, noun="role",
                   setting="options.login_roles", hint="fix login_roles")
    assert str(caught.value) == (
        "prod/database: the current password belongs to role 'admin', which is not one of "
        "options.login_roles ['app_a', 'app_b']: fix login_roles")


def test_the_new_version_gets_the_idle_account() -> None:
    assert old_and_new(None, PAIR, "app_a", REF) == ("app_a", "app_b")
    assert old_and_new(version(), PAIR, "app_b", REF) == ("app_b", "app_a")
    assert old_and_new(version(role="app_b"), PAIR, "app_a", REF) == ("app_a", "app_b")


@pytest.mark.parametrize("named", ["app_a", "root"])
def test_a_new_version_naming_the_active_or_a_foreign_account_fails(named: str) -> None:
    with pytest.raises(StepFailed, match="refusing to touch the active user") as caught:
        old_and_new(version(role=named), PAIR, "app_a", REF)
    assert f"names user {named!r}, not the idle user 'app_b'" in str(caught.value)
