"""``keyroll audit verify`` (incremental by default, ``--full``) and ``keyroll audit migrate``
on the local store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.unit.cli.conftest import Keyroll


def _verify(keyroll: Keyroll, *args: str) -> dict[str, object]:
    done = keyroll("audit", "verify", "--json", *args)
    doc: dict[str, object] = json.loads(done.out)
    doc["exit"] = done.code
    return doc


def test_verify_is_incremental_after_the_first_and_full_on_demand(
    initialised: Keyroll, project: Path
) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    first = _verify(initialised)
    assert first["ok"] is True and first["mode"] == "full"  # no checkpoint yet
    assert initialised("generate", "jwt-refresh", "--env", "dev").code == 0
    second = _verify(initialised)
    assert second["ok"] is True and second["mode"] == "incremental"
    assert second["since"] == first["count"] and second["walked"] >= 1
    text = initialised("audit", "verify")
    assert text.code == 0 and "after the verified head" in text.out
    assert "last full check" in text.out and "passed" in text.out

    with sqlite3.connect(project / ".keyroll" / "store.db") as db:
        db.execute("UPDATE audit SET payload = replace(payload, 'alice', 'mallory') WHERE seq=1")
    assert _verify(initialised)["ok"] is True  # before the checkpoint: not read again
    full = initialised("audit", "verify", "--full")
    assert full.code == 1 and "record 1 was edited" in full.err
    after = _verify(initialised)
    assert after["exit"] == 1 and after["ok"] is False
    last = after["last_full_check"]
    assert isinstance(last, dict) and last["ok"] is False and last["by"] == "alice"


def test_migrate_on_the_local_store_has_nothing_to_move(initialised: Keyroll) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    done = initialised("audit", "migrate")
    assert done.code == 0, done.err
    assert "nothing to move" in done.out and "full check passed" in done.out
    assert _verify(initialised)["layout"] == "current"
