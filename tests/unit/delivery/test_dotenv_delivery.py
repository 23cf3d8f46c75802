"""Issue 11 §5: `write_dotenv` and `export -o` into an existing .env keep the app's other lines;
the Compose recipe in docs/compose.md is a real Compose file (parsed, not run)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from keyroll import dotenv
from keyroll.render import collect, owned_vars
from tests.unit.conftest import World

yaml = pytest.importorskip("yaml")

APP_LINES = ["# the app's own settings", "DOMAIN=localhost", "", 'PROJECT_NAME="Full Stack"',
             "export POSTGRES_SERVER=db", "JWT_SECRET=to-be-replaced-00000000000000000000000",
             "SENTRY_DSN=", "# trailing comment"]


def test_rotation_updates_only_keyrolls_lines(world: World) -> None:
    ref = world.seed("jwt-access")
    app_env = world.path / "app.env"
    app_env.write_text("\n".join(APP_LINES) + "\n")
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    assert record.state == "overlap"
    text = app_env.read_text()
    foreign = [line for line in APP_LINES if not line.startswith("JWT_SECRET")]
    assert [line for line in text.splitlines() if not line.startswith("JWT_SECRET")] == foreign
    # JWT_SECRET stays where it was; the overlap's _PREVIOUS is there
    assert text.splitlines().index(next(
        line for line in text.splitlines() if line.startswith("JWT_SECRET="))) == 5
    parsed = dotenv.parse(text)
    values = {e.name: e.value.reveal() for e in collect(world.store, world.inventory, "dev")}
    assert {k: v for k, v in parsed.items() if k.startswith("JWT_SECRET")} == {
        k: v for k, v in values.items() if k.startswith("JWT_SECRET")}
    assert "JWT_SECRET_PREVIOUS" in parsed
    assert stat.S_IMODE(app_env.stat().st_mode) == 0o600
    assert ref is not None


def _compose_file() -> dict[str, object]:
    doc = (Path(__file__).parents[3] / "docs" / "compose.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", doc, re.S)
    assert block is not None
    parsed = yaml.safe_load(block.group(1))
    assert isinstance(parsed, dict)
    return parsed


def test_compose_recipe_reads_keyrolls_file_and_never_overrides_it(world: World) -> None:
    compose = _compose_file()
    services = compose["services"]
    assert isinstance(services, dict)
    owned = owned_vars(world.inventory, "dev")
    for service in services.values():
        env_files = service["env_file"]
        assert env_files[-1] == "keyroll.env"  # the last env_file wins
        overriding = set(service.get("environment", {})) & owned
        assert not overriding, f"environment: would override keyroll's {overriding}"
