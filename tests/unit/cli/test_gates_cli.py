"""Issue 15 §5 on the CLI: a production gate refuses with one line and exit 2, journaled; a
queued rotation outside its window is not an error (exit 0, parked)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from keyroll._compat import UTC
from keyroll.cli.exitcodes import WAITING
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
    assert queued.code == WAITING, queued.err  # parked until the window opens
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
    rotations = json.loads(keyroll("rotations", "--json").out)
    assert [r["state"] for r in rotations] in (["overlap"], ["done"])
    assert drill.code == (WAITING if rotations[0]["state"] == "overlap" else 0), drill.err


def test_the_example_project_gates_prod_by_rehearsal_and_window(initialised: Keyroll) -> None:
    """`keyroll init`'s inventory: a prod rotation of a high-tier class wants a staging drill
    first, and one of a class without that rule waits for the change window (prod refuses a
    KEYROLL_NOW, so this runs on the real clock and checks whichever side of it it is on)."""
    assert initialised("generate", "jwt-access", "--env", "prod").code == 0
    refused = initialised("rotate", "jwt-access", "--env", "prod")
    assert refused.code == 2 and refused.err.count("\n") == 1
    assert "no completed rehearsal of jwt-access in staging within the last 14d" in refused.err
    assert initialised("generate", "jwt-refresh", "--env", "prod").code == 0
    hanoi = datetime.now(UTC) + timedelta(hours=7)  # Asia/Ho_Chi_Minh has no DST
    second = initialised("rotate", "jwt-refresh", "--env", "prod")
    if 2 <= hanoi.hour < 4:
        assert second.code == WAITING, second.err  # inside: it waits for the second approver
        refusals = 1
    else:
        assert second.code == 2 and second.err.count("\n") == 1
        assert "outside the change window 02:00-04:00 Asia/Ho_Chi_Minh" in second.err
        assert json.loads(initialised("rotations", "--json").out) == []  # nothing started
        refusals = 2
    journal = initialised("audit", "log", "--json")
    assert journal.code == 0 and journal.out.count("rotation.refused") == refusals
