"""DSN handling and layering of `keyroll.reencrypt` (no server needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keyroll.errors import UsageError
from keyroll.reencrypt.connect import open_database
from keyroll.reencrypt.database import scrub
from keyroll.reencrypt.sqlite import quote_identifier, sqlite_file


def test_core_imports_no_cli_library() -> None:
    code = ("import sys, keyroll.reencrypt, keyroll.reencrypt.postgres, keyroll.reencrypt.sqlite; "
            "bad = [m for m in ('typer', 'rich', 'click') if m in sys.modules]; "
            "sys.exit(str(bad) if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("dsn", "path"), [
    ("sqlite:///app.db", Path("app.db")),
    ("sqlite:////srv/app/app.db", Path("/srv/app/app.db")),
    ("sqlite:data/app.db", Path("data/app.db")),
    ("sqlite+pysqlite:///app.db?timeout=5", Path("app.db")),
])
def test_sqlite_urls_follow_sqlalchemy(dsn: str, path: Path) -> None:
    assert sqlite_file(dsn) == path


def test_in_memory_and_missing_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="in-memory"):
        sqlite_file("sqlite://")
    with pytest.raises(UsageError, match="no SQLite database file"):
        open_database(f"sqlite:///{tmp_path}/absent.db", env_var="DATABASE_URL")
    assert not (tmp_path / "absent.db").exists()  # never creates an empty database


@pytest.mark.parametrize("dsn", ["mysql://u:planted-pw-123@h/db", "redis://h", "nonsense"])
def test_unknown_schemes_never_echo_the_dsn(dsn: str) -> None:
    with pytest.raises(UsageError) as info:
        open_database(dsn, env_var="DATABASE_URL")
    assert "planted-pw" not in str(info.value) and "DATABASE_URL" in str(info.value)


def test_scrub_cuts_passwords_and_extra_lines() -> None:
    text = ('connection to "postgresql://app:planted-secret-1@db/x" failed\n'
            "password=planted-secret-2 more\nsecond line")
    cleaned = scrub(text, ["planted-secret-3"])
    assert "planted-secret-1" not in cleaned and "second line" not in cleaned
    assert scrub("password='planted secret 2' x") == "password=[redacted] x"
    assert scrub("uses planted-secret-3 here", ["planted-secret-3"]) == "uses [redacted] here"


def test_quote_identifier() -> None:
    assert quote_identifier('we"ird') == '"we""ird"'
    with pytest.raises(UsageError):
        quote_identifier("nul\x00")
