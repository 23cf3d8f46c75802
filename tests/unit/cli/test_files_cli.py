"""Issue 10 §5: files keyroll writes (export targets, temp files, .gitignore)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from keyroll.files import TEMP_PREFIX

from .conftest import Keyroll


@pytest.fixture
def with_secret(initialised: Keyroll) -> Keyroll:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    return initialised


def _make(kind: str, path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private "/dev/null"
        except PermissionError:
            pytest.skip("mknod is not permitted here")


@pytest.mark.parametrize("kind", ["chardev", "fifo", "socket", "directory"])
def test_export_refuses_a_target_that_is_not_a_regular_file(
    with_secret: Keyroll, project: Path, kind: str
) -> None:
    target = project / "null"
    _make(kind, target)
    before = os.lstat(target)
    result = with_secret("export", "--env", "dev", "-o", str(target))
    assert result.code == 2, result.err
    assert "regular file" in result.err
    assert len(result.err.strip().splitlines()) == 1
    after = os.lstat(target)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode)
    assert after.st_rdev == before.st_rdev
    assert not list(project.glob(f"{TEMP_PREFIX}*"))


def test_export_removes_the_stale_temp_file_of_its_target(with_secret: Keyroll, project: Path) -> None:
    stale = project / f"{TEMP_PREFIX}app.env-0123456789ab"
    stale.write_text("JWT_SECRET=destroyed-long-ago\n")
    assert with_secret("export", "--env", "dev", "-o", "app.env").code == 0
    assert not stale.exists()
    assert (project / "app.env").is_file()


def test_init_gitignore_covers_env_files_keys_and_temp_files(
    initialised: Keyroll, project: Path
) -> None:
    ignored = (project / ".gitignore").read_text().splitlines()
    for entry in (".keyroll/", ".env", ".env*", "*.key", "*.pem", "secrets/", f"{TEMP_PREFIX}*"):
        assert entry in ignored


def test_export_warns_when_git_does_not_ignore_its_target(with_secret: Keyroll, project: Path) -> None:
    outside = with_secret("export", "--env", "dev", "-o", "app.out")
    assert outside.code == 0 and "warning" not in outside.err  # not a git work tree
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    exposed = with_secret("export", "--env", "dev", "-o", "app.out")
    assert exposed.code == 0
    assert "not ignored" in exposed.err
    hidden = with_secret("export", "--env", "dev", "-o", ".env.dev")  # `.env*` from init
    assert hidden.code == 0 and "warning" not in hidden.err
