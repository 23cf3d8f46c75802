"""Redaction: planted secrets in every form never reach log output."""

from __future__ import annotations

import base64
import io
import json
import logging
import shlex
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest
import structlog

from keyroll.generate import generate
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.runtime.keysource import StaticKeySource, StoreKeySource
from keyroll.runtime.redaction import RedactingFilter, Redactor, StructlogRedactor, mask
from keyroll.stores.base import Store
from tests.leaks import assert_no_leak, leak_forms, printf_q
from tests.unit.runtime.conftest import FakeClock
from tests.unit.runtime.support import put, rotate


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, list[RedactingFilter]]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(extra_field)s"))
    logger = logging.getLogger("keyroll.test.redaction")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    filters: list[RedactingFilter] = []
    yield logger, out, filters
    logger.removeHandler(handler)
    for f in filters:
        handler.removeFilter(f)


def attach(logger: logging.Logger, redactor: Redactor, filters: list[RedactingFilter]) -> None:
    f = RedactingFilter(redactor)
    logger.handlers[0].addFilter(f)
    filters.append(f)


def test_planted_secrets_in_every_form_are_masked(
    logged: tuple[logging.Logger, io.StringIO, list[RedactingFilter]],
) -> None:
    logger, out, filters = logged
    jwt_key, field_key = generate("base64-48"), generate("key-32")
    pw = generate("password-32")
    attach(logger, Redactor([StaticKeySource.of(jwt_key, field_key)], values=[pw]), filters)
    for value in (jwt_key, field_key, pw):
        for form in leak_forms(value.reveal()):
            text = form.decode()
            logger.info("config dump %s", text, extra={"extra_field": {"nested": [text]}})
            logger.warning("inline " + text + " done", extra={"extra_field": text})
    raw = base64.b64decode(field_key.reveal())
    logger.info(
        "key bytes %s / %s", raw.hex(), base64.urlsafe_b64encode(raw).decode(), extra={"extra_field": "-"}
    )
    output = out.getvalue()
    assert_no_leak([output], [jwt_key.reveal(), field_key.reveal(), pw.reveal(), raw])
    assert mask(jwt_key.reveal()) in output  # first 4 chars + "…" remain (seed 003)


def test_tracebacks_are_masked(
    logged: tuple[logging.Logger, io.StringIO, list[RedactingFilter]],
) -> None:
    logger, out, filters = logged
    value = generate("base64-48")
    attach(logger, Redactor(values=[value]), filters)

    def connect() -> None:
        raise RuntimeError(f"connect failed with {value.reveal()}")

    try:
        connect()
    except RuntimeError:
        logger.exception("boom", extra={"extra_field": "-"})
    assert "RuntimeError" in out.getvalue()
    assert_no_leak([out.getvalue()], [value.reveal()])


@pytest.mark.parametrize(
    ("line", "hidden"),
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl", "eyJzdWIi"),
        ("postgresql://goodgo_app_v2:Zx9Kq2LmP7vR3tY8@db:5432/goodgo", "Zx9Kq2LmP7vR3tY8"),
        ("redis://:hunter2hunter2@cache:6379/0", "hunter2hunter2"),
    ],
)
def test_common_patterns(line: str, hidden: str) -> None:
    redacted = Redactor().redact(line)
    assert hidden not in redacted
    assert "…" in redacted


def test_unrelated_text_is_untouched() -> None:
    r = Redactor(values=[generate("base64-48")])
    line = "GET /health/ready 200 in 3ms user=42 https://example.com/path"
    assert r.redact(line) is line


def test_matcher_is_rebuilt_on_rotation_and_remembers_old_values(
    store: Store, ref: SecretRef, clock: FakeClock
) -> None:
    a, b = generate("base64-48"), generate("base64-48")
    put(store, ref, a, Label.CURRENT)
    r = Redactor([StoreKeySource(store, ref, refresh_interval=5, clock=clock)])
    assert b.reveal() in r.redact(b.reveal())
    rotate(store, ref, b)
    clock.advance(5)
    assert b.reveal() not in r.redact(b.reveal())
    assert a.reveal() not in r.redact(a.reveal())


def test_url_encoded_value_with_special_chars() -> None:
    value = SecretValue("p@ss/w:rd+with=odd&chars#1234567890")
    r = Redactor(values=[value])
    for form in (value.reveal(), quote(value.reveal(), safe=""), quote_plus(value.reveal())):
        assert_no_leak([r.redact(f"x={form}&y=1")], [value.reveal()])


def test_structlog_processor() -> None:
    value = generate("base64-48")
    out = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[StructlogRedactor(Redactor(values=[value])), structlog.processors.JSONRenderer()],
    )
    logger.info("rotated", token=value.reveal(), nested={"keys": [value.reveal()]})
    assert "rotated" in out.getvalue()
    assert_no_leak([out.getvalue()], [value.reveal()])


def test_bad_format_arguments_do_not_crash_nor_leak(
    logged: tuple[logging.Logger, io.StringIO, list[RedactingFilter]],
) -> None:
    logger, out, filters = logged
    value = generate("base64-48")
    attach(logger, Redactor(values=[value]), filters)
    logger.info("two %s %s but one", value.reveal(), extra={"extra_field": "-"})
    assert "arguments withheld" in out.getvalue()
    assert_no_leak([out.getvalue()], [value.reveal()])


# --- issue 10 §4: escaped spellings, short values, masks of at most 4 characters ----------


def test_escaped_spellings_are_masked() -> None:
    value = 'p$ss"w\\rd-' + generate("password-32").reveal()
    r = Redactor(values=[SecretValue(value)])
    dotenv = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    lines = [f'X="{dotenv}"', json.dumps({"X": value}), shlex.quote(value), printf_q(value),
             base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")]
    assert_no_leak([r.redact(line) for line in lines], [value])


def test_short_values_are_masked_as_whole_tokens_only() -> None:
    r = Redactor(values=[SecretValue("Pq7$x"), SecretValue("cat")])
    assert r.redact("pin=Pq7$x") == "pin=P…"
    assert r.redact('{"pin": "Pq7$x"}') == '{"pin": "P…"}'
    assert r.redact("concatenate the cat") == "concatenate the …"  # the word, not its letters
    assert r.redact("Pq7$xy") == "Pq7$xy"


def test_masks_keep_at_most_four_characters() -> None:
    assert mask("0123456789abcdefXYZ") == "0123…"
    assert mask("01234567") == "01…"
    assert mask("012") == "…"
    r = Redactor()
    assert r.redact("postgresql://app:hunter22@db/app") == "postgresql://app:hu…@db/app"


def test_dsn_password_with_brackets_and_at_signs_is_masked() -> None:
    r = Redactor()
    line = "connecting to postgresql://app:ab@[s3cret]/x@db.internal:5432/app failed"
    assert "s3cret" not in r.redact(line) and "db.internal" in r.redact(line)
