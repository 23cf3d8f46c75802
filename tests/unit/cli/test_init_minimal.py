"""``keyroll init --minimal``: a one-class JWT inventory that works end to end at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from keyroll.inventory import load_inventory
from keyroll.layout import LAYOUTS
from tests.unit.cli.conftest import Keyroll


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_minimal_inventory_in_each_layout(keyroll: Keyroll, project: Path, layout: str) -> None:
    done = keyroll("init", "--minimal", "--layout", layout)
    assert done.code == 0, done.err
    inventory = load_inventory(project / "keyroll.toml")
    assert list(inventory.classes) == ["jwt"]
    assert inventory.classes["jwt"].layout == layout
    assert keyroll("inventory", "check").code == 0
    assert keyroll("generate", "jwt", "--env", "dev").code == 0
    (project / "probe.py").write_text(
        "import json, os; open('names.json', 'w').write(json.dumps(sorted(k for k in os.environ "
        "if 'SECRET' in k)))")
    assert keyroll("run", "--env", "dev", "--", sys.executable, "probe.py").code == 0
    var = inventory.classes["jwt"].env_vars[0]
    assert {var, f"{var}_KID"} <= set(json.loads((project / "names.json").read_text()))


def test_default_init_keeps_the_full_example(keyroll: Keyroll, project: Path) -> None:
    assert keyroll("init").code == 0
    assert len(load_inventory(project / "keyroll.toml").classes) > 10


def test_init_with_an_inventory_creates_the_store(keyroll: Keyroll, project: Path) -> None:
    assert keyroll("init", "--minimal").code == 0
    for path in (project / ".keyroll").iterdir():
        path.unlink()
    again = keyroll("init")
    assert again.code == 0, again.err
    assert "kept" in again.out and (project / ".keyroll" / "store.db").exists()


@pytest.mark.parametrize("args", [("--layout", "seed-9", "--minimal"), ("--layout", "seed-003")])
def test_bad_layout_flags_are_one_line_exit_2(keyroll: Keyroll, args: tuple[str, ...]) -> None:
    done = keyroll("init", *args)
    assert done.code == 2 and len(done.err.strip().splitlines()) == 1
