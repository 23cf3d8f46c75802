"""WebhookKeyRing: Standard Webhooks vectors, multi-secret rotation, tolerance, tampering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keyroll.errors import InvalidToken, UsageError
from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.runtime.keysource import Key, StaticKeySource
from keyroll.runtime.webhooks import WebhookKeyRing

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "webhooks_v1.json").read_text())


def secret() -> SecretValue:
    return generate("base64-48", prefix="whsec_")


def ring_of(*values: SecretValue, now: float = 1_763_776_800.0) -> WebhookKeyRing:
    return WebhookKeyRing(StaticKeySource.of(*values), clock=lambda: now)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["description"])
def test_known_answer(vector: dict[str, Any]) -> None:
    values = [SecretValue(s) for s in vector["secrets"]]
    ring = ring_of(*values, now=vector["timestamp"])
    body = vector["body"].encode()
    assert ring.signature(vector["id"], vector["timestamp"], body) == vector["signature"]
    headers = {
        "Webhook-Id": vector["id"],
        "Webhook-Timestamp": str(vector["timestamp"]),
        "Webhook-Signature": vector["signature"],
    }
    assert ring.verify(body, headers) == ring.source.snapshot().current.kid


def test_rotation_sender_signs_with_both_receiver_holds_either() -> None:
    old, new = secret(), secret()
    sender = ring_of(new, old)
    headers = sender.sign("msg_1", b"{}", now=1_763_776_800)
    assert headers["webhook-signature"].count("v1,") == 2
    for receiver in (ring_of(old), ring_of(new), ring_of(new, old)):
        receiver.verify(b"{}", headers)


def test_usage_counts_the_secret_that_matched() -> None:
    old, new = secret(), secret()
    sender_old = ring_of(old)
    receiver = ring_of(new, old)
    kid = receiver.verify(b"{}", sender_old.sign("m", b"{}"))
    assert kid == sender_old.source.snapshot().current.kid
    assert receiver.source.usage.snapshot()[kid].count == 1


def test_timestamp_tolerance() -> None:
    s = secret()
    headers = ring_of(s).sign("m", b"x", now=1_000_000)
    ring_of(s, now=1_000_300).verify(b"x", headers)
    ring_of(s, now=999_700).verify(b"x", headers)
    for now in (1_000_301, 999_699):
        with pytest.raises(InvalidToken):
            ring_of(s, now=now).verify(b"x", headers)


def test_tampering_is_rejected_with_one_error() -> None:
    s = secret()
    ring = ring_of(s)
    body = b'{"amount": 150000}'
    headers = ring.sign("msg_1", body)
    for i in range(len(body)):
        flipped = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        with pytest.raises(InvalidToken, match=r"^invalid webhook signature$"):
            ring.verify(flipped, headers)
    for name in headers:
        value = headers[name]
        for i in range(len(value)):
            bad = dict(headers)
            bad[name] = value[:i] + chr(ord(value[i]) ^ 1) + value[i + 1 :]
            if bad[name] == value:
                continue
            with pytest.raises(InvalidToken, match=r"^invalid webhook signature$"):
                ring.verify(body, bad)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "m", "webhook-timestamp": "x", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "m", "webhook-timestamp": "1763776800", "webhook-signature": ""},
        {"webhook-id": "m", "webhook-timestamp": "1763776800", "webhook-signature": "v2,AAAA"},
    ],
)
def test_malformed_headers(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidToken):
        ring_of(secret()).verify(b"x", headers)


def test_non_base64_secret_is_refused_naming_the_origin() -> None:
    bad = Key(5, SecretValue("not base64 at all, definitely not!!"), origin="env:WEBHOOK_SECRET")
    with pytest.raises(UsageError, match="env:WEBHOOK_SECRET"):
        WebhookKeyRing(StaticKeySource([bad]))


_NOW = 1_763_776_800


def _hostile_headers() -> list[Any]:
    base = {"webhook-id": "m", "webhook-timestamp": str(_NOW), "webhook-signature": "v1,AAAA"}
    return [
        {**base, "webhook-timestamp": "²"},  # str.isdigit() accepts it, int() does not
        {**base, "webhook-timestamp": "١٧٦٣٧٧٦٨٠٠"},  # Arabic-Indic digits
        {**base, "webhook-timestamp": "9" * 400},  # int - float overflows
        {**base, "webhook-timestamp": "9" * 5000},  # int() refuses more than 4300 digits
        {**base, "webhook-timestamp": b"1763776800"[:3] + b"\xff"},
        {k: v.encode() + b"\xff" for k, v in base.items()},
        {**base, "webhook-signature": b"v1,\xff\xfe"},
        {**base, "webhook-signature": "v1,\udcff"},  # a lone surrogate cannot be encoded
        {**base, "webhook-id": "\udcff"},
        {**base, "webhook-signature": 12345},
        {**base, "webhook-id": None},
        {**base, 7: "x"},
        {**base, "webhook-signature": "v1,ÅÅÅÅ"},
    ]


@pytest.mark.parametrize("headers", _hostile_headers(), ids=range(len(_hostile_headers())))
def test_sender_controlled_headers_only_ever_raise_invalid_token(headers: Any) -> None:
    # issue 10 §6: these raised ValueError, OverflowError or TypeError
    with pytest.raises(InvalidToken, match=r"^invalid webhook signature$"):
        ring_of(secret(), now=float(_NOW)).verify(b"x", headers)


def test_bytes_headers_that_are_ascii_verify() -> None:
    ring = ring_of(secret(), now=float(_NOW))
    headers = ring.sign("msg_1", b"body", now=float(_NOW))
    raw = {k.encode(): v.encode() for k, v in headers.items()}
    assert ring.verify(b"body", raw) == ring.verify(b"body", headers)  # type: ignore[arg-type]
