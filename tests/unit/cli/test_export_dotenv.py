"""Issue 11 §5: `keyroll export --format dotenv -o` into an existing .env keeps its other lines."""

from __future__ import annotations

import stat
from pathlib import Path

from keyroll import dotenv
from tests.unit.cli.conftest import Keyroll

APP_LINES = ["# the app's own settings", "DOMAIN=localhost", "", 'PROJECT_NAME="Full Stack"',
             "export POSTGRES_SERVER=db", "JWT_SECRET=to-be-replaced-00000000000000000000000",
             "SENTRY_DSN=", "# trailing comment"]


def test_export_into_existing_env_updates_only_keyrolls_variables(
    initialised: Keyroll, project: Path
) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    target = project / "app.env"
    target.write_text("\n".join(APP_LINES) + "\n")
    result = initialised("export", "--env", "dev", "-o", str(target))
    assert result.code == 0, result.err
    lines = target.read_text().splitlines()
    assert [line for line in lines if not line.startswith("JWT_SECRET")] == [
        line for line in APP_LINES if not line.startswith("JWT_SECRET")]
    assert lines[5].startswith("JWT_SECRET=") and lines[5] != APP_LINES[5]
    assert "JWT_SECRET_KID" in dotenv.parse(target.read_text())
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_export_refuses_a_malformed_env_and_writes_nothing(
    initialised: Keyroll, project: Path
) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    target = project / "app.env"
    target.write_text("DOMAIN=localhost\nthis is not a line\n")
    result = initialised("export", "--env", "dev", "-o", str(target))
    assert result.code == 2
    assert "line 2" in result.err and "nothing was written" in result.err
    assert target.read_text() == "DOMAIN=localhost\nthis is not a line\n"


def test_k8s_export_carries_the_namespace(initialised: Keyroll, project: Path) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    assert initialised("export", "--env", "dev", "-o", "s.yaml", "--format", "k8s",
                       "--namespace", "goodgo-dev").code == 0
    assert "  name: app-secrets\n  namespace: goodgo-dev\n" in (project / "s.yaml").read_text()
    bad = initialised("export", "--env", "dev", "-o", "t.yaml", "--format", "k8s",
                      "--namespace", "x\nkind: Pod")
    assert bad.code == 2 and not (project / "t.yaml").exists()
