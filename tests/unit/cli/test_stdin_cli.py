"""``-`` for stdin wherever a command reads a file, one reader of stdin per command, and no
value written to a terminal but by ``get --reveal`` (checked on a real pseudo-terminal)."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyroll.cli.exitcodes import OK, WAITING
from tests.leaks import assert_no_leak
from tests.unit.cli.conftest import Keyroll

KEYROLL = str(Path(sys.executable).parent / "keyroll")


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def _reveal(keyroll: Keyroll, name: str, env: str) -> str:
    return keyroll("get", name, "--env", env, "--reveal").out.strip()


def test_config_from_stdin(initialised: Keyroll, project: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    text = (project / "keyroll.toml").read_bytes()
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no keyroll.toml here or above it but the project's own
    (project / "keyroll.toml").rename(project / "moved.toml")
    _stdin(monkeypatch, text)
    done = initialised("--config", "-", "inventory", "check", "--json")
    assert done.code == OK, done.err
    assert json.loads(done.out)["file"] == "-"
    monkeypatch.chdir(project)  # relative store paths start from the current folder
    _stdin(monkeypatch, text)
    monkeypatch.setenv("KEYROLL_CONFIG", "-")
    assert initialised("generate", "jwt-access", "--env", "dev").code == OK
    _stdin(monkeypatch, text)
    assert json.loads(initialised("get", "jwt-access", "--env", "dev", "--json").out)[
        "version"] == 1


def test_two_readers_of_stdin_are_bad_input(initialised: Keyroll, project: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    text = (project / "keyroll.toml").read_bytes()
    _stdin(monkeypatch, text)
    before = initialised("audit", "log", "--json", "-n", "0").out
    _stdin(monkeypatch, text)
    both = initialised("--config", "-", "import", "--env", "dev", "--file", "-")
    assert both.code == 2 and "both read stdin" in both.err
    assert len(both.err.strip().splitlines()) == 1
    _stdin(monkeypatch, text)
    value = initialised("--config", "-", "import", "jwt-access", "--env", "dev")
    assert value.code == 2 and "both read stdin" in value.err
    assert initialised("audit", "log", "--json", "-n", "0").out == before  # nothing changed


def test_import_file_from_stdin(initialised: Keyroll, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-$with\"quotes\\-" + "x" * 30
    escaped = secret.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    _stdin(monkeypatch, f'JWT_SECRET="{escaped}"\n'.encode())
    done = initialised("import", "--env", "dev", "--file", "-")
    assert done.code == OK, done.err
    assert "JWT_SECRET → dev/jwt-access: imported as version 1" in done.out
    assert _reveal(initialised, "jwt-access", "dev") == secret


def test_scan_baseline_through_pipes(initialised: Keyroll, project: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == OK
    value = _reveal(initialised, "jwt-access", "dev")
    exported = initialised("scan", "--export-baseline", "-")
    assert exported.code == OK, exported.err
    baseline = json.loads(exported.out)  # the document itself on stdout, the note on stderr
    assert baseline["format"] == "keyroll-scan-baseline/1" and "wrote -" in exported.err
    assert_no_leak([exported.out], [value], where="the baseline on stdout")
    assert not (project / "-").exists()
    (project / "leak.txt").write_text(f"token = {value}\n")
    (project / ".keyroll" / "master.key").rename(project / "elsewhere.key")  # no store now
    _stdin(monkeypatch, exported.out.encode())
    found = initialised("scan", "--baseline", "-", "--json", "leak.txt")
    assert found.code == 1, found.err
    (finding,) = json.loads(found.out)["findings"]
    assert finding["path"] == "leak.txt" and finding["class"] == "jwt-access"
    _stdin(monkeypatch, exported.out.encode())
    both = initialised("scan", "--baseline", "-", "-")
    assert both.code == 2 and "both read stdin" in both.err


def test_export_to_stdout_is_refused_and_reports_go_there(ungated: Keyroll,
                                                          project: Path) -> None:
    assert ungated("generate", "jwt-access", "--env", "prod").code == OK
    refused = ungated("export", "--env", "prod", "-o", "-")
    assert refused.code == 2 and "would print secret values" in refused.err
    assert refused.out == "" and not (project / "-").exists()
    assert ungated("rotate", "jwt-access", "--env", "prod").code == WAITING  # approval
    rid = json.loads(ungated("rotations", "--json").out)[0]["id"]
    drill = ungated("report", "drill", rid, "-o", "-")
    assert drill.code == OK and drill.out.startswith("## Rotation report")
    assert not (project / "-").exists()


def _on_a_terminal(args: list[str], cwd: Path, stdin: bytes | None = None) -> tuple[int, bytes]:
    """Run ``keyroll ARGS`` with stdout and stderr on a real pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([KEYROLL, *args], cwd=cwd, stdout=slave, stderr=slave,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            env={**os.environ, "COLUMNS": "200", "TERM": "xterm"})
    os.close(slave)
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks)


def test_nothing_writes_a_value_to_a_terminal_but_get_reveal(
        initialised: Keyroll, project: Path) -> None:
    provider = "vnpay-$ecret\"with\\quotes-" + "q" * 24
    assert initialised("generate", "jwt-access", "--env", "dev").code == OK
    code, _ = _on_a_terminal(["import", "vnpay-hash-secret", "--env", "staging"], project,
                             stdin=provider.encode() + b"\n")
    assert code == OK
    before = _reveal(initialised, "jwt-access", "dev")
    screens: list[bytes] = []
    for args in (
        ["status"], ["get", "jwt-access", "--env", "dev"], ["rotate", "jwt-access", "--env", "dev"],
        ["rotations", "--all"], ["advance", "--now", "2030-01-01T00:00:00Z", "--no-start-due"],
        ["export", "--env", "dev", "-o", "app.env"], ["audit", "log"],
        ["get", "vnpay-hash-secret", "--env", "staging", "--json"], ["scan", "app.env"],
        ["rotate", "vnpay-hash-secret", "--env", "staging"],
    ):
        code, screen = _on_a_terminal(args, project)
        assert code in (OK, 1, WAITING), (args, screen)
        screens.append(screen)
    after = _reveal(initialised, "jwt-access", "dev")
    assert before != after
    assert b"fingerprint" in b"".join(screens)  # the terminal did show the findings
    assert_no_leak(screens, [before, after, provider], where="a terminal")
    code, screen = _on_a_terminal(["get", "jwt-access", "--env", "dev", "--reveal"], project)
    assert code == OK and after.encode() in screen  # the one command that shows a value
