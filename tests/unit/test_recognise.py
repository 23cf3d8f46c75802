"""Recognising destroyed values by keyed digests, in every spelling a hook may print."""

from __future__ import annotations

import base64
import json
import shlex
from urllib.parse import quote, quote_plus

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyroll.recognise import DIGEST_INFO, Recogniser, derive_key, digest
from tests.leaks import assert_no_leak, printf_q

KEY = derive_key(b"k" * 32)
RETIRED = 'old$ecret"with\\slash-0123456789'
SHORT = "Pq7$x"


def _recogniser(*values: str) -> Recogniser:
    return Recogniser(KEY, [digest(KEY, v) for v in values])


def test_derive_key_is_rfc5869_hkdf_sha256() -> None:
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=DIGEST_INFO)
    assert derive_key(b"k" * 32) == expected.derive(b"k" * 32)
    assert derive_key(b"j" * 32) != KEY


def _spellings(value: str) -> dict[str, str]:
    raw = value.encode()
    dotenv = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return {
        "raw": f"token {value} end",
        "dotenv": f'JWT_SECRET="{dotenv}"',
        "json": json.dumps({"JWT_SECRET": value}),
        "json-ascii-off": json.dumps([value], ensure_ascii=False),
        "shell": f"export X={shlex.quote(value)}",
        "printf-q": f"value: {printf_q(value)}",
        "base64": f"b64={base64.b64encode(raw).decode()}",
        "base64url": f"url64 {base64.urlsafe_b64encode(raw).decode().rstrip('=')}",
        "hex": f"hex:{raw.hex()}",
        "HEX": f"{raw.hex().upper()}",
        "url": f"postgresql://app:{quote(value, safe='')}@db/app",
        "url-plus": f"?password={quote_plus(value)}&x=1",
    }


@pytest.mark.parametrize("value", [RETIRED, SHORT, "it's a 'quoted' value 0123"])
def test_every_spelling_is_recognised_and_masked(value: str) -> None:
    recogniser = _recogniser(value)
    for name, text in _spellings(value).items():
        assert recogniser.find(text), name
        masked = recogniser.redact(text, lambda span: "[gone]")
        assert "[gone]" in masked, name
        assert_no_leak([masked], [value], where=f"the {name} spelling")


def test_only_recorded_values_match() -> None:
    recogniser = _recogniser(RETIRED)
    text = "JWT_SECRET=another-value-0123456789 Pq7$x old$ecret"
    assert recogniser.find(text) == []
    assert recogniser.redact(text, lambda span: "[gone]") == text
    assert Recogniser(KEY).find(RETIRED) == []


def test_the_digest_needs_the_key() -> None:
    # a plain hash of a short value is brute-forced from the journal; the keyed one is not
    assert digest(KEY, SHORT) != digest(derive_key(b"x" * 32), SHORT)
    assert SHORT not in repr(_recogniser(SHORT))
