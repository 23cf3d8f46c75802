"""Every object that holds key material masks its repr and refuses to be pickled."""

from __future__ import annotations

import copy
import logging
import pickle
from collections.abc import Callable

import pytest

from keyroll.generate import generate
from keyroll.model import Label, SecretRef
from keyroll.runtime.fields import FieldCipher
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import EnvKeySource, StaticKeySource, StoreKeySource
from keyroll.runtime.redaction import RedactingFilter, Redactor, StructlogRedactor
from keyroll.runtime.webhooks import WebhookKeyRing
from keyroll.stores.base import Store
from tests.leaks import assert_no_leak
from tests.unit.runtime.support import put

JWT = generate("base64-48")
FIELD = generate("key-32")
HOOK = generate("base64-48", prefix="whsec_")


def holders(store: Store) -> dict[str, Callable[[], object]]:
    ref = SecretRef("prod", "jwt-access")
    put(store, ref, JWT, Label.CURRENT)
    static = StaticKeySource.of(JWT)
    redactor = Redactor([static])
    return {
        "Key": lambda: static.snapshot().current,
        "KeySet": static.snapshot,
        "StaticKeySource": lambda: static,
        "StoreKeySource": lambda: StoreKeySource(store, ref),
        "EnvKeySource": lambda: EnvKeySource.jwt_secret(environ={"JWT_SECRET": JWT.reveal()}),
        "JWTKeyRing": lambda: JWTKeyRing(static),
        "FieldCipher": lambda: FieldCipher(StaticKeySource.of(FIELD)),
        "WebhookKeyRing": lambda: WebhookKeyRing(StaticKeySource.of(HOOK)),
        "Redactor": lambda: redactor,
        "RedactingFilter": lambda: RedactingFilter(redactor),
        "StructlogRedactor": lambda: StructlogRedactor(redactor),
    }


NAMES = [
    "Key", "KeySet", "StaticKeySource", "StoreKeySource", "EnvKeySource", "JWTKeyRing",
    "FieldCipher", "WebhookKeyRing", "Redactor", "RedactingFilter", "StructlogRedactor",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_repr_masks_and_pickling_is_refused(store: Store, name: str) -> None:
    obj = holders(store)[name]()
    assert_no_leak([repr(obj), str(obj)], [JWT.reveal(), FIELD.reveal(), HOOK.reveal()])
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(obj)
    with pytest.raises(TypeError, match="pickle"):
        copy.deepcopy(obj)


def test_the_list_covers_every_holder(store: Store) -> None:
    assert sorted(holders(store)) == sorted(NAMES)


def test_refresh_failure_log_holds_no_value(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    env = {"JWT_SECRET": JWT.reveal()}
    src = EnvKeySource.jwt_secret(environ=env, refresh_interval=0)
    env["JWT_SECRET"] = "changeme-" + JWT.reveal()[:30]
    with caplog.at_level(logging.WARNING, logger="keyroll.runtime"):
        src.snapshot()
    assert "placeholder" in caplog.text
    assert_no_leak([caplog.text], [JWT.reveal(), env["JWT_SECRET"]])
