"""Restore drill on real PostgreSQL 15: a pre-rotation pg_dump read back after retire.

keyroll's own backup (`keyroll.targets.postgres.backup`, what the postgres-role strategy's
``backup_dir`` runs) is taken while the rows are under key 1; the key rotates, every row is
re-encrypted and key 1 is retired (destroyed). The dump is restored into a fresh database:

- with ``[escrow]``: `keyroll reencrypt --dry-run` names the key the rows need (kid, version,
  fingerprint, escrowed), `keyroll escrow restore` brings it back decrypt-only with the escrow
  private key (which the keyroll project never holds), and every row reads;
- without: the same commands show the loss and name the key (kid, fingerprint) that is gone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from psycopg import sql

from keyroll import escrow
from keyroll.audit import Journal
from keyroll.inventory import parse_inventory
from keyroll.model import Label
from keyroll.reencrypt import Reencryptor, cipher_for_class
from keyroll.rotation.engine import Engine
from keyroll.targets.postgres import backup
from tests.integration.test_reencrypt import CLI
from tests.leaks import assert_no_leak
from tests.reencrypt_world import (
    DOC_CONTEXT,
    DSN_ENV,
    AppDatabase,
    World,
    email_context,
    inventory_text,
    make_world,
)
from tests.servers import PostgresServer

pytestmark = pytest.mark.integration

ESCROW = '\n[escrow]\npublic_key = "escrow-public.pem"\n'


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(capsys)


def _private_pem(project: Path, where: Path) -> bytes:
    """An X25519 escrow key pair: the public half in the project, the private one outside."""
    private = x25519.X25519PrivateKey.generate()
    (project / "escrow-public.pem").write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    where.write_bytes(pem)
    return pem


def _world(tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch, *,
           escrowed: bool) -> World:
    project = tmp_path / "project"
    project.mkdir()
    world = make_world(project, AppDatabase("postgres", dsn))
    text = inventory_text().replace('owner = "security"',
                                    'owner = "security"\nbackup_retention_days = 35')
    if escrowed:
        text += ESCROW
    (project / "keyroll.toml").write_text(text)
    world.inventory = parse_inventory(text, project / "keyroll.toml")
    for var in ("KEYROLL_STORE", "KEYROLL_NOW"):
        monkeypatch.delenv(var, raising=False)
    for var, value in world.env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("KEYROLL_ACTOR", "alice")
    monkeypatch.chdir(project)
    return world


@pytest.fixture
def restored_db(postgres_server: PostgresServer) -> Iterator[str]:
    """An empty database to restore the dump into (dropped after)."""
    name = f"kr_restored_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_server.superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(postgres_server.superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def _pg_restore(server: PostgresServer, dump: Path, dbname: str) -> None:
    env = {**os.environ, "PGPASSWORD": server.password}
    conninfo = server.base_dsn(dbname) + f" user={server.superuser}"
    done = subprocess.run([str(server.bin_dir / "pg_restore"), "--no-owner", "--dbname",
                           conninfo, str(dump)], env=env, capture_output=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-400:]


def _rotate_reencrypt_retire(world: World) -> int:
    """Rotate key 1 → 2, re-encrypt every row, retire (destroy) key 1; return its kid."""
    clock = Clock()
    engine = Engine(world.store, world.inventory, journal=Journal(world.store, clock=clock),
                    clock=clock, workdir=world.path)
    record = engine.run(engine.start("field", "dev").id)
    assert record.state == "overlap"
    old = world.version(Label.PREVIOUS)
    cipher = cipher_for_class(world.store, world.ref, world.inventory.classes["field"])
    assert Reencryptor(cipher, store=world.store, ref=world.ref).run(
        world.inventory.classes["field"].columns).ok
    clock.now += timedelta(hours=2)
    done = engine.run(record.id)
    assert done.state == "done"
    assert world.store.get_version(world.ref, old.number).destroyed
    return old.kid


def _read_every_row(world: World, db: AppDatabase) -> None:
    """Every row of ``db`` decrypts, through the class's key source, to what was written."""
    cipher = cipher_for_class(world.store, world.ref, world.inventory.classes["field"])
    rows = db.rows()
    assert set(rows) == set(world.plaintexts)
    for key, (email, doc) in rows.items():
        want_email, want_doc = world.plaintexts[key]
        assert doc is not None
        assert cipher.decrypt(doc, context=DOC_CONTEXT) == want_doc, key
        if want_email is None:
            assert email is None
        else:
            assert cipher.decrypt_text(email, context=email_context(key)) == want_email, key


def _outputs(world: World, cli: CLI, server: PostgresServer) -> list[str | bytes]:
    journal = "\n".join(e.payload for e in world.store.audit_entries())
    meta = "\n".join(world.store.get_meta(k) or "" for k in world.store.list_meta())
    return [*cli.transcript, journal, meta, server.log_text()]


def test_restore_drill_with_escrow_reads_every_row(
    tmp_path: Path, fresh_db: Any, restored_db: str, postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch, cli: CLI,
) -> None:
    world = _world(tmp_path, fresh_db.dsn, monkeypatch, escrowed=True)
    private_key = tmp_path / "escrow-private.pem"
    private_pem = _private_pem(world.path, private_key)
    world.populate(150)
    dump = backup(fresh_db.dsn, tmp_path / "backups" / "pre-rotation.dump",
                  pg_dump=str(postgres_server.bin_dir / "pg_dump"))
    old_kid = _rotate_reencrypt_retire(world)
    old = next(v for v in world.store.list_versions(world.ref) if v.kid == old_kid)

    record = escrow.get_record(world.store, world.ref, old.number)
    assert record is not None
    assert (record.kid, record.fingerprint) == (old_kid, old.fingerprint)
    # default retention: the longest backup_retention_days in the inventory (35)
    assert (datetime.fromisoformat(record.expires_at)
            - datetime.fromisoformat(record.sealed_at)) == timedelta(days=35)
    retire = next(e for e in world.store.audit_entries()
                  if json.loads(e.payload)["action"] == "rotation.retire")
    evidence = json.loads(retire.payload)["evidence"]["escrow"]
    assert evidence["sealed"] is True and evidence["kid"] == record.kid_hex
    assert "ciphertext" not in retire.payload

    _pg_restore(postgres_server, dump.path, restored_db)
    restored = AppDatabase("postgres", postgres_server.dsn(restored_db))
    monkeypatch.setenv(DSN_ENV, restored.dsn)

    code, _, stderr = cli("reencrypt", "field", "--env", "dev", "--dry-run")
    assert code == 0
    assert f"kid {record.kid_hex}" in stderr and old.fingerprint in stderr
    assert f"keyroll escrow restore field --env dev --version {old.number}" in stderr

    code, stdout, _ = cli("escrow", "list", "--json")
    assert code == 0
    listed = json.loads(stdout)
    assert [(d["version"], d["kid"], d["restored_as"]) for d in listed] == [
        (old.number, record.kid_hex, None)]

    code, stdout, stderr = cli("escrow", "restore", "field", "--env", "dev", "--version",
                               str(old.number), "--private-key", str(private_key))
    assert code == 0, stderr
    copy = escrow.find_restored(world.store, world.ref, old.number)
    assert copy is not None and copy.kid == old_kid
    assert world.store.decrypt_only_versions(world.ref) == [copy.number]
    assert copy.number not in world.store.get_labels(world.ref).values()  # never primary
    # a second restore reuses the copy
    assert cli("escrow", "restore", "field", "--env", "dev", "--version", str(old.number),
               "--private-key", str(private_key))[0] == 0
    assert escrow.find_restored(world.store, world.ref, old.number) == copy

    _read_every_row(world, restored)
    # the restored rows are then rewritten under the current key, like any stale rows
    code, _, stderr = cli("reencrypt", "field", "--env", "dev")
    assert code == 0, stderr
    dataclasses.replace(world, db=restored).check_all_current()
    actions = [json.loads(e.payload)["action"] for e in world.store.audit_entries()]
    assert "escrow.restore" in actions
    assert_no_leak(_outputs(world, cli, postgres_server),
                   [*world.planted(), private_pem.decode()], where="escrow drill outputs")


def test_restore_drill_without_escrow_shows_the_loss_and_names_the_key(
    tmp_path: Path, fresh_db: Any, restored_db: str, postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch, cli: CLI,
) -> None:
    world = _world(tmp_path, fresh_db.dsn, monkeypatch, escrowed=False)
    world.populate(60)
    dump = backup(fresh_db.dsn, tmp_path / "backups" / "pre-rotation.dump",
                  pg_dump=str(postgres_server.bin_dir / "pg_dump"))
    old_kid = _rotate_reencrypt_retire(world)
    old = next(v for v in world.store.list_versions(world.ref) if v.kid == old_kid)
    retire = next(json.loads(e.payload) for e in world.store.audit_entries()
                  if json.loads(e.payload)["action"] == "rotation.retire")
    assert retire["evidence"]["escrow"] == {"sealed": False,
                                            "reason": "no [escrow] in keyroll.toml"}

    _pg_restore(postgres_server, dump.path, restored_db)
    monkeypatch.setenv(DSN_ENV, postgres_server.dsn(restored_db))
    code, stdout, stderr = cli("reencrypt", "field", "--env", "dev", "--json")
    assert code == 1
    summary = json.loads(stdout)
    missing = summary["columns"][1]["missing_keys"]  # users.doc_enc: every row has a doc
    assert missing == [{"kid": f"{old_kid:08x}", "rows": 54, "version": old.number,
                        "fingerprint": old.fingerprint, "destroyed": True,
                        "escrowed_until": None}]
    assert f"kid {old_kid:08x}" in stderr and old.fingerprint in stderr
    assert "destroyed without escrow; these rows cannot be decrypted" in stderr
    assert summary["columns"][1]["failed"] == 54  # every non-legacy row is lost
    code, _, stderr = cli("escrow", "restore", "field", "--env", "dev", "--version",
                          str(old.number), "--private-key", str(tmp_path / "none.pem"))
    assert code != 0 and "no escrow record" in stderr
    assert_no_leak(_outputs(world, cli, postgres_server), world.planted(),
                   where="drill outputs")
