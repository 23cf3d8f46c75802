"""The public runtime API is exactly what `__all__` lists (after httpx's test of the same name)."""

from __future__ import annotations

import importlib
import types

import pytest

import keyroll

MODULES = [
    "keyroll",
    "keyroll.runtime",
    "keyroll.runtime.keysource",
    "keyroll.runtime.jwt",
    "keyroll.runtime.jwks",
    "keyroll.runtime.jwks_source",
    "keyroll.runtime.jwks_starlette",
    "keyroll.runtime.fields",
    "keyroll.runtime.webhooks",
    "keyroll.runtime.redaction",
    "keyroll.runtime.startup",
    "keyroll.runtime.settings",
    "keyroll.runtime.usage",
    "keyroll.runtime.sqlalchemy",
    "keyroll.runtime.selftest",
]


def test_top_level_exports_the_runtime_api() -> None:
    exported = set(keyroll.__all__)
    # submodules imported anywhere become attributes of the package; they are not its API
    public = {
        name
        for name in dir(keyroll)
        if not name.startswith("_") and not isinstance(getattr(keyroll, name), types.ModuleType)
    }
    assert public == exported
    assert {
        "JWTKeyRing", "FieldCipher", "WebhookKeyRing", "Redactor", "RedactingFilter",
        "StructlogRedactor", "StoreKeySource", "EnvKeySource", "StaticKeySource", "require",
        "read_usage", "InvalidToken", "SecretRejected", "JWKSKeySource",
    } <= exported  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_only_real_public_names(name: str) -> None:
    module = importlib.import_module(name)
    names = module.__all__
    assert len(names) == len(set(names)), f"{name}.__all__ repeats a name"
    for member in names:
        assert hasattr(module, member), f"{name}.__all__ names missing {member}"
        assert not member.startswith("_")


def test_runtime_package_reexports_match_top_level() -> None:
    import keyroll.runtime as runtime

    for member in runtime.__all__:
        assert getattr(keyroll, member) is getattr(runtime, member)
