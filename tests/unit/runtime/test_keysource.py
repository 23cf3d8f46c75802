"""Key sources: store-backed refresh, env-var conventions, key-set invariants."""

from __future__ import annotations

import logging

import pytest

from keyroll.errors import NotFound, SecretRejected, StoreUnavailable, UsageError
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.runtime.keysource import (
    EnvKeySource,
    Key,
    KeySet,
    StaticKeySource,
    StoreKeySource,
    derive_env_kid,
)
from keyroll.stores.base import Store
from tests.unit.runtime.conftest import FakeClock
from tests.unit.runtime.support import jwt_value, promote, put, rotate

A, B, C = jwt_value(), jwt_value(), jwt_value()


# --- key sets ---------------------------------------------------------------------------------


def test_keyset_needs_exactly_one_current() -> None:
    k1 = Key(1, A, Label.CURRENT)
    k2 = Key(2, B, Label.CURRENT)
    with pytest.raises(UsageError, match="exactly one current"):
        KeySet(k1, (k1, k2))


def test_keyset_refuses_duplicate_kids_naming_both_origins() -> None:
    k1 = Key(7, A, Label.CURRENT, origin="env:JWT_SECRET")
    k2 = Key(7, B, Label.PREVIOUS, origin="env:JWT_SECRET_PREVIOUS")
    with pytest.raises(UsageError, match="JWT_SECRET and env:JWT_SECRET_PREVIOUS"):
        KeySet(k1, (k1, k2))


def test_static_source_orders_current_first() -> None:
    src = StaticKeySource([Key(2, B, Label.PREVIOUS), Key(1, A, Label.CURRENT)])
    assert [k.kid for k in src.snapshot().keys] == [1, 2]


# --- store source -----------------------------------------------------------------------------


def test_store_source_reads_current_and_previous(store: Store, ref: SecretRef) -> None:
    v1 = put(store, ref, A, Label.CURRENT)
    v2 = rotate(store, ref, B)
    keys = StoreKeySource(store, ref).snapshot()
    assert keys.current.kid == v2.kid
    assert keys.current.value == B
    assert [(k.kid, k.label) for k in keys.keys] == [
        (v2.kid, Label.CURRENT),
        (v1.kid, Label.PREVIOUS),
    ]
    assert keys.current.version == v2.number


def test_store_source_accepts_pending_but_never_signs_with_it(store: Store, ref: SecretRef) -> None:
    v1 = put(store, ref, A, Label.CURRENT)
    v2 = put(store, ref, B, Label.PENDING)
    keys = StoreKeySource(store, ref).snapshot()
    assert keys.current.kid == v1.kid
    assert keys.by_kid[v2.kid].label is Label.PENDING


def test_store_source_picks_up_rotation_after_the_interval(
    store: Store, ref: SecretRef, clock: FakeClock
) -> None:
    v1 = put(store, ref, A, Label.CURRENT)
    src = StoreKeySource(store, ref, refresh_interval=5, clock=clock)
    first = src.snapshot()
    v2 = rotate(store, ref, B)
    clock.advance(4.9)
    assert src.snapshot() is first  # not yet
    clock.advance(0.2)
    second = src.snapshot()
    assert second.current.kid == v2.kid
    assert second.by_kid[v1.kid].label is Label.PREVIOUS
    assert second.generation == first.generation + 1


def test_unchanged_store_keeps_the_same_snapshot(store: Store, ref: SecretRef, clock: FakeClock) -> None:
    put(store, ref, A, Label.CURRENT)
    src = StoreKeySource(store, ref, refresh_interval=1, clock=clock)
    first = src.snapshot()
    clock.advance(10)
    assert src.snapshot() is first


def test_store_outage_keeps_the_last_keys(
    store: Store, ref: SecretRef, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    put(store, ref, A, Label.CURRENT)
    src = StoreKeySource(store, ref, refresh_interval=1, clock=clock)
    first = src.snapshot()

    def down(_ref: SecretRef) -> dict[Label, int]:
        raise StoreUnavailable("store down: retry later")

    store.get_labels = down  # type: ignore[method-assign]
    clock.advance(2)
    with caplog.at_level(logging.WARNING, logger="keyroll.runtime"):
        assert src.snapshot() is first
    assert "still using generation 1" in caplog.text
    assert A.reveal() not in caplog.text


def test_store_source_without_current_refuses_to_start(store: Store, ref: SecretRef) -> None:
    put(store, ref, A, Label.PENDING)
    with pytest.raises(NotFound, match="no current version"):
        StoreKeySource(store, ref)


def test_engine_can_build_a_ring_that_signs_with_pending(store: Store, ref: SecretRef) -> None:
    v1 = put(store, ref, A, Label.CURRENT)
    v2 = put(store, ref, B, Label.PENDING)
    keys = StoreKeySource(store, ref, primary=Label.PENDING, accept=(Label.CURRENT,)).snapshot()
    assert keys.current.kid == v2.kid
    assert keys.by_kid[v1.kid].label is Label.PREVIOUS


def test_destroyed_previous_drops_out(store: Store, ref: SecretRef, clock: FakeClock) -> None:
    v1 = put(store, ref, A, Label.CURRENT)
    rotate(store, ref, B)
    src = StoreKeySource(store, ref, refresh_interval=1, clock=clock)
    assert v1.kid in src.snapshot().by_kid
    store.set_labels(ref, expected={Label.PREVIOUS: v1.number}, new={Label.PREVIOUS: None})
    store.destroy_version(ref, v1.number)
    clock.advance(2)
    assert v1.kid not in src.snapshot().by_kid


def test_promote_helper_round_trip(store: Store, ref: SecretRef) -> None:
    put(store, ref, A, Label.CURRENT)
    v2 = put(store, ref, C, Label.PENDING)
    promote(store, ref)
    assert store.get_labels(ref)[Label.CURRENT] == v2.number


# --- env sources ------------------------------------------------------------------------------


def test_seed_004_convention() -> None:
    env = {"JWT_SECRET": A.reveal(), "JWT_SECRET_PREVIOUS": B.reveal()}
    keys = EnvKeySource.jwt_secret(environ=env).snapshot()
    assert keys.current.value == A
    assert [k.origin for k in keys.keys] == ["env:JWT_SECRET", "env:JWT_SECRET_PREVIOUS"]


def test_seed_003_convention() -> None:
    env = {"JWT_SECRET_KEY_CURRENT": A.reveal(), "JWT_SECRET_KEY_PREVIOUS": B.reveal()}
    keys = EnvKeySource.jwt_secret_key(environ=env).snapshot()
    assert [k.value for k in keys.keys] == [A, B]


def test_seed_001_convention_with_the_current_key_listed_in_old_keys() -> None:
    # seed 001 step 1 puts the current key into OLD_SECRET_KEYS as well
    env = {"SECRET_KEY": A.reveal(), "OLD_SECRET_KEYS": f"{A.reveal()}, {B.reveal()},,{C.reveal()}"}
    keys = EnvKeySource.secret_key(environ=env).snapshot()
    assert [k.value for k in keys.keys] == [A, B, C]


def test_cleared_old_keys_is_fine() -> None:
    keys = EnvKeySource.secret_key(environ={"SECRET_KEY": A.reveal(), "OLD_SECRET_KEYS": ""})
    assert len(keys.snapshot().keys) == 1


def test_derived_kid_follows_the_value_from_current_to_previous() -> None:
    before = EnvKeySource.jwt_secret(environ={"JWT_SECRET": A.reveal()}).snapshot()
    after = EnvKeySource.jwt_secret(
        environ={"JWT_SECRET": B.reveal(), "JWT_SECRET_PREVIOUS": A.reveal()}
    ).snapshot()
    assert after.by_kid[before.current.kid].value == A
    assert before.current.kid == derive_env_kid(A)
    assert not before.current.kid_assigned


def test_derived_kid_is_not_the_fingerprint() -> None:
    assert f"{derive_env_kid(A):08x}" not in A.fingerprint


def test_assigned_kids_win() -> None:
    env = {
        "SECRET_KEY": A.reveal(),
        "SECRET_KEY_KID": "0A0B0C0D",
        "OLD_SECRET_KEYS": f"{B.reveal()},{C.reveal()}",
        "OLD_SECRET_KEYS_KIDS": "00000002,00000003",
    }
    keys = EnvKeySource.secret_key(environ=env).snapshot()
    assert [k.kid for k in keys.keys] == [0x0A0B0C0D, 2, 3]
    assert all(k.kid_assigned for k in keys.keys)


def test_malformed_kid_names_the_variable() -> None:
    env = {"JWT_SECRET": A.reveal(), "JWT_SECRET_KID": "xyz"}
    with pytest.raises(UsageError, match="JWT_SECRET's kid must be 8 hex digits"):
        EnvKeySource.jwt_secret(environ=env)


def test_derive_kids_false_requires_assigned_kids() -> None:
    with pytest.raises(UsageError, match="set JWT_SECRET_KID"):
        EnvKeySource.jwt_secret(environ={"JWT_SECRET": A.reveal()}, derive_kids=False)


def test_missing_current_var_refuses_to_start() -> None:
    with pytest.raises(SecretRejected, match="JWT_SECRET is not set"):
        EnvKeySource.jwt_secret(environ={})


def test_placeholder_refused_without_showing_it() -> None:
    value = "change-in-production-" + "x" * 40
    with pytest.raises(SecretRejected) as err:
        EnvKeySource.jwt_secret(environ={"JWT_SECRET": value})
    assert "JWT_SECRET holds a placeholder" in str(err.value)
    assert value not in str(err.value)


def test_env_change_is_picked_up_on_refresh(clock: FakeClock) -> None:
    env = {"JWT_SECRET": A.reveal()}
    src = EnvKeySource.jwt_secret(environ=env, refresh_interval=5, clock=clock)
    env.update(JWT_SECRET=B.reveal(), JWT_SECRET_PREVIOUS=A.reveal())
    clock.advance(5)
    assert src.snapshot().current.value == B


def test_static_of_derives_kids() -> None:
    src = StaticKeySource.of(A, B)
    assert [k.kid for k in src.snapshot().keys] == [derive_env_kid(A), derive_env_kid(B)]
    assert isinstance(src.snapshot().current.value, SecretValue)
