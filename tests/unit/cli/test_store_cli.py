"""Issue 10 §5: the CLI refuses a wrong master key and a vanished store, and warns on its mode."""

from __future__ import annotations

import base64
import secrets
import sqlite3
from pathlib import Path

import pytest

from .conftest import Keyroll


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


def test_wrong_master_key_is_one_line_exit_2_and_writes_nothing(
    initialised: Keyroll, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = project / ".keyroll" / "store.db"
    before = _dump(db)
    monkeypatch.setenv("KEYROLL_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    for argv in (("status",), ("generate", "jwt-access", "--env", "dev"), ("audit", "verify")):
        result = initialised(*argv)
        assert result.code == 2, (argv, result)
        assert result.err.count("\n") == 1
        assert "KEYROLL_MASTER_KEY does not open the local store" in result.err
    assert _dump(db) == before
    monkeypatch.delenv("KEYROLL_MASTER_KEY")
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0


def test_wrong_key_file_is_named(initialised: Keyroll, project: Path) -> None:
    key = project / ".keyroll" / "master.key"
    key.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    result = initialised("status")
    assert result.code == 2
    assert f"the master key file {key} does not open" in result.err


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_vanished_store_is_refused_until_init(initialised: Keyroll, project: Path, how: str) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    db = project / ".keyroll" / "store.db"
    for path in db.parent.glob("store.db*"):
        path.unlink()
    if how == "truncated":
        db.touch(mode=0o600)
    for argv in (("audit", "verify"), ("status",), ("generate", "jwt-access", "--env", "dev")):
        result = initialised(*argv)
        assert result.code == 2, (argv, result)
        assert "keyroll init" in result.err and "journal ok" not in result.out
    assert db.exists() == (how == "truncated")
    if how == "truncated":
        assert db.stat().st_size == 0
    recreated = initialised("init")
    assert recreated.code == 0, recreated.err
    assert "kept" in recreated.out
    assert initialised("audit", "verify").code == 0


def test_store_readable_by_others_warns(initialised: Keyroll, project: Path) -> None:
    (project / ".keyroll" / "store.db").chmod(0o644)
    result = initialised("status")
    assert result.code == 0
    assert "others can read" in result.err


def test_init_creates_the_store_the_commands_use(
    keyroll: Keyroll, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYROLL_STORE", "sqlite:elsewhere/store.db")
    assert keyroll("init").code == 0
    assert (project / "elsewhere" / "store.db").stat().st_size > 0
    assert not (project / ".keyroll" / "store.db").exists()
    assert keyroll("audit", "verify").code == 0
