"""CLI conventions: --version, KEYROLL_ENV for required --env, env vars for global options."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.unit.cli.conftest import Keyroll


def test_version(keyroll: Keyroll) -> None:
    done = keyroll("--version")
    assert done.code == 0 and done.out == f"keyroll {version('keyroll')}\n"


def test_keyroll_env_is_the_default_of_a_required_env(initialised: Keyroll,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    missing = initialised("generate", "jwt-access")
    assert missing.code == 2 and "--env" in missing.err
    monkeypatch.setenv("KEYROLL_ENV", "dev")
    assert initialised("generate", "jwt-access").code == 0
    meta = json.loads(initialised("get", "jwt-access", "--json").out)
    assert meta["secret"] == "dev/jwt-access" and meta["labels"] == ["current"]
    assert initialised("get", "jwt-access", "--env", "staging").code != 0  # the flag wins
    # optional --env filters keep meaning "every environment"
    rows = json.loads(initialised("status", "--json").out)["secrets"]
    assert len({r["environment"] for r in rows}) > 1


def test_global_options_have_env_vars(initialised: Keyroll, project: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = project / "sub"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (elsewhere / "keyroll.toml").write_text("this is not toml [")
    assert initialised("inventory", "check").code == 2
    monkeypatch.setenv("KEYROLL_CONFIG", str(project / "keyroll.toml"))
    assert initialised("inventory", "check").code == 0
    monkeypatch.setenv("KEYROLL_STORE", "nope://x")
    bad = initialised("status")
    assert bad.code == 2 and len(bad.err.strip().splitlines()) == 1


def test_shell_completion_script(keyroll: Keyroll) -> None:
    done = keyroll("--show-completion", "bash")
    assert done.code == 0 and "_KEYROLL_COMPLETE" in done.out
