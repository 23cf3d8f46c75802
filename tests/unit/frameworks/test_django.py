"""keyroll.django in a real Django project (SQLite) through a full rotation."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.django_site import DjangoSite
from tests.leaks import assert_no_leak
from tests.unit.frameworks.conftest import World, full_rotation

BODY = "db-password-of-datasource-7"


def run_django_rotation(world: World, database: dict[str, Any], folder: Path) -> None:
    """Shared by the SQLite test here and the PostgreSQL one in tests/integration."""
    session_ref = world.seed("jwt-access")
    field_ref = world.seed("field")
    store_path = world.store.path
    with DjangoSite(folder, store=store_path, master_key=world.key, database=database) as site:
        pk = site("setup", body=BODY)["note"]
        assert site("login")["ok"] is True
        assert site("whoami") == {"user": "alice", "current_signs": True, "fallbacks": 0}
        assert site("check")["code"] == 0

        def overlap() -> None:
            seen = site("whoami")  # the same running app: keys refreshed by the middleware
            assert seen == {"user": "alice", "current_signs": True, "fallbacks": 1}

        full_rotation(world, "jwt-access", overlap)
        assert site("whoami") == {"user": "alice", "current_signs": True, "fallbacks": 0}

        # the encrypted field: written under v1, read during the overlap, re-encrypted
        old_kid = world.store.list_versions(field_ref)[0].kid_hex
        engine = world.engine()
        record = engine.run(engine.start("field", "dev").id)
        assert record.state == "overlap"
        assert site("note", pk=pk, body=BODY)["same"] is True
        done = site("keyroll_reencrypt", args=["--json"])
        assert done["code"] == 0, done
        report = json.loads(done["out"])
        assert report["rewritten"] == 1 and report["remaining"] == 0
        new_kid = world.store.list_versions(field_ref)[1].kid_hex
        assert report["current_kid"] == new_kid != old_kid
        assert site("keyroll_reencrypt")["out"].splitlines()[-1] == f"current kid {new_kid}: done"
        stored = site("note", pk=pk, body=BODY)
        assert stored["same"] is True and BODY not in stored["stored"]
        (world.path / "remaining.txt").write_text("0\n")
        world.clock.tick(timedelta(days=2))
        assert engine.run(record.id).state == "done"
        assert site("note", pk=pk, body=BODY)["same"] is True  # the old key is gone
    values = [world.store.read_value(r, n).reveal() for r in (session_ref, field_ref)
              for n, v in ((v.number, v) for v in world.store.list_versions(r)) if not v.destroyed]
    assert_no_leak(site.transcript, values, where="Django child")


def test_django_on_sqlite_keeps_a_user_signed_in(world: World, tmp_path: Path) -> None:
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "app.sqlite3")}
    run_django_rotation(world, database, tmp_path / "site")


def test_manage_py_check_reports_placeholders(world: World, tmp_path: Path,
                                              monkeypatch: Any) -> None:
    world.seed("jwt-access")
    world.seed("field")
    monkeypatch.setenv("PAYMENT_SECRET", "changeme")
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "app.sqlite3")}
    with DjangoSite(tmp_path / "site", store=world.store.path, master_key=world.key,
                    database=database, required=["PAYMENT_SECRET", "UNSET_SECRET"]) as site:
        checked = site("check")
    assert checked["code"] != 0
    text = checked["err"]
    assert "keyroll.E003" in text and "PAYMENT_SECRET holds a placeholder" in text
    assert "UNSET_SECRET is not set" in text
    assert "changeme" not in text.replace("PAYMENT_SECRET holds a placeholder", "")
