"""The local SQLite store against the shared contract, plus what only it promises."""

from __future__ import annotations

import base64
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyroll.errors import (
    MasterKeyError,
    StoreCorrupted,
    StoreForbidden,
    StoreUnavailable,
    UsageError,
)
from keyroll.generate import generate
from keyroll.model import SecretRef
from keyroll.stores import open_store
from keyroll.stores.masterkey import create_key_file, load_master_key
from keyroll.stores.sqlite import SQLiteStore
from tests.stores.contract import REF, Reopen, StoreContract


@pytest.fixture
def master_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db_path: Path, master_key: bytes) -> Iterator[SQLiteStore]:
    with SQLiteStore(db_path, master_key) as s:
        yield s


@pytest.fixture
def reopen(db_path: Path, master_key: bytes) -> Iterator[Reopen]:
    opened: list[SQLiteStore] = []

    def _reopen() -> SQLiteStore:
        opened.append(SQLiteStore(db_path, master_key))
        return opened[-1]

    yield _reopen
    for s in opened:
        s.close()


class TestSQLiteContract(StoreContract):
    pass


def _forms(raw: str) -> list[bytes]:
    data = raw.encode()
    return [data, base64.b64encode(data), data.hex().encode(), base64.urlsafe_b64encode(data)]


def test_values_never_appear_in_the_file(store: SQLiteStore, db_path: Path) -> None:
    planted = [generate(f) for f in ("base64-48", "key-32", "password-32", "hex-32")]
    for value in planted:
        store.put_version(REF, value)
    store.close()
    blob = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.is_file())
    for value in planted:
        for form in _forms(value.reveal()):
            assert form not in blob


def test_store_files_are_private(store: SQLiteStore, db_path: Path) -> None:
    store.put_version(REF, generate("hex-32"))
    for path in db_path.parent.iterdir():
        if path.name.startswith("store.db"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


@pytest.mark.parametrize("moved_to", [("staging", "jwt-access"), ("prod", "jwt-refresh")])
def test_row_moved_to_another_secret_fails(
    store: SQLiteStore, db_path: Path, moved_to: tuple[str, str]
) -> None:
    store.put_version(REF, generate("hex-32"))
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE versions SET environment=?, name=?", moved_to)
    with pytest.raises(StoreCorrupted, match="fails authentication"):
        store.read_value(SecretRef(*moved_to), 1)


def test_row_moved_to_another_version_fails(store: SQLiteStore, db_path: Path) -> None:
    store.put_version(REF, generate("hex-32"))
    store.put_version(REF, generate("hex-32"))
    with sqlite3.connect(db_path) as db:
        (nonce, blob) = db.execute("SELECT nonce, ciphertext FROM versions WHERE number=1").fetchone()
        db.execute("UPDATE versions SET nonce=?, ciphertext=? WHERE number=2", (nonce, blob))
    with pytest.raises(StoreCorrupted):
        store.read_value(REF, 2)


def _dump(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as db:
        return list(db.iterdump())


def test_wrong_master_key_is_refused_at_open_and_writes_nothing(
    db_path: Path, store: SQLiteStore
) -> None:
    store.put_version(REF, generate("hex-32"))
    before = _dump(db_path)
    with pytest.raises(MasterKeyError, match="does not open the local store"):
        SQLiteStore(db_path, secrets.token_bytes(32))
    assert _dump(db_path) == before


def test_wrong_master_key_is_refused_even_by_an_empty_store(db_path: Path, store: SQLiteStore) -> None:
    # issue 10 §5: before the key check, `status` passed and `generate` wrote unreadable rows
    with pytest.raises(MasterKeyError):
        SQLiteStore(db_path, secrets.token_bytes(32))


def test_key_check_is_written_lazily_for_an_older_store(
    db_path: Path, store: SQLiteStore, master_key: bytes
) -> None:
    store.put_version(REF, generate("hex-32"))
    store._db.execute("DELETE FROM keycheck")
    with pytest.raises(MasterKeyError):  # a sealed value already tells the wrong key apart
        SQLiteStore(db_path, secrets.token_bytes(32))
    assert store._db.execute("SELECT COUNT(*) FROM keycheck").fetchone() == (0,)
    with SQLiteStore(db_path, master_key) as right:
        assert right.read_value(REF, 1)
    assert store._db.execute("SELECT COUNT(*) FROM keycheck").fetchone() == (1,)
    with pytest.raises(MasterKeyError):
        SQLiteStore(db_path, secrets.token_bytes(32))


def test_edited_fingerprint_is_detected_on_read(db_path: Path, store: SQLiteStore) -> None:
    store.put_version(REF, generate("hex-32"))
    store._db.execute("UPDATE versions SET fingerprint = '0000000000000000'")
    with pytest.raises(StoreCorrupted, match="fingerprint"):
        store.read_value(REF, 1)


@pytest.mark.parametrize("empty", [False, True])
def test_missing_or_empty_store_is_refused_unless_created(
    db_path: Path, master_key: bytes, empty: bool
) -> None:
    if empty:
        db_path.touch()
    with pytest.raises(UsageError, match="keyroll init"):
        SQLiteStore(db_path, master_key, create=False)
    assert db_path.exists() == empty


def test_store_readable_by_others_is_noticed(db_path: Path, master_key: bytes) -> None:
    with SQLiteStore(db_path, master_key) as fresh:
        assert fresh.notices == []
    db_path.chmod(0o644)
    with SQLiteStore(db_path, master_key) as shared:
        assert any("chmod 600" in notice for notice in shared.notices)


def test_key_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / ".keyroll" / "master.key"
    create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = load_master_key(path, environ={})
    with pytest.raises(MasterKeyError, match="never overwrites"):
        create_key_file(path)
    assert load_master_key(path, environ={}) == first


def test_master_key_errors_say_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    with pytest.raises(MasterKeyError, match="keyroll init"):
        load_master_key(path, environ={})
    path.write_text(base64.b64encode(b"short").decode())
    os.chmod(path, 0o600)
    with pytest.raises(MasterKeyError, match="32 bytes"):
        load_master_key(path, environ={})
    os.chmod(path, 0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_key(path, environ={})
    with pytest.raises(MasterKeyError, match="KEYROLL_MASTER_KEY"):
        load_master_key(None, environ={"KEYROLL_MASTER_KEY": "not base64!"})


def test_environment_key_wins(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    env = {"KEYROLL_MASTER_KEY": base64.b64encode(key).decode()}
    with open_store("sqlite:store.db", base=tmp_path, environ=env) as s:
        s.put_version(REF, generate("hex-32"))
    with SQLiteStore(tmp_path / "store.db", key) as s:
        assert len(s.list_versions(REF)) == 1


def test_busy_store_is_unavailable_not_an_operational_error(db_path: Path, master_key: bytes) -> None:
    with SQLiteStore(db_path, master_key, busy_timeout=0.05) as busy:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreUnavailable, match="busy") as caught:
                busy.put_version(REF, generate("hex-32"))
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        assert busy.list_versions(REF) == []


def test_read_only_store_is_forbidden(db_path: Path, store: SQLiteStore) -> None:
    store._db.execute("PRAGMA query_only = ON")  # as root, file modes would not stop a write
    with pytest.raises(StoreForbidden, match="read-only"):
        store.put_meta("k", "v")
    store._db.execute("PRAGMA query_only = OFF")
    store.put_meta("k", "v")


def test_a_file_that_is_not_a_database_is_corrupted(db_path: Path, master_key: bytes) -> None:
    db_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreCorrupted, match="restore it from backup"):
        SQLiteStore(db_path, master_key)
