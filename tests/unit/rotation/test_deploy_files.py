"""Issue 10 §5: the .env that a deploy hook writes goes through the one writer, so a temp file a
killed earlier write left beside it (plaintext, maybe of a destroyed key) is removed."""

from __future__ import annotations

import stat

from keyroll.files import TEMP_PREFIX
from tests.unit.conftest import World


def test_write_dotenv_hook_removes_stale_temp_files(world: World) -> None:
    world.seed("jwt-access")
    stale = world.path / f"{TEMP_PREFIX}app.env-0123456789ab"
    stale.write_text("JWT_SECRET=value-of-a-destroyed-key\n")
    engine = world.engine()
    assert engine.run(engine.start("jwt-access", "dev").id).state == "overlap"
    app_env = world.path / "app.env"
    assert "JWT_SECRET=" in app_env.read_text()
    assert stat.S_IMODE(app_env.stat().st_mode) == 0o600
    assert not stale.exists()
    assert not list(world.path.glob(f"{TEMP_PREFIX}*"))
