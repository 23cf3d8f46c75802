"""SQLAlchemy column types encrypt at rest and decrypt on load."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, select, text

from keyroll.errors import InvalidToken
from keyroll.generate import generate
from keyroll.runtime.fields import FieldCipher
from keyroll.runtime.keysource import StaticKeySource
from keyroll.runtime.sqlalchemy import EncryptedBinary, EncryptedText


def test_round_trip_and_ciphertext_at_rest() -> None:
    cipher = FieldCipher(StaticKeySource.of(generate("key-32")))
    metadata = MetaData()
    users = Table(
        "users",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("email", EncryptedText(cipher, context=("users", "email"))),
        Column("blob", EncryptedBinary(cipher, context=("users", "blob"))),
    )
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            users.insert(),
            [
                {"id": 1, "email": "a@example.com", "blob": b"\x00\x01"},
                {"id": 2, "email": None, "blob": None},
            ],
        )
        rows = conn.execute(select(users).order_by(users.c.id)).all()
        assert [(r.email, r.blob) for r in rows] == [("a@example.com", b"\x00\x01"), (None, None)]
        stored = conn.execute(text("SELECT email FROM users WHERE id = 1")).scalar_one()
        assert stored.startswith("kr1.") and "example" not in stored
        # moving a ciphertext to another column fails: the column is in the AAD
        conn.execute(text("UPDATE users SET blob = NULL, email = :e WHERE id = 2"), {"e": stored})
        conn.execute(text("UPDATE users SET email = NULL WHERE id = 1"))
    with engine.begin() as conn:
        email = conn.execute(select(users.c.email).where(users.c.id == 2)).scalar_one()
        assert email == "a@example.com"  # same column: context (table, column) matches
    engine.dispose()


def test_wrong_column_context_is_rejected() -> None:
    cipher = FieldCipher(StaticKeySource.of(generate("key-32")))
    token = cipher.encrypt_text("x", context=("users", "email"))
    column_type = EncryptedText(cipher, context=("users", "phone"))
    with pytest.raises(InvalidToken):
        column_type.process_result_value(token, create_engine("sqlite://").dialect)


def test_missing_extra_names_the_install_command() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['sqlalchemy'] = None\n"
        "try:\n    import keyroll.runtime.sqlalchemy\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'keyroll[sqlalchemy]'" in done.stdout
