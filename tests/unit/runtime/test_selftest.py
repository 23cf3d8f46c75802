"""The engine's test step: a round trip through the key ring with the pending key."""

from __future__ import annotations

import pytest

from keyroll.errors import UsageError
from keyroll.generate import generate
from keyroll.model import Kind, Label, SecretRef, SecretValue
from keyroll.runtime.keysource import StoreKeySource
from keyroll.runtime.selftest import round_trip
from keyroll.stores.base import Store
from tests.unit.runtime.support import put


@pytest.mark.parametrize(
    ("kind", "fmt", "prefix"),
    [
        (Kind.JWT_SIGNING, "base64-48", ""),
        (Kind.ENCRYPTION_KEY, "key-32", ""),
        (Kind.WEBHOOK_HMAC, "base64-48", "whsec_"),
    ],
)
def test_pending_key_round_trip(store: Store, kind: Kind, fmt: str, prefix: str) -> None:
    ref = SecretRef("prod", "some-key")
    put(store, ref, generate(fmt, prefix=prefix), Label.CURRENT)
    pending = put(store, ref, generate(fmt, prefix=prefix), Label.PENDING)
    source = StoreKeySource(store, ref, primary=Label.PENDING, accept=(Label.CURRENT,))
    assert round_trip(source, kind) == pending.kid


def test_unusable_value_is_a_usage_error_naming_the_version(store: Store) -> None:
    ref = SecretRef("prod", "field-encryption")
    put(store, ref, generate("key-32"), Label.CURRENT)
    put(store, ref, SecretValue("not base64 at all: no webhook secret!"), Label.PENDING)
    source = StoreKeySource(store, ref, primary=Label.PENDING, accept=())
    with pytest.raises(UsageError, match="store:prod/field-encryption#2"):
        round_trip(source, Kind.WEBHOOK_HMAC)


def test_kinds_without_a_ring_are_refused(store: Store) -> None:
    ref = SecretRef("prod", "db")
    put(store, ref, generate("password-32"), Label.CURRENT)
    with pytest.raises(UsageError, match="postgres-role"):
        round_trip(StoreKeySource(store, ref), Kind.POSTGRES_ROLE)
