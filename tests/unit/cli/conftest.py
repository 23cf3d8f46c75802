from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from keyroll.cli.app import run


@dataclass
class Result:
    code: int
    out: str
    err: str


Keyroll = Callable[..., Result]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("KEYROLL_MASTER_KEY", "KEYROLL_CONFIG", "KEYROLL_STORE", "KEYROLL_NOW"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KEYROLL_ACTOR", "alice")
    return tmp_path


@pytest.fixture
def keyroll(project: Path, capsys: pytest.CaptureFixture[str]) -> Keyroll:
    """Run the CLI in-process; every output is kept for the leak checks."""
    transcript: list[str] = []

    def _run(*args: str) -> Result:
        code = run(list(args))
        captured = capsys.readouterr()
        transcript.extend([captured.out, captured.err])
        return Result(code, captured.out, captured.err)

    _run.transcript = transcript  # type: ignore[attr-defined]
    return _run


@pytest.fixture
def initialised(keyroll: Keyroll) -> Keyroll:
    assert keyroll("init").code == 0
    return keyroll


@pytest.fixture
def ungated(initialised: Keyroll, project: Path) -> Keyroll:
    """The example project without its production change window and rehearsal rules, for
    tests about something else (approvals, JSON, stdin) that rotate in prod at any hour."""
    toml = project / "keyroll.toml"
    text = toml.read_text()
    kept = [line for line in text.splitlines(keepends=True)
            if not line.startswith(("window = ", "require_rehearsal = "))]
    assert len(kept) < len(text.splitlines())
    toml.write_text("".join(kept))
    return initialised
