"""import/generate refuse short values (issue 10 §4); KEYROLL_DEBUG tracebacks are scrubbed."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from keyroll.cli.app import debug_traceback
from tests.unit.cli.conftest import Keyroll


def test_import_refuses_a_short_value_unless_allowed(
    initialised: Keyroll, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "old.env").write_text("JWT_SECRET=Sh0rt-but-20-chars!!\nVNPAY_HASH_SECRET=abc12\n")
    refused = initialised("import", "--env", "dev", "--file", "old.env")
    assert refused.code == 2
    assert "shorter than the minimum of 32 characters of class 'jwt-access'" in refused.err
    assert "--allow-short" in refused.err and "nothing was imported" in refused.err
    assert len(refused.err.strip().splitlines()) == 1 and "Sh0rt" not in refused.err
    assert initialised("get", "jwt-access", "--env", "dev").code != 0  # nothing written
    allowed = initialised("import", "--env", "dev", "--file", "old.env", "--allow-short")
    assert allowed.code == 0, allowed.err
    assert initialised("get", "jwt-access", "--env", "dev").code == 0

    monkeypatch.setattr(sys, "stdin", io.StringIO("tiny\n"))
    one = initialised("import", "vnpay-hash-secret", "--env", "staging")
    assert one.code == 2 and "minimum of 16" in one.err


def test_generate_refuses_below_min_length(initialised: Keyroll, project: Path) -> None:
    toml = project / "keyroll.toml"
    text = toml.read_text()
    head, sep, tail = text.partition("[classes.jwt-refresh]\n")
    toml.write_text(head + sep + "min_length = 100\n" + tail)
    refused = initialised("generate", "jwt-refresh", "--env", "dev")
    assert refused.code == 2 and "minimum of 100" in refused.err
    assert initialised("get", "jwt-refresh", "--env", "dev").code != 0
    assert initialised("generate", "jwt-refresh", "--env", "dev", "--allow-short").code == 0


def test_a_dsn_with_brackets_never_reaches_an_error(
    initialised: Keyroll, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYROLL_DEBUG", "1")
    monkeypatch.setattr(sys, "stdin",
                        io.StringIO("postgresql://app:ab@[s3cretpart]@db.internal/app\n"))
    result = initialised("import", "database", "--env", "staging")
    assert result.code == 2 and "percent-encode" in result.err
    assert "s3cretpart" not in result.err + result.out


def test_debug_traceback_is_scrubbed() -> None:
    dsn = "postgresql://app:ab@[s3cretpart]@db.internal/app"
    try:
        try:
            urlsplit(dsn)
        except ValueError as inner:
            raise RuntimeError(f"cannot use {dsn}") from inner
    except RuntimeError as exc:
        text = debug_traceback(exc, {"DATABASE_URL": dsn, "KEYROLL_MASTER_KEY": "m" * 44})
    assert "Traceback" in text and "does not appear to be an IPv4 or IPv6 address" in text
    assert "s3cretpart" not in text and "ab@[" not in text


def test_debug_mode_prints_a_scrubbed_traceback(
    initialised: Keyroll, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyroll.cli.status_cmd as status_cmd

    dsn = "postgresql://app:ab@[s3cretpart]@db.internal/app"
    monkeypatch.setenv("DATABASE_URL", dsn)

    def boom(*args: object, **kwargs: object) -> None:
        urlsplit(dsn)

    monkeypatch.setattr(status_cmd, "statuses", boom)
    monkeypatch.setenv("KEYROLL_DEBUG", "1")
    result = initialised("status", "--env", "dev")
    assert result.code == 1 and "Traceback" in result.err and "ValueError" in result.err
    assert "s3cretpart" not in result.err
