"""Key escrow: sealing, opening, the two-person restore, and escrow at a rotation back's retire.

The application database is SQLite here (the PostgreSQL restore drill is in
`tests/integration/test_escrow_drill.py`).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

from keyroll import escrow
from keyroll.audit import Journal
from keyroll.cli.app import run
from keyroll.errors import InvalidToken, RotationRefused, UsageError
from keyroll.generate import generate
from keyroll.inventory import parse_inventory
from keyroll.model import Label, SecretRef
from keyroll.reencrypt import Reencryptor, cipher_for_class
from keyroll.rotation.engine import Engine
from keyroll.runtime.fields import FieldCipher
from keyroll.runtime.keysource import StoreKeySource
from keyroll.stores.sqlite import SQLiteStore
from tests.leaks import assert_no_leak
from tests.reencrypt_world import AppDatabase, World, inventory_text, make_world

NOW = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
REF = SecretRef("dev", "field")


def _pems(kind: str) -> tuple[bytes, bytes]:
    private: x25519.X25519PrivateKey | rsa.RSAPrivateKey
    private = (x25519.X25519PrivateKey.generate() if kind == "x25519"
               else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    secret = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    return public, secret


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "store.db", b"k" * 32)


@pytest.mark.parametrize("kind", ["x25519", "rsa"])
def test_seal_then_unseal_with_the_private_key(store: SQLiteStore, kind: str) -> None:
    public, private = _pems(kind)
    value = generate("key-32")
    version = store.put_version(REF, value)
    record = escrow.seal_version(store, REF, version, value, public_pem=public, where="test",
                                 days=30, now=NOW, rotation="r1")
    assert escrow.get_record(store, REF, version.number) == record
    assert escrow.unseal(record, private) == value
    # idempotent: sealing again keeps the first record
    again = escrow.seal_version(store, REF, version, value, public_pem=public, where="test",
                                days=30, now=NOW + timedelta(days=1), rotation="r1")
    assert again == record
    view = json.dumps(record.public_view())
    assert record.ciphertext not in view and record.kid_hex in view
    assert_no_leak([view, record.to_json()], [value.reveal()], where="escrow record")


def test_the_wrong_key_a_tampered_or_moved_record_do_not_open(store: SQLiteStore) -> None:
    public, _ = _pems("x25519")
    _, stranger = _pems("x25519")
    value = generate("key-32")
    version = store.put_version(REF, value)
    record = escrow.seal_version(store, REF, version, value, public_pem=public, where="test",
                                 days=30, now=NOW, rotation=None)
    with pytest.raises(UsageError, match="is not the escrow key of version"):
        escrow.unseal(record, stranger)
    public2, private = _pems("x25519")
    record = escrow.seal_version(store, REF, version, value, public_pem=public2, where="test",
                                 days=30, now=NOW, rotation=None)
    sealed = bytearray(base64.b64decode(record.ciphertext))
    sealed[3] ^= 1
    tampered = dataclasses.replace(record, ciphertext=base64.b64encode(bytes(sealed)).decode())
    with pytest.raises(UsageError, match="does not open"):
        escrow.unseal(tampered, private)
    moved = dataclasses.replace(record, version=record.version + 1)  # AAD binds the version
    with pytest.raises(UsageError, match="does not open"):
        escrow.unseal(moved, private)


def test_public_key_checks(store: SQLiteStore) -> None:
    _, private = _pems("x25519")
    with pytest.raises(UsageError, match="holds a private key"):
        escrow.check_public_key(private, where="escrow.pem")
    with pytest.raises(UsageError, match="not a PEM public key"):
        escrow.check_public_key(b"hello", where="escrow.pem")
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(UsageError, match="X25519 or RSA"):
        escrow.check_public_key(p256, where="escrow.pem")


def test_records_expire_and_are_purged(store: SQLiteStore) -> None:
    public, _ = _pems("x25519")
    value = generate("key-32")
    version = store.put_version(REF, value)
    escrow.seal_version(store, REF, version, value, public_pem=public, where="t", days=10,
                        now=NOW, rotation=None)
    assert escrow.purge_expired(store, NOW + timedelta(days=9)) == []
    assert [r.version for r in escrow.purge_expired(store, NOW + timedelta(days=10))] == [1]
    assert escrow.list_records(store) == []


def test_decrypt_only_versions_decrypt_and_never_encrypt(store: SQLiteStore) -> None:
    v1 = store.put_version(REF, generate("key-32"))
    v2 = store.put_version(REF, generate("key-32"))
    store.set_labels(REF, expected={}, new={Label.CURRENT: v2.number})
    source = StoreKeySource(store, REF, refresh_interval=0)
    old = FieldCipher(StoreKeySource(store, REF, refresh_interval=0))
    store.set_labels(REF, expected={Label.CURRENT: v2.number}, new={Label.CURRENT: v1.number})
    token = old.encrypt(b"row", context="t")  # under v1
    store.set_labels(REF, expected={Label.CURRENT: v1.number}, new={Label.CURRENT: v2.number})
    cipher = FieldCipher(source)
    assert cipher.current_kid == v2.kid
    with pytest.raises(InvalidToken):
        cipher.decrypt(token, context="t")
    store.set_decrypt_only_versions(REF, [v1.number])
    source.refresh()
    assert cipher.decrypt(token, context="t") == b"row"
    assert cipher.current_kid == v2.kid
    assert cipher.kid_of(cipher.encrypt(b"x")) == v2.kid


# --- the CLI and the engine ---------------------------------------------------------------


PROD = """
[environments.prod]
approvals = 2
production = true
"""


def _world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, prod: bool = False) -> World:
    project = tmp_path / "project"
    project.mkdir()
    path = tmp_path / "app.db"
    sqlite3.connect(path).close()
    world = make_world(project, AppDatabase("sqlite", f"sqlite:///{path}", path))
    public, private = _pems("x25519")
    (project / "escrow.pub").write_bytes(public)
    (tmp_path / "escrow.key").write_bytes(private)
    text = inventory_text() + '\n[escrow]\npublic_key = "escrow.pub"\ndays = 20\n'
    if prod:
        text = text.replace('environments = ["dev"]', 'environments = ["dev", "prod"]')
        text = text.replace("[environments.dev]\n", "[environments.dev]\n" + PROD)
    (project / "keyroll.toml").write_text(text)
    world.inventory = parse_inventory(text, project / "keyroll.toml")
    for var, value in world.env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("KEYROLL_NOW", raising=False)
    monkeypatch.setenv("KEYROLL_ACTOR", "alice")
    monkeypatch.chdir(project)
    return world


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _engine(world: World, clock: Clock) -> Engine:
    return Engine(world.store, world.inventory, journal=Journal(world.store, clock=clock),
                  clock=clock, workdir=world.path)


def _reencrypt(world: World, ref: SecretRef) -> None:
    cipher = cipher_for_class(world.store, ref, world.inventory.classes["field"])
    assert Reencryptor(cipher, store=world.store, ref=ref).run(
        world.inventory.classes["field"].columns).ok


def test_a_rotation_back_escrows_the_rolled_back_key(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    world = _world(tmp_path, monkeypatch)
    world.populate(30)
    clock = Clock()
    engine = _engine(world, clock)
    record = engine.run(engine.start("field", "dev").id)
    assert record.state == "overlap"
    new = world.version(Label.CURRENT)
    _reencrypt(world, world.ref)  # rows now under the new key: it encrypted data
    engine.rollback(record.id)
    _reencrypt(world, world.ref)  # back under the old key
    clock.now += timedelta(hours=2)
    done = engine.run(record.id)
    assert done.state == "rolled-back"
    assert world.store.get_version(world.ref, new.number).destroyed
    sealed = escrow.get_record(world.store, world.ref, new.number)
    assert sealed is not None and sealed.kid == new.kid
    assert sealed.expires_at == (NOW + timedelta(hours=2, days=20)).isoformat()
    world.check_all_current()


def test_restore_is_two_person_in_production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    world = _world(tmp_path, monkeypatch, prod=True)
    ref = SecretRef("prod", "field")
    first = world.store.put_version(ref, generate("key-32"))
    world.store.set_labels(ref, expected={}, new={Label.CURRENT: first.number})
    monkeypatch.setenv("APP_DATABASE_URL", world.db.dsn)
    prod_world = dataclasses.replace(world, ref=ref)
    prod_world.populate(20)
    clock = Clock()
    engine = _engine(world, clock)
    record = engine.start("field", "prod")
    monkeypatch.setenv("KEYROLL_ACTOR", "bob")
    engine = Engine(world.store, world.inventory, journal=Journal(world.store, clock=clock),
                    clock=clock, workdir=world.path)
    engine.approve(record.id)
    assert engine.run(record.id).state == "overlap"
    _reencrypt(world, ref)
    clock.now += timedelta(hours=2)
    assert engine.run(record.id).state == "done"
    key = str(tmp_path / "escrow.key")
    args = ["escrow", "restore", "field", "--env", "prod", "--version", str(first.number),
            "--private-key", key]

    monkeypatch.setenv("KEYROLL_ACTOR", "alice")
    assert run(args) == 75  # waiting for another person's approval (exitcodes.WAITING)
    assert "needs 2 people" in capsys.readouterr().err
    assert escrow.find_restored(world.store, ref, first.number) is None
    assert run(["escrow", "approve", "field", "--env", "prod", "--version",
                str(first.number)]) == 2
    assert "cannot approve it" in capsys.readouterr().err
    monkeypatch.setenv("KEYROLL_ACTOR", "carol")
    assert run(["escrow", "approve", "field", "--env", "prod", "--version",
                str(first.number)]) == 0
    monkeypatch.setenv("KEYROLL_ACTOR", "alice")
    # the private key piped in (`--private-key -`), as from a vault's or a token's tool
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(Path(key).read_bytes())))
    assert run([*args[:-1], "-"]) == 0
    copy = escrow.find_restored(world.store, ref, first.number)
    assert copy is not None and copy.kid == first.kid
    entry = next(json.loads(e.payload) for e in world.store.audit_entries()
                 if json.loads(e.payload)["action"] == "escrow.restore")
    assert entry["evidence"]["approved_by"] == ["carol"]
    assert entry["evidence"]["requested_by"] == "alice"
    with pytest.raises(RotationRefused):  # the approval was consumed
        escrow.approve_restore(world.store, ref, first.number, actor="dave",
                               now=datetime.now(UTC))
    out = capsys.readouterr()
    journal = "\n".join(e.payload for e in world.store.audit_entries())
    assert_no_leak([out.out, out.err, journal], prod_world.planted(), where="escrow CLI")
    source = StoreKeySource(world.store, ref, refresh_interval=0)
    assert copy.kid in {k.kid for k in source.snapshot().keys}
    assert source.snapshot().current.kid != copy.kid


def test_bad_restore_input_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    world = _world(tmp_path, monkeypatch)
    world.populate(10)
    clock = Clock()
    engine = _engine(world, clock)
    record = engine.run(engine.start("field", "dev").id)
    _reencrypt(world, world.ref)
    clock.now += timedelta(hours=2)
    assert engine.run(record.id).state == "done"
    capsys.readouterr()
    _, stranger = _pems("x25519")
    (tmp_path / "stranger.pem").write_bytes(stranger)
    (tmp_path / "junk.pem").write_text("not a key\n")
    base = ["escrow", "restore", "field", "--env", "dev", "--version", "1", "--private-key"]
    for args, message in (
        ([*base, str(tmp_path / "stranger.pem")], "is not the escrow key of version 1"),
        ([*base, str(tmp_path / "junk.pem")], "is not a PEM private key"),
        ([*base, str(tmp_path / "absent.pem")], "cannot read it"),
        (["escrow", "restore", "nope", "--env", "dev", "--version", "1"], "no class 'nope'"),
        (["escrow", "restore", "field", "--env", "dev", "--version", "1"],
         "--private-key FILE is required"),
    ):
        assert run(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert escrow.find_restored(world.store, world.ref, 1) is None
    assert run(["escrow", "list", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc["version"] == 1 and doc["restored_as"] is None and "ciphertext" not in doc
