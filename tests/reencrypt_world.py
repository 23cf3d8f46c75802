"""A project for re-encryption tests: inventory, store, keys and an application table.

The same world runs on SQLite (a file) and on the real PostgreSQL server: `AppDatabase` hides
only the placeholder style and the connection. Plaintexts are planted (random, recognisable)
so every output can be grepped for them with `tests.leaks.assert_no_leak`.
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from keyroll.generate import generate
from keyroll.inventory import parse_inventory
from keyroll.model import Label, SecretRef, SecretValue, Version
from keyroll.runtime.fields import FieldCipher
from keyroll.runtime.keysource import Key, StaticKeySource
from keyroll.stores.sqlite import SQLiteStore
from tests.world import Clock
from tests.world import World as EngineWorld

DSN_ENV = "APP_DATABASE_URL"
EMAIL_CONTEXT = "users,email,{key}"
DOC_CONTEXT = "users.doc"

INVENTORY = """
project = "reencrypt-test"
[environments.dev]

[classes.field]
kind = "encryption-key"
env_vars = ["FIELD_ENCRYPTION_KEY"]
cadence_days = 180
tier = "high"
blast_radius = "pii"
owner = "security"
environments = ["dev"]
overlap = {{ min = "1h" }}
options = {{ legacy_fernet_env = ["SECRET_KEY", "OLD_SECRET_KEYS"] }}
columns = [
  {{ table = "{table}", column = "{email}", context = "users,email,{{key}}", database_env = "{env}" }},
  {{ table = "{table}", key = "id", column = "doc_enc", context = "users.doc", database_env = "{env}" }},
]
"""


def inventory_text(table: str = "users", email: str = "email_enc") -> str:
    """The inventory, with the first column's table and column names replaceable."""
    return INVENTORY.format(table=table, email=email, env=DSN_ENV)


def email_context(key: int) -> tuple[str, str, int]:
    """What the application passes for the email column of row ``key``."""
    return ("users", "email", key)


class AppDatabase:
    """The application's database: SQLite file or PostgreSQL, same table, same helpers."""

    def __init__(self, kind: str, dsn: str, path: Path | None = None) -> None:
        self.kind = kind
        self.dsn = dsn
        self.path = path

    @contextmanager
    def connect(self) -> Iterator[Any]:
        if self.kind == "sqlite":
            assert self.path is not None
            lite = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            try:
                yield lite
            finally:
                lite.close()
        else:
            import psycopg

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                yield conn

    def sql(self, text: str) -> str:
        return text if self.kind == "sqlite" else text.replace("?", "%s")

    def execute(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.connect() as conn:
            cur = conn.execute(self.sql(text), params)
            return list(cur.fetchall()) if cur.description else []

    def create_table(self, table: str = "users") -> None:
        blob = "BLOB" if self.kind == "sqlite" else "bytea"
        key = "INTEGER" if self.kind == "sqlite" else "bigint"
        self.execute(f'CREATE TABLE "{table}" (id {key} PRIMARY KEY, email_enc TEXT, doc_enc {blob})')

    def rows(self, table: str = "users") -> dict[int, tuple[Any, Any]]:
        return {int(k): (e, bytes(d) if d is not None else None) for k, e, d in
                self.execute(f'SELECT id, email_enc, doc_enc FROM "{table}" ORDER BY id')}  # noqa: S608  (test table name)


@dataclass
class World(EngineWorld):
    """`tests.world.World` with keyroll.toml's encryption-key class, its key in the store, and
    an application table (``db``) whose rows the tests plant and check."""

    store: SQLiteStore  # type: ignore[assignment]  # narrower than Store: tests reach into it
    db: AppDatabase = field(kw_only=True)
    ref: SecretRef = field(default_factory=lambda: SecretRef("dev", "field"), kw_only=True)
    fernet_keys: list[bytes] = field(default_factory=list, kw_only=True)
    plaintexts: dict[int, tuple[str | None, bytes | None]] = field(default_factory=dict,
                                                                   kw_only=True)

    @property
    def master_key(self) -> bytes:
        return self.key

    @property
    def env(self) -> dict[str, str]:
        """What the CLI and the gate need in their environment."""
        return {
            DSN_ENV: self.db.dsn,
            "KEYROLL_MASTER_KEY": base64.b64encode(self.master_key).decode(),
            "KEYROLL_CONFIG": str(self.path / "keyroll.toml"),
            "SECRET_KEY": self.fernet_keys[0].decode(),
            "OLD_SECRET_KEYS": ",".join(k.decode() for k in self.fernet_keys[1:]),
        }

    def version(self, label: Label) -> Version:
        return self.store.get_version(self.ref, self.store.get_labels(self.ref)[label])

    def cipher_of(self, *labels: Label) -> FieldCipher:
        """A cipher whose current key is the first label's version (others decrypt)."""
        keys = []
        for i, label in enumerate(labels):
            version = self.version(label)
            keys.append(Key(version.kid, self.store.read_value(self.ref, version.number),
                            Label.CURRENT if i == 0 else Label.PREVIOUS, version.number))
        return FieldCipher(StaticKeySource(keys))

    def fernet(self, i: int = 1) -> Fernet:
        return Fernet(self.fernet_keys[i])

    def rotate(self) -> Version:  # type: ignore[override]
        """Promote a fresh key: current → previous (what the engine does at promote), without
        the engine (`tests.world.World.rotate` drives a whole rotation)."""
        labels = self.store.get_labels(self.ref)
        version = self.store.put_version(self.ref, generate("key-32"))
        self.store.set_labels(
            self.ref, expected={Label.CURRENT: labels[Label.CURRENT],
                                Label.PREVIOUS: labels.get(Label.PREVIOUS)},
            new={Label.CURRENT: version.number, Label.PREVIOUS: labels[Label.CURRENT]},
        )
        return version

    def populate(self, n: int, *, start: int = 1, legacy_every: int = 10,
                 null_every: int = 7, cipher: FieldCipher | None = None) -> None:
        """Rows under ``cipher`` (default: the current key), some legacy Fernet, some NULL."""
        cipher = cipher or self.cipher_of(Label.CURRENT)
        rows = []
        for i in range(start, start + n):
            email = None if i % null_every == 0 else f"planted-email-{i}-{secrets.token_hex(6)}"
            doc = f"planted-doc-{i}-{secrets.token_hex(6)}".encode()
            self.plaintexts[i] = (email, doc)
            if i % legacy_every == 0:
                e = None if email is None else self.fernet(i % 2).encrypt(email.encode()).decode()
                d = self.fernet(0).encrypt(doc)
            else:
                e = None if email is None else cipher.encrypt_text(email, context=email_context(i))
                d = cipher.encrypt(doc, context=DOC_CONTEXT)
            rows.append((i, e, d))
        with self.db.connect() as conn:
            if self.db.kind == "sqlite":
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO users VALUES (?, ?, ?)", rows)
                conn.execute("COMMIT")
            else:
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO users VALUES (%s, %s, %s)", rows)

    def check_all_current(self) -> None:
        """Every row under the current kid and decrypting to its latest plaintext."""
        current = self.version(Label.CURRENT).kid
        cipher = self.cipher_of(Label.CURRENT)  # current key ONLY: nothing else may be needed
        rows = self.db.rows()
        assert set(rows) == set(self.plaintexts)
        for key, (email, doc) in rows.items():
            want_email, want_doc = self.plaintexts[key]
            if want_email is None:
                assert email is None, key
            else:
                assert cipher.kid_of(email) == current, key
                assert cipher.decrypt_text(email, context=email_context(key)) == want_email, key
            assert doc is not None
            assert cipher.kid_of(doc) == current, key
            assert cipher.decrypt(doc, context=DOC_CONTEXT) == want_doc, key

    def planted(self) -> list[str | bytes]:
        """Every planted plaintext and key, for leak checks."""
        out: list[str | bytes] = [k.decode() for k in self.fernet_keys]
        for number in range(1, 10):
            try:
                out.append(self.store.read_value(self.ref, number).reveal())
            except Exception:  # noqa: BLE001  (no such version)
                break
        for email, doc in self.plaintexts.values():
            out += [x for x in (email, doc) if x is not None]
        return out


def make_world(tmp_path: Path, db: AppDatabase, *, table: str = "users") -> World:
    """A project with version 1 of the key current and an empty ``users`` table."""
    text = inventory_text()
    (tmp_path / "keyroll.toml").write_text(text)
    master = secrets.token_bytes(32)
    store = SQLiteStore(tmp_path / ".keyroll" / "store.db", master)
    inventory = parse_inventory(text, tmp_path / "keyroll.toml")
    world = World(tmp_path, store, inventory, Clock(), master, db=db,
                  fernet_keys=[Fernet.generate_key(), Fernet.generate_key()],
                  move_clock_on_sleep=False)
    version = store.put_version(world.ref, generate("key-32"))
    store.set_labels(world.ref, expected={}, new={Label.CURRENT: version.number})
    db.create_table(table)
    return world


def garbage_value(world: World, key: int) -> tuple[str, bytes]:
    """A well-formed ciphertext under a key the store never held (no retained key opens it)."""
    stranger = FieldCipher(StaticKeySource.of(SecretValue(secrets.token_urlsafe(32))))
    return (stranger.encrypt_text("stranger", context=email_context(key)),
            stranger.encrypt(b"stranger", context=DOC_CONTEXT))
