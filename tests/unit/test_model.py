from __future__ import annotations

import pickle

import pytest

from keyroll.errors import UsageError
from keyroll.generate import Format, decode_key32, generate
from keyroll.model import SecretRef, SecretValue, fingerprint, format_kid, new_kid, parse_kid


def test_fingerprint_is_first_16_hex_of_sha256() -> None:
    # printf '%s' abc | openssl dgst -sha256 | cut -c1-16  (seed 004 §2)
    assert fingerprint("abc") == "ba7816bf8f01cfea"


def test_secret_value_hides_itself() -> None:
    value = SecretValue("s3cr3t-value-that-must-not-leak")
    assert "s3cr3t" not in repr(value)
    assert "s3cr3t" not in str(value)
    assert "s3cr3t" not in f"{value}"
    assert value.fingerprint in repr(value)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(value)
    assert value == SecretValue("s3cr3t-value-that-must-not-leak")
    assert value != SecretValue("other")


def test_kid_is_random_32_bit_and_round_trips() -> None:
    kids = {new_kid() for _ in range(64)}
    assert len(kids) > 60
    for kid in kids:
        assert 0 <= kid < 2**32
        assert parse_kid(format_kid(kid)) == kid
    with pytest.raises(ValueError):
        parse_kid("abc")


@pytest.mark.parametrize("env,name", [("Prod", "x"), ("prod", "a b"), ("", "x"), ("prod", "-x")])
def test_secret_ref_rejects_bad_names(env: str, name: str) -> None:
    with pytest.raises(UsageError):
        SecretRef(env, name)


@pytest.mark.parametrize(
    "fmt,length,alphabet",
    [
        (Format.BASE64_48, 64, None),
        (Format.KEY_32, 44, None),
        (Format.PASSWORD_32, 32, set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")),
        (Format.HEX_32, 64, set("0123456789abcdef")),
    ],
)
def test_generators(fmt: Format, length: int, alphabet: set[str] | None) -> None:
    values = {generate(fmt).reveal() for _ in range(20)}
    assert len(values) == 20
    for v in values:
        assert len(v) == length
        if alphabet:
            assert set(v) <= alphabet


def test_prefix_and_key32_decoding() -> None:
    value = generate("key-32", prefix="whsec_")
    assert value.reveal().startswith("whsec_")
    assert len(decode_key32(value, prefix="whsec_")) == 32
    with pytest.raises(ValueError, match="32"):
        decode_key32(SecretValue("c2hvcnQ="))
    with pytest.raises(ValueError, match="base64"):
        decode_key32(SecretValue("not base64 at all!"))
