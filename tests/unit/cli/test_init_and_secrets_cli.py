"""`keyroll init` and the secrets commands (import, generate, export, get) end to end, with
status exit codes, bad input and migrate-store, in-process, planted secrets grepped everywhere."""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.leaks import assert_no_leak
from tests.unit.cli.conftest import Keyroll


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_inventory_store_key_and_gitignore(initialised: Keyroll, project: Path) -> None:
    assert (project / "keyroll.toml").is_file()
    assert _mode(project / ".keyroll" / "master.key") == 0o600
    assert _mode(project / ".keyroll" / "store.db") == 0o600
    ignored = (project / ".gitignore").read_text().splitlines()
    assert ".keyroll/" in ignored
    again = initialised("init")
    assert again.code == 2
    assert "exists already" in again.err
    # a second init changed nothing in .gitignore
    assert (project / ".gitignore").read_text().splitlines() == ignored


def test_whole_flow_never_leaks_a_value(
    initialised: Keyroll, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jwt = secrets.token_urlsafe(48)
    field_key = base64.b64encode(secrets.token_bytes(32)).decode()
    db_password = secrets.token_hex(16)
    dotenv = project / "old.env"
    dotenv.write_text(
        f"JWT_SECRET={jwt}\nexport FIELD_ENCRYPTION_KEY='{field_key}'\n# comment\nNOT_OURS=1\n"
    )
    imported = initialised("import", "--env", "dev", "--file", str(dotenv))
    assert imported.code == 0, imported.err
    assert "JWT_SECRET → dev/jwt-access: imported as version 1" in imported.out
    assert "skipped: NOT_OURS" in imported.err
    again = initialised("import", "--env", "dev", "--file", str(dotenv))
    assert "unchanged" in again.out

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"postgresql://goodgo_app_a:{db_password}@db/goodgo\n"))
    staged = initialised("import", "database", "--env", "staging")
    assert staged.code == 0, staged.err

    assert initialised("generate", "jwt-refresh", "--env", "dev").code == 0
    status = initialised("status", "--env", "dev", "--json")
    rows = {r["class"]: r for r in json.loads(status.out)["secrets"]}
    assert rows["jwt-access"]["state"] == "ok"
    assert rows["jwt-access"]["version"] == 1
    assert rows["minio"]["state"] == "missing"
    assert initialised("status").code == 0

    exported = initialised("export", "--env", "dev", "-o", "app.env")
    assert exported.code == 0
    env_file = project / "app.env"
    assert _mode(env_file) == 0o600
    content = env_file.read_text()
    assert f"JWT_SECRET={jwt}" in content
    assert f"FIELD_ENCRYPTION_KEY={field_key}" in content
    assert initialised("export", "--env", "staging", "-o", "stg.env").code == 0
    # the stored value of a postgres-role is the password; the role is kept as metadata
    assert "DATABASE_URL=" in (project / "stg.env").read_text()

    meta = initialised("get", "jwt-access", "--env", "dev", "--json")
    assert json.loads(meta.out)["labels"] == ["current"]

    log = initialised("audit", "log", "--json", "-n", "0")
    actions = [r["action"] for r in json.loads(log.out)]
    assert actions[:3] == ["store.init", "secret.import", "secret.import"]
    assert initialised("audit", "verify").code == 0

    planted = [jwt, field_key, db_password]
    transcript = initialised.transcript  # type: ignore[attr-defined]
    assert_no_leak(transcript, planted, where="CLI output")
    journal_dump = initialised("audit", "log", "--json", "-n", "0").out
    assert_no_leak([journal_dump], planted, where="audit journal")
    store_files = [p.read_bytes() for p in (project / ".keyroll").iterdir()]
    assert_no_leak(store_files, planted, where="store files")

    revealed = initialised("get", "jwt-access", "--env", "dev", "--reveal")
    assert revealed.out == jwt + "\n"
    assert "recorded in the audit journal" in revealed.err
    last = json.loads(initialised("audit", "log", "--json", "-n", "1").out)[0]
    assert last["action"] == "secret.reveal"


def test_fail_on_exit_codes(initialised: Keyroll, monkeypatch: pytest.MonkeyPatch) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    monkeypatch.setenv("KEYROLL_NOW", start.isoformat())
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    assert initialised("status", "--env", "dev", "--fail-on", "due").code == 0
    monkeypatch.setenv("KEYROLL_NOW", (start + timedelta(days=85)).isoformat())
    assert initialised("status", "--env", "dev", "--fail-on", "overdue").code == 0
    assert initialised("status", "--env", "dev", "--fail-on", "due").code == 1
    rows = json.loads(initialised("status", "--env", "dev", "--json").out)["secrets"]
    assert {r["class"]: r["state"] for r in rows}["jwt-access"] == "due"
    monkeypatch.setenv("KEYROLL_NOW", (start + timedelta(days=91)).isoformat())
    assert initialised("status", "--env", "dev", "--fail-on", "overdue").code == 3


@pytest.mark.parametrize(
    "args,expected",
    [
        (("generate", "nope", "--env", "dev"), "no class 'nope'"),
        (("generate", "jwt-access", "--env", "qa"), "no environment 'qa'"),
        (("generate", "database", "--env", "dev"), "does not exist in 'dev'"),
        (("generate", "vnpay-hash-secret", "--env", "prod"), "comes from the provider"),
        (("status", "--fail-on", "sometimes"), "Invalid value"),
        (("export", "--env", "dev", "-o", "x", "--format", "xml"), "unknown format"),
        (("get", "jwt-access", "--env", "dev"), "has no current version"),
        (("import", "--env", "dev"), "nothing to import"),
        (("frobnicate",), "No such command"),
    ],
)
def test_bad_input_is_one_line_exit_2(initialised: Keyroll, args: tuple[str, ...], expected: str) -> None:
    before = initialised("audit", "log", "--json", "-n", "0").out
    result = initialised(*args)
    assert result.code == 2, result
    assert expected in result.err
    assert result.err.strip().count("\n") == 0
    assert "Traceback" not in result.err
    assert initialised("audit", "log", "--json", "-n", "0").out == before


def test_second_generate_refuses(initialised: Keyroll) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    second = initialised("generate", "jwt-access", "--env", "dev")
    assert second.code == 2
    assert "keyroll rotate" in second.err


BROKEN = {
    "missing field": ('owner = "Security / Auth"\n', "", "required field is missing"),
    "wrong type": ("cadence_days = 90", 'cadence_days = "soon"', "cadence_days"),
    "unknown kind": ('kind = "jwt-signing"', 'kind = "jwt"', "Input should be"),
    "duplicate class": ("[classes.jwt-refresh]", "[classes.jwt-access]", "Cannot declare"),
    "bad cadence": ("cadence_days = 90", "cadence_days = -1", "greater than or equal to 1"),
    "bad dsn template": ("postgresql://{role}:", "postgresql://{user}:",
                         "unknown placeholder {user}"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_bad_inventory_via_the_real_command(initialised: Keyroll, project: Path, case: str) -> None:
    old, new, expected = BROKEN[case]
    path = project / "keyroll.toml"
    path.write_text(path.read_text().replace(old, new, 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYROLL_")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("keyroll")), "inventory", "check"],
        cwd=project, capture_output=True, text=True, env=env, check=False, timeout=60,
    )
    assert done.returncode == 2
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1


def test_migrate_store_between_local_stores(initialised: Keyroll, project: Path) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    assert initialised("generate", "payment-webhook", "--env", "dev").code == 0
    (project / "copy").mkdir()
    key = (project / ".keyroll" / "master.key").read_bytes()
    (project / "copy" / "master.key").write_bytes(key)
    os.chmod(project / "copy" / "master.key", 0o600)
    before = initialised("audit", "log", "--json", "-n", "0").out
    status = json.loads(initialised("status", "--env", "dev", "--json").out)["secrets"]

    moved = initialised("migrate-store", "--from", "sqlite:.keyroll/store.db",
                        "--to", "sqlite:copy/store.db", "--json")
    assert moved.code == 0, moved.err
    summary = json.loads(moved.out)
    assert summary["secrets"] == 2 and summary["verified_values"] == 2
    assert initialised("audit", "log", "--json", "-n", "0").out == before  # source unchanged
    copied = json.loads(initialised("--store", "sqlite:copy/store.db", "status", "--env", "dev",
                                    "--json").out)["secrets"]
    assert [r["fingerprint"] for r in copied] == [r["fingerprint"] for r in status]
    assert initialised("--store", "sqlite:copy/store.db", "audit", "verify").code == 0
    again = initialised("migrate-store", "--from", "sqlite:.keyroll/store.db",
                        "--to", "sqlite:copy/store.db")
    assert again.code == 2 and "nothing was copied" in again.err


def test_unexpected_error_is_one_line_without_its_text(
    initialised: Keyroll, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyroll.cli import status_cmd

    planted = secrets.token_urlsafe(32)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"connection string postgresql://app:{planted}@db failed")

    monkeypatch.setattr(status_cmd, "statuses", broken)
    result = initialised("status")
    assert result.code == 1
    assert result.err.startswith("error: unexpected RuntimeError")
    assert "Traceback" not in result.err and result.err.count("\n") == 1
    assert_no_leak([result.out, result.err], [planted], where="CLI error")


def test_import_checks_every_line_before_writing_any(initialised: Keyroll, project: Path) -> None:
    good = secrets.token_urlsafe(48)
    dotenv = project / "mixed.env"
    dotenv.write_text(f"JWT_SECRET={good}\nJWT_REFRESH_SECRET=\n")
    result = initialised("import", "--env", "dev", "--file", str(dotenv))
    assert result.code == 2 and "the value is empty" in result.err
    assert json.loads(initialised("audit", "log", "--json", "-n", "0").out)[-1]["action"] == "store.init"
    for bad, message in [(project / "nope.env", "does not exist"), (project, "is a directory")]:
        failed = initialised("import", "--env", "dev", "--file", str(bad))
        assert failed.code == 2 and message in failed.err
    binary = project / "latin1.env"
    binary.write_bytes(b"JWT_SECRET=caf\xe9\n")
    failed = initialised("import", "--env", "dev", "--file", str(binary))
    assert failed.code == 2 and "not UTF-8" in failed.err
