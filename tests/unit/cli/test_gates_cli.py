"""Issue 15 §5 on the CLI: a production gate refuses with one line and exit 2, journaled; a
queued rotation outside its window is not an error (exit 0, parked)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from keyroll._compat import UTC
from tests.unit.cli.conftest import Keyroll

TEXT = '''project = "t"
[environments.staging]
drill = true
[environments.prod]
production = true
{env}

[classes.jwt]
kind = "jwt-signing"
env_vars = ["JWT_SECRET"]
cadence_days = 90
tier = "high"
blast_radius = "sessions"
owner = "auth"
environments = ["staging", "prod"]
overlap = {{ token_ttl = "15m", margin = "0s" }}
'''


def _closed_window() -> str:
    """A one-hour window that starts two hours from now (UTC): closed while the test runs."""
    start = datetime.now(UTC) + timedelta(hours=2)
    end = start + timedelta(hours=1)
    return f'window = "{start:%H:00}-{end:%H:00} UTC"'


def _setup(keyroll: Keyroll, project: Path, env: str) -> None:
    assert keyroll("init").code == 0
    (project / "keyroll.toml").write_text(TEXT.format(env=env))
    for name in ("staging", "prod"):
        assert keyroll("generate", "jwt", "--env", name).code == 0


def test_outside_the_window_rotate_exits_2_with_one_line_and_queue_parks_it(
    keyroll: Keyroll, project: Path,
) -> None:
    _setup(keyroll, project, _closed_window())
    refused = keyroll("rotate", "jwt", "--env", "prod")
    assert refused.code == 2
    [line] = refused.err.strip().splitlines()
    assert "outside the change window" in line and "--queue" in line
    assert "Traceback" not in refused.out + refused.err
    assert json.loads(keyroll("rotations", "--json").out) == []
    queued = keyroll("rotate", "jwt", "--env", "prod", "--queue")
    assert queued.code == 0, queued.err
    assert "at plan" in queued.out
    advanced = keyroll("advance", "--json")
    assert advanced.code == 0
    assert len(json.loads(advanced.out)["waiting"]) == 1
    journal = keyroll("audit", "log", "--json")
    assert journal.code == 0 and "rotation.refused" in journal.out


def test_without_a_rehearsal_rotate_exits_2_and_a_drill_unlocks_it(
    keyroll: Keyroll, project: Path,
) -> None:
    _setup(keyroll, project, 'require_rehearsal = "14d"')
    refused = keyroll("rotate", "jwt", "--env", "prod")
    assert refused.code == 2
    [line] = refused.err.strip().splitlines()
    assert "keyroll rotate jwt --env staging --drill" in line
    drill = keyroll("rotate", "jwt", "--env", "staging", "--drill")
    assert drill.code == 0, drill.err
    rotations = json.loads(keyroll("rotations", "--json").out)
    assert [r["state"] for r in rotations] in (["overlap"], ["done"])
