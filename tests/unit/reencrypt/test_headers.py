"""Header math: the text prefixes of a kid are exactly what `FieldCipher.encrypt_text` writes."""

from __future__ import annotations

import secrets

import pytest

from keyroll.model import Label, SecretValue
from keyroll.reencrypt.headers import (
    TEXT_HEAD,
    HeaderMatch,
    binary_header,
    kid_of_text_head,
    text_prefixes,
)
from keyroll.reencrypt.job import row_context
from keyroll.runtime.fields import FieldCipher
from keyroll.runtime.keysource import Key, StaticKeySource


def _cipher(kid: int) -> FieldCipher:
    return FieldCipher(StaticKeySource([Key(kid, SecretValue(secrets.token_hex(32)), Label.CURRENT)]))


@pytest.mark.parametrize("kid", [0, 1, 0xFFFFFFFF, 0x0F0F0F0F, *(secrets.randbits(32) for _ in range(20))])
def test_text_and_binary_headers_match_real_ciphertexts(kid: int) -> None:
    cipher = _cipher(kid)
    prefixes = text_prefixes(kid)
    seen = set()
    for _ in range(64):  # 64 nonces: all 4 variants of the 2 free nonce bits show up
        text = cipher.encrypt_text(b"x")
        assert text[:TEXT_HEAD] in prefixes
        seen.add(text[:TEXT_HEAD])
        assert kid_of_text_head(text[:TEXT_HEAD]) == kid
        assert cipher.encrypt(b"x")[:5] == binary_header(kid)
    assert len(seen) >= 2
    assert len(set(prefixes)) == 4


def test_prefixes_of_different_kids_never_overlap() -> None:
    kids = {secrets.randbits(32) for _ in range(200)} | {1, 2, 3, 1 << 31}
    owner: dict[str, int] = {}
    for kid in kids:
        for prefix in text_prefixes(kid):
            assert owner.setdefault(prefix, kid) == kid
    neighbours = [text_prefixes(k) for k in (0x10, 0x11, 0x1F, 0x20)]
    assert len({p for group in neighbours for p in group}) == 16


@pytest.mark.parametrize("head", ["", "kr1.", "kr1.AAAAAA", "xx1.AQAAAAA", "kr1.AQAA*AA", "kr1.AgAAAAA"])
def test_kid_of_text_head_refuses_what_is_not_a_header(head: str) -> None:
    assert kid_of_text_head(head) is None


def test_header_match_bundles_both_forms() -> None:
    match = HeaderMatch.for_kid(0xDEADBEEF)
    assert match.binary == b"\x01\xde\xad\xbe\xef"
    assert match.kid_hex == "deadbeef"
    assert match.text == text_prefixes(0xDEADBEEF)


def test_row_context_templates() -> None:
    assert row_context(None, 5) is None
    assert row_context("users.phone", 5) == "users.phone"
    assert row_context("users,email,{key}", 42) == ("users", "email", 42)
    assert row_context("users, email , {key}", "ab") == ("users", "email", "ab")
    assert row_context("t,row-{key}", 7) == ("t", "row-7")
    cipher = _cipher(9)
    sealed = cipher.encrypt(b"v", context=("users", "email", 42))
    # an int key and its decimal text are the same AAD, so text keys from JSON still match
    assert cipher.decrypt(sealed, context=row_context("users,email,{key}", "42")) == b"v"
