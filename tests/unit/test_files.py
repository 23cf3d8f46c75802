"""The one atomic 0600 writer: special targets refused, stale temp files of killed writers removed."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keyroll.errors import UsageError
from keyroll.files import TEMP_PREFIX, check_target, git_ignores, remove_stale_temps, write_private


def _temps(folder: Path, target: str) -> list[Path]:
    return sorted(folder.glob(f"{TEMP_PREFIX}{target}-*"))


def test_writes_0600_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "app.env"
    write_private(target, "A=1\n")
    write_private(target, b"A=2\n")
    assert target.read_text() == "A=2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _temps(target.parent, "app.env") == []


def test_exclusive_never_replaces(tmp_path: Path) -> None:
    target = tmp_path / "master.key"
    write_private(target, "one", exclusive=True)
    with pytest.raises(FileExistsError):
        write_private(target, "two", exclusive=True)
    assert target.read_text() == "one"
    assert _temps(tmp_path, "master.key") == []


def _special(kind: str, path: Path) -> None:
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
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod is not permitted here")


@pytest.mark.parametrize("kind", ["fifo", "directory", "socket", "chardev"])
def test_special_targets_are_refused_and_kept(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "out"
    _special(kind, target)
    before = os.lstat(target)
    with pytest.raises(UsageError, match="regular file"):
        write_private(target, "SECRET=x\n")
    after = os.lstat(target)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert _temps(tmp_path, "out") == []


def test_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to(tmp_path / "pipe")
    with pytest.raises(UsageError, match="FIFO"):
        check_target(tmp_path / "link")


_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import keyroll.files as files
    def die(src, dst):
        os.kill(os.getpid(), signal.SIGKILL)
    files.os.replace = die
    files.write_private(Path(sys.argv[1]), "JWT_SECRET=planted-value-in-temp\\n")
""")


def test_sigkill_between_write_and_rename_leaves_a_temp_the_next_write_removes(
    tmp_path: Path,
) -> None:
    target = tmp_path / ".env"
    target.write_text("OLD=1\n")
    done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], check=False)
    assert done.returncode == -9
    left = _temps(tmp_path, ".env")
    assert len(left) == 1  # the scenario: plaintext left behind under a recognisable name
    assert "planted-value-in-temp" in left[0].read_text()
    assert target.read_text() == "OLD=1\n"
    write_private(target, "NEW=1\n")
    assert _temps(tmp_path, ".env") == []
    assert target.read_text() == "NEW=1\n"


def test_stale_cleanup_spares_live_writers_and_other_targets(tmp_path: Path) -> None:
    live = tmp_path / f"{TEMP_PREFIX}app.env-aaaaaaaaaaaa"
    other = tmp_path / f"{TEMP_PREFIX}app.env-prod-bbbbbbbbbbbb"  # temp of target "app.env-prod"
    stale = tmp_path / f"{TEMP_PREFIX}app.env-cccccccccccc"
    for path in (live, other, stale):
        path.write_text("x")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert remove_stale_temps(tmp_path / "app.env") == [stale]
    finally:
        os.close(fd)
    assert live.exists() and other.exists() and not stale.exists()


def test_git_ignores(tmp_path: Path) -> None:
    assert git_ignores(tmp_path / "app.env")  # not a work tree: nothing to warn about
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert not git_ignores(tmp_path / "app.env")
    (tmp_path / ".gitignore").write_text("*.env\n")
    assert git_ignores(tmp_path / "app.env")


def test_temp_files_of_earlier_versions_are_removed_too(tmp_path: Path) -> None:
    # before issue 10, `write_private` used tempfile.mkstemp: "..env.XXXXXXXX.tmp"
    legacy = tmp_path / "..env.ab_c12z9.tmp"
    unrelated = tmp_path / "..env.backup.tmp"
    legacy.write_text("JWT_SECRET=old\n")
    unrelated.write_text("mine\n")
    write_private(tmp_path / ".env", "A=1\n")
    assert not legacy.exists() and unrelated.exists()
