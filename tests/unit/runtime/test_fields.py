"""FieldCipher: known-answer vectors, context binding, tamper resistance, Fernet migration."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from keyroll.errors import InvalidToken, UsageError
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.runtime.fields import FieldCipher, field_key_bytes
from keyroll.runtime.keysource import EnvKeySource, Key, StaticKeySource, StoreKeySource
from keyroll.stores.base import Store
from tests.unit.runtime.conftest import FakeClock
from tests.unit.runtime.support import field_value, put, rotate

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "field_v1.json").read_text())
A, B = field_value(), field_value()


def context_of(raw: list[Any]) -> tuple[str | int | bytes, ...]:
    return tuple(bytes.fromhex(p["hex"]) if isinstance(p, dict) else p for p in raw)


def cipher_for(vector: dict[str, Any]) -> FieldCipher:
    key = Key(int(vector["kid"], 16), SecretValue(vector["key"]))
    return FieldCipher(StaticKeySource([key]))


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["description"])
def test_known_answer_decrypt(vector: dict[str, Any]) -> None:
    cipher = cipher_for(vector)
    ctx = context_of(vector["context"])
    plaintext = bytes.fromhex(vector["plaintext"])
    assert cipher.decrypt(bytes.fromhex(vector["ciphertext"]), context=ctx) == plaintext
    assert cipher.decrypt_text_bytes(vector["text"], context=ctx) == plaintext


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["description"])
def test_known_answer_encrypt(vector: dict[str, Any]) -> None:
    cipher = cipher_for(vector)
    blob = cipher._encrypt_from_parts(
        bytes.fromhex(vector["plaintext"]),
        context_of(vector["context"]),
        bytes.fromhex(vector["nonce"]),
    )
    assert blob.hex() == vector["ciphertext"]


def test_ambiguous_contexts_differ() -> None:
    a, _ = (v for v in VECTORS["vectors"] if v["description"].startswith("ambiguity"))
    with pytest.raises(InvalidToken):
        cipher_for(a).decrypt(bytes.fromhex(a["ciphertext"]), context=("ab", "c"))


def test_round_trip_both_forms() -> None:
    cipher = FieldCipher(StaticKeySource.of(A))
    ctx = ("datasources", "password", 17)
    blob = cipher.encrypt(b"s3cr3t-db-password", context=ctx)
    assert blob[0] == 0x01 and blob[1:5] == cipher.current_kid.to_bytes(4, "big")
    assert len(blob) == 1 + 4 + 12 + len(b"s3cr3t-db-password") + 16
    assert cipher.decrypt(blob, context=ctx) == b"s3cr3t-db-password"
    text = cipher.encrypt_text("пароль", context=ctx)
    assert text.startswith("kr1.") and "=" not in text
    assert cipher.decrypt_text(text, context=ctx) == "пароль"


def test_wrong_context_is_rejected() -> None:
    cipher = FieldCipher(StaticKeySource.of(A))
    blob = cipher.encrypt(b"x", context=("users", "email", 1))
    for other in [("users", "email", 2), ("users", "phone", 1), None, "users"]:
        with pytest.raises(InvalidToken):
            cipher.decrypt(blob, context=other)


def test_previous_key_decrypts_and_needs_reencrypt() -> None:
    old = FieldCipher(StaticKeySource.of(A))
    blob, text = old.encrypt(b"v"), old.encrypt_text("v")
    new = FieldCipher(StaticKeySource.of(B, A))
    assert new.decrypt(blob) == b"v"
    assert new.needs_reencrypt(blob) and new.needs_reencrypt(text)
    again = new.reencrypt(text)
    assert isinstance(again, str) and not new.needs_reencrypt(again)
    assert new.kid_of(again) == new.current_kid
    assert new.source.usage.snapshot()[old.current_kid].count == 2


def test_reencrypt_many_matches_reencrypt_one_by_one() -> None:
    """A batch of every kind of input: each result is what `reencrypt` gives for that item
    (same form, same plaintext, current key), None exactly where `reencrypt` raises."""
    fernet_key = Fernet.generate_key().decode()
    old = FieldCipher(StaticKeySource.of(A))
    new = FieldCipher(StaticKeySource.of(B, A),
                      legacy=EnvKeySource.secret_key(environ={"SECRET_KEY": fernet_key}))
    good = old.encrypt(b"row 1", context=("t", "c", 1))
    flipped = good[:-1] + bytes([good[-1] ^ 1])
    items: list[tuple[bytes | str, Any]] = [
        (good, ("t", "c", 1)),
        (good, ("t", "c", 2)),                                   # copied to another row
        (flipped, ("t", "c", 1)),                                # tampered
        (old.encrypt_text("text row", context="t.c"), "t.c"),    # text form
        (new.encrypt(b"already current", context=None), None),   # current key: rewritten too
        (FieldCipher(StaticKeySource.of(field_value())).encrypt(b"x"), None),  # unknown kid
        (good[:20], ("t", "c", 1)),                              # truncated
        (Fernet(fernet_key.encode()).encrypt(b"fernet row"), None),  # legacy Fernet
        (b"", None),
        ("not a ciphertext", None),
        (bytearray(old.encrypt(b"bytearray row", context="b")), "b"),
    ]
    results = new.reencrypt_many(items)  # type: ignore[arg-type]  (a bytearray, on purpose)
    assert len(results) == len(items)
    for (value, context), result in zip(items, results, strict=True):
        try:
            expected = new.reencrypt(value, context=context)
        except InvalidToken:
            assert result is None
            continue
        assert result is not None and type(result) is type(expected)
        assert new.kid_of(result) == new.current_kid
        plain = (new.decrypt_text_bytes(result, context=context) if isinstance(result, str)
                 else new.decrypt(result, context=context))
        assert plain == (new.decrypt_text_bytes(expected, context=context)
                         if isinstance(expected, str) else new.decrypt(expected, context=context))
    assert [r is None for r in results] == [False, True, True, False, False, True, True, False,
                                            True, True, False]


def test_reencrypt_many_nonces_are_all_distinct_and_uses_are_counted() -> None:
    old = FieldCipher(StaticKeySource.of(A))
    new = FieldCipher(StaticKeySource.of(B, A))
    values = [old.encrypt(b"same plaintext", context="c") for _ in range(2000)]
    results = new.reencrypt_many([(v, "c") for v in values])
    nonces = {bytes(r[5:17]) for r in results if isinstance(r, bytes)}  # type: ignore[index]
    assert len(nonces) == len(values)
    assert new.source.usage.snapshot()[old.current_kid].count == len(values)
    assert new.reencrypt_many([]) == []


def test_every_byte_flipped_is_rejected_with_one_error() -> None:
    cipher = FieldCipher(StaticKeySource.of(A, B))
    blob = cipher.encrypt(b"card 4111-1111", context=("payments", "pan", 9))
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            flipped = blob[:i] + bytes([blob[i] ^ bit]) + blob[i + 1 :]
            with pytest.raises(InvalidToken, match=r"^invalid ciphertext$"):
                cipher.decrypt(flipped, context=("payments", "pan", 9))
    for cut in range(len(blob)):
        with pytest.raises(InvalidToken):
            cipher.decrypt(blob[:cut], context=("payments", "pan", 9))


def test_every_char_of_the_text_form_flipped_is_rejected() -> None:
    cipher = FieldCipher(StaticKeySource.of(A))
    text = cipher.encrypt_text("secret", context="c")
    for i in range(len(text)):
        flipped = text[:i] + chr(ord(text[i]) ^ 0x01) + text[i + 1 :]
        with pytest.raises(InvalidToken, match=r"^invalid ciphertext$"):
            cipher.decrypt_text(flipped, context="c")


def test_unknown_kid_rejected() -> None:
    blob = FieldCipher(StaticKeySource.of(A)).encrypt(b"x")
    with pytest.raises(InvalidToken):
        FieldCipher(StaticKeySource.of(B)).decrypt(blob)


def test_key_material_forms() -> None:
    raw = os.urandom(32)
    assert field_key_bytes(SecretValue(base64.b64encode(raw).decode())) == raw
    assert field_key_bytes(SecretValue(base64.urlsafe_b64encode(raw).decode())) == raw
    assert field_key_bytes(SecretValue(raw.hex())) == raw  # openssl rand -hex 32 (seed 001)
    stretched = field_key_bytes(SecretValue("a long passphrase that is not base64!!"))
    assert len(stretched) == 32
    with pytest.raises(UsageError, match="32\\+ characters"):
        field_key_bytes(SecretValue("short"))


def test_legacy_fernet_tokens_from_old_secret_keys() -> None:
    old1, old2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    legacy_token = Fernet(old2.encode()).encrypt(b"datasource password")
    env = {"SECRET_KEY": old1, "OLD_SECRET_KEYS": old2}
    legacy = EnvKeySource.secret_key(environ=env)
    cipher = FieldCipher(StaticKeySource.of(A), legacy=legacy)
    assert cipher.decrypt(legacy_token) == b"datasource password"
    assert cipher.decrypt_text(legacy_token.decode()) == "datasource password"
    assert cipher.needs_reencrypt(legacy_token.decode())
    assert cipher.kid_of(legacy_token) is None
    new_text = cipher.reencrypt(legacy_token.decode())
    assert isinstance(new_text, str) and new_text.startswith("kr1.")
    assert cipher.decrypt_text(new_text) == "datasource password"
    counted = legacy.usage.snapshot()
    assert sum(u.legacy for u in counted.values()) == 3
    flipped = legacy_token[:-3] + bytes([legacy_token[-3] ^ 1]) + legacy_token[-2:]
    with pytest.raises(InvalidToken):
        cipher.decrypt(flipped)


def test_fernet_tokens_refused_without_legacy() -> None:
    token = Fernet(Fernet.generate_key()).encrypt(b"x")
    with pytest.raises(InvalidToken):
        FieldCipher(StaticKeySource.of(A)).decrypt(token)


def test_cipher_follows_store_rotation(store: Store, clock: FakeClock) -> None:
    ref = SecretRef("prod", "field-encryption")
    v1 = put(store, ref, A, Label.CURRENT)
    cipher = FieldCipher(StoreKeySource(store, ref, refresh_interval=5, clock=clock))
    blob = cipher.encrypt(b"x")
    v2 = rotate(store, ref, B)
    clock.advance(5)
    assert cipher.current_kid == v2.kid
    assert cipher.kid_of(blob) == v1.kid
    assert cipher.decrypt(blob) == b"x"


def test_memoryview_and_bytearray_inputs() -> None:
    cipher = FieldCipher(StaticKeySource.of(A))
    blob = cipher.encrypt(b"x", context="c")
    assert cipher.decrypt(memoryview(blob), context="c") == b"x"
    assert cipher.decrypt(bytearray(blob), context="c") == b"x"
