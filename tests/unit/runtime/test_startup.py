"""Startup validation: refuse to start, naming the variable and the rule, never the value."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import SecretStr

from keyroll.errors import SecretRejected
from keyroll.generate import generate
from keyroll.model import Label, SecretRef
from keyroll.runtime.settings import KeyrollSettings, RequiredSecret, secret_rule
from keyroll.runtime.startup import require, require_all
from keyroll.stores.base import Store
from tests.unit.runtime.support import put

GOOD = generate("base64-48").reveal()


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "is not set"),
        ("short-but-random-Zq8", "shorter than 32"),
        ("your-secret-key-change-in-production", "placeholder"),
        ("changeme", "placeholder"),
        ("secret", "placeholder"),
        ("a" * 64, "low-entropy"),
        ("abcd" * 16, "low-entropy"),
    ],
)
def test_rules(value: str, rule: str) -> None:
    with pytest.raises(SecretRejected) as err:
        require("JWT_SECRET", environ={"JWT_SECRET": value})
    message = str(err.value)
    assert message.startswith("JWT_SECRET ") and rule in message
    if value:
        assert value not in message


@pytest.mark.parametrize("fmt", ["base64-48", "key-32", "password-32", "hex-32"])
def test_generated_values_pass(fmt: str) -> None:
    value = generate(fmt).reveal()
    assert require("K", environ={"K": value}).reveal() == value


def test_require_all_reports_every_failure() -> None:
    env = {"JWT_SECRET": GOOD, "JWT_REFRESH_SECRET": "changeme"}
    with pytest.raises(SecretRejected) as err:
        require_all({"JWT_SECRET": 32, "JWT_REFRESH_SECRET": 32, "FIELD_KEY": 44}, environ=env)
    assert "JWT_REFRESH_SECRET holds a placeholder" in str(err.value)
    assert "FIELD_KEY is not set" in str(err.value)
    assert "JWT_SECRET " not in str(err.value).replace("JWT_SECRET is", "")


def test_dev_value_in_prod_is_refused(store: Store) -> None:
    value = generate("base64-48")
    put(store, SecretRef("dev", "jwt-access"), value, Label.CURRENT)
    env = {"JWT_SECRET": value.reveal()}
    with pytest.raises(SecretRejected, match="holds the value of dev/jwt-access#1"):
        require("JWT_SECRET", environ=env, store=store, secret="jwt-access", environment="prod")
    require("JWT_SECRET", environ=env, store=store, secret="jwt-access", environment="staging")
    other = {"JWT_SECRET": GOOD}
    require("JWT_SECRET", environ=other, store=store, secret="jwt-access", environment="prod")


class Settings(KeyrollSettings):
    jwt_secret: RequiredSecret
    field_encryption_key: Annotated[SecretStr, secret_rule(min_length=44)]


def test_settings_accept_good_values(monkeypatch: pytest.MonkeyPatch) -> None:
    field = generate("key-32").reveal()
    monkeypatch.setenv("JWT_SECRET", GOOD)
    monkeypatch.setenv("FIELD_ENCRYPTION_KEY", field)
    s = Settings()
    assert s.jwt_secret.get_secret_value() == GOOD
    assert GOOD not in repr(s)


def test_settings_refuse_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "change-in-production-please-0000000000")
    monkeypatch.setenv("FIELD_ENCRYPTION_KEY", generate("key-32").reveal())
    with pytest.raises(SecretRejected, match="JWT_SECRET holds a placeholder") as err:
        Settings()
    assert "change-in-production-please" not in str(err.value)


def test_settings_missing_names_every_variable_and_echoes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("FIELD_ENCRYPTION_KEY", "too-short-" + GOOD[:10])
    with pytest.raises(SecretRejected) as err:
        Settings()
    message = str(err.value)
    assert "JWT_SECRET: Field required" in message
    assert "FIELD_ENCRYPTION_KEY is shorter than 44" in message
    assert GOOD[:10] not in message
