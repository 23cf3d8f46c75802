"""Issue 10 §6: bad input is one line, exit 2, never "unexpected", and cannot forge output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keyroll.cli.output import escape

from .conftest import Keyroll


def _one_line_exit_2(result: object) -> None:
    code, err = result.code, result.err  # type: ignore[attr-defined]
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert "unexpected" not in err and "Traceback" not in err


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
                                    "9999-12-31T23:59:59-05:00"])
def test_now_out_of_range_is_refused(initialised: Keyroll, moment: str) -> None:
    result = initialised("advance", "--now", moment)
    _one_line_exit_2(result)
    assert "--now" in result.err


def test_keyroll_now_out_of_range_is_refused(
    initialised: Keyroll, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYROLL_NOW", "9999-12-31T23:59:59Z")
    _one_line_exit_2(initialised("status"))


@pytest.mark.parametrize("value", ['"99999999999d"', '"999999999d"', "1e300"])
def test_overflowing_overlap_fails_inventory_check(
    initialised: Keyroll, project: Path, value: str
) -> None:
    path = project / "keyroll.toml"
    text = path.read_text()
    assert 'overlap = { token_ttl = "15m", margin = "1h" }' in text
    path.write_text(text.replace('overlap = { token_ttl = "15m", margin = "1h" }',
                                 f'overlap = {{ min = {value}, token_ttl = "15m" }}', 1))
    result = initialised("inventory", "check")
    _one_line_exit_2(result)
    assert "overlap.min" in result.err
    _one_line_exit_2(initialised("rotate", "jwt-access", "--env", "dev"))


@pytest.mark.parametrize("name", ["app\n  namespace: x", "App", "app_secrets", "-app", "a" * 254,
                                  "app:", ""])
def test_k8s_export_refuses_names_that_are_not_kubernetes_names(
    initialised: Keyroll, project: Path, name: str
) -> None:
    result = initialised("export", "--env", "dev", "-o", "s.yaml", "--format", "k8s",
                         "--name", name)
    _one_line_exit_2(result)
    assert "\n  namespace" not in result.err
    assert not (project / "s.yaml").exists()


def test_k8s_export_accepts_a_dns_name(initialised: Keyroll, project: Path) -> None:
    assert initialised("export", "--env", "dev", "-o", "s.yaml", "--format", "k8s",
                       "--name", "app-secrets.v2").code == 0
    assert "  name: app-secrets.v2\n" in (project / "s.yaml").read_text()


@pytest.mark.parametrize(
    "argv",
    [
        ("rollback", "r-1\nerror: forged line"),
        ("confirm", "r-1\n\x1b[32mok", "portal"),
        ("status", "--env", "dev\nok: everything rotated"),
        ("get", "jwt-access\nforged", "--env", "dev"),
    ],
)
def test_echoed_arguments_cannot_forge_output_lines(initialised: Keyroll, argv: tuple[str, ...]) -> None:
    result = initialised(*argv)
    assert result.code != 0
    assert result.err.count("\n") == 1, result.err
    assert "\x1b" not in result.err
    assert "\\n" in result.err or "\\x1b" in result.err


def test_escape() -> None:
    assert escape("plain text: ok") == "plain text: ok"
    assert escape("a\nb\r\tc\x1b[0m\u202e\x00") == "a\\nb\\r\\tc\\x1b[0m\\u202e\\x00"
    assert os.linesep not in escape("x" + os.linesep)


def test_dashboard_refuses_a_bad_allowed_host_in_one_line(initialised: Keyroll) -> None:
    result = initialised("dashboard", "--allowed-host", "http://x/")
    assert result.code == 2
    assert result.err.count("\n") == 1
