"""Private files written atomically: the one writer for every file that may hold a secret.

`write_private` writes a temp file beside the target (mode 0600, fsync), renames it over the
target and fsyncs the directory, so a reader sees the old file or the new one, never half of
one, and a power cut after it returns keeps the new one.

A process killed between write and rename (SIGKILL, OOM, power) leaves its temp file behind,
and that file holds the same plaintext as the target, including values keyroll later destroys.
Temp files are therefore named ``.keyroll-tmp-<target name>-<random>`` and every write of a
target first removes the stale temp files of that target. A writer holds an exclusive
``flock`` on its temp file while it works, so a concurrent writer never removes a temp file
that is still being written; the kernel drops the lock when its holder dies.

A file another program writes (``pg_dump -f``) takes the same path: `private_temp` reserves
the 0600 temp file (flock-held while the program fills it) and `publish_private` fsyncs it,
renames it over the target and fsyncs the directory.

`check_target` refuses a target that exists and is not a regular file: renaming over
``/dev/null``, a FIFO or a socket would replace it with a file of plaintext secrets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from keyroll.errors import UsageError

__all__ = [
    "TEMP_PREFIX",
    "check_target",
    "git_ignores",
    "git_tracks",
    "private_temp",
    "publish_private",
    "remove_stale_temps",
    "temp_name",
    "write_private",
]

TEMP_PREFIX = ".keyroll-tmp-"

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def temp_name(target: Path) -> str:
    """A fresh temp file name for ``target`` (in the same folder, so the rename is atomic)."""
    return f"{TEMP_PREFIX}{target.name}-{secrets.token_hex(6)}"


def check_target(path: Path) -> None:
    """Refuse a target that exists and is not a regular file (symlinks are followed).

    Raises:
        UsageError: the path is a directory, a device, a FIFO, a socket or another special file.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"cannot check {path}: {exc.strerror or exc.__class__.__name__}") from None
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise UsageError(
        f"{path} is {kind}; keyroll writes secrets only to regular files (it would replace it): "
        "choose a file path"
    )


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove temp files a killed writer of ``target`` left behind; return what was removed.

    A temp file whose writer is alive (it holds the file's ``flock``) is left alone.
    """
    folder = target.parent
    prefix = f"{TEMP_PREFIX}{target.name}-"
    # what keyroll 0.x left (tempfile.mkstemp: ".<name>.XXXXXXXX.tmp"): plaintext just the same
    legacy = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp")
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        ours = name.startswith(prefix) and "-" not in name[len(prefix):]
        # (the random tail has no '-': this excludes temp files of `<target>-other` targets)
        if not ours and not legacy.fullmatch(name):
            continue
        candidate = folder / name
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            if stat.S_ISREG(os.fstat(fd).st_mode):
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
        finally:
            os.close(fd)
    return removed


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(
    path: Path,
    content: str | bytes,
    *,
    owner: tuple[int, int] | None = None,
    exclusive: bool = False,
) -> None:
    """Write ``content`` to ``path`` atomically with mode 0600.

    Args:
        path: the target; its folder is created if needed.
        content: text (UTF-8) or bytes. It may hold secrets: it never appears in an error.
        owner: ``(uid, gid)`` to give the file (e.g. to keep a PgBouncer auth_file's owner).
        exclusive: refuse to replace an existing target (a master key is never overwritten).

    Raises:
        UsageError: the target exists and is not a regular file (`check_target`).
        FileExistsError: ``exclusive`` and the target exists.
        OSError: the folder cannot be written.
    """
    path = Path(path)
    check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    tmp = path.parent / temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, 0o600)
        if owner is not None and owner != (os.geteuid(), os.getegid()):
            os.fchown(fd, *owner)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        if exclusive:
            os.link(tmp, path)  # fails if the target exists: no window where it is replaced
            tmp.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def private_temp(target: Path) -> Iterator[Path]:
    """An empty 0600 temp file beside ``target`` for another program to fill.

    Named and locked like `write_private`'s temp files, so a run killed before
    `publish_private` leaves a file the next write of ``target`` removes. Removed on exit
    unless published.

    Raises:
        UsageError: the target exists and is not a regular file (`check_target`).
        OSError: the folder cannot be written.
    """
    target = Path(target)
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = target.parent / temp_name(target)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
    finally:
        os.close(fd)
        tmp.unlink(missing_ok=True)


def publish_private(tmp: Path, target: Path) -> None:
    """Make a filled `private_temp` file the target: 0600, fsync, rename, fsync the folder."""
    fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, 0o600)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    _fsync_dir(Path(target).parent)


def git_ignores(path: Path) -> bool:
    """False only when ``path`` lies in a git work tree that does not ignore it.

    Outside git, or when git is not installed or fails, there is nothing to warn about: True.
    """
    folder = Path(path).resolve().parent
    git = shutil.which("git")
    if git is None or not folder.is_dir():
        return True
    try:
        done = subprocess.run(
            [git, "-C", str(folder), "check-ignore", "-q", "--", Path(path).name],
            capture_output=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return True
    return done.returncode != 1  # 0 ignored, 1 not ignored, 128 not a work tree / error


def git_tracks(path: Path) -> bool:
    """True only when git tracks ``path`` (a tracked file stays published even once ignored).

    Outside git, or when git is not installed or fails: False.
    """
    folder = Path(path).resolve().parent
    git = shutil.which("git")
    if git is None or not folder.is_dir():
        return False
    try:
        done = subprocess.run(
            [git, "-C", str(folder), "ls-files", "--error-unmatch", "--", Path(path).name],
            capture_output=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0
