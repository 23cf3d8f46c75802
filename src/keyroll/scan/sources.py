"""What a scan reads: a directory tree, git history, the staged index, stdin, a SQL query.

Each source yields `Item` (where, and its text). Texts are decoded as UTF-8 with
``surrogateescape``, so a value inside a binary file is still found and offsets stay exact.
Files larger than `MAX_BYTES` are skipped and counted, so every read is bounded.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from keyroll.errors import UsageError

__all__ = ["MAX_BYTES", "Item", "Skipped", "git_history", "query_rows", "staged", "stdin_text",
           "tree"]

#: Larger files and blobs are skipped (and counted in `Skipped`).
MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Item:
    """One text to scan: a file path (relative to the scanned folder where possible), a
    commit for a blob of history, or a pseudo-path (``<stdin>``, ``query row 3 column v``)."""

    path: str
    text: str
    commit: str | None = None


@dataclass
class Skipped:
    """What a source did not read, by reason (counts only)."""

    too_large: int = 0
    unreadable: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _git() -> str:
    git = shutil.which("git")
    if git is None:
        raise UsageError("git is not installed: --git and --staged need it")
    return git


def _run_git(repo: Path, *args: str) -> bytes:
    done = subprocess.run([_git(), "-C", str(repo), *args], capture_output=True, timeout=600,
                          check=False)
    if done.returncode != 0:
        message = _decode(done.stderr).strip().splitlines()
        raise UsageError(f"git {args[0]} failed in {repo}: "
                         f"{message[0] if message else 'exit ' + str(done.returncode)}")
    return done.stdout


def _work_tree(folder: Path) -> Path | None:
    git = shutil.which("git")
    if git is None:
        return None
    done = subprocess.run([git, "-C", str(folder), "rev-parse", "--show-toplevel"],
                          capture_output=True, timeout=60, check=False)
    return Path(_decode(done.stdout).strip()) if done.returncode == 0 else None


def _read(path: Path, shown: str, skipped: Skipped) -> Item | None:
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > MAX_BYTES:
            skipped.too_large += 1
            return None
        return Item(shown, _decode(path.read_bytes()))
    except OSError:
        skipped.unreadable += 1
        return None


def tree(paths: list[Path], *, all_files: bool, skipped: Skipped) -> Iterator[Item]:
    """Every regular file under ``paths`` (symlinks not followed). Inside a git work tree the
    files git would not ignore (tracked and untracked), unless ``all_files``; ``.git`` never."""
    for root in paths:
        if not root.exists() and not root.is_symlink():
            raise UsageError(f"{root}: no such file or folder")
        if not root.is_dir():
            item = _read(root, str(root), skipped)
            if item is not None:
                yield item
            continue
        work_tree = None if all_files else _work_tree(root)
        if work_tree is not None:
            listed = _run_git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                              "--deduplicate", "--", ".")
            for name in sorted(set(_decode(listed).split("\0")) - {""}):
                item = _read(root / name, str(root / name) if root != Path(".") else name, skipped)
                if item is not None:
                    yield item
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            for name in sorted(files):
                path = Path(folder) / name
                shown = str(path.relative_to(root)) if root == Path(".") else str(path)
                item = _read(path, shown, skipped)
                if item is not None:
                    yield item


def _introducing_commits(repo: Path, since: str | None) -> dict[str, tuple[str, str]]:
    """blob id → (the oldest commit on any ref that added or changed a path to it, path)."""
    args = ["log", "--all", "--raw", "--no-abbrev", "--no-renames", "--format=%x00%H"]
    if since:
        args += ["--not", since]
    out = _decode(_run_git(repo, *args))
    first: dict[str, tuple[str, str]] = {}
    commit = ""
    for line in out.splitlines():
        if line.startswith("\0"):
            commit = line[1:]
        elif line.startswith(":"):
            meta, _, path = line.partition("\t")
            parts = meta.split()
            if len(parts) >= 5 and parts[4] != "D":
                first[parts[3]] = (commit, path)  # log is newest first: the last one wins
    return first


def _blobs(repo: Path, ids: list[tuple[str, str, str | None]], skipped: Skipped
           ) -> Iterator[Item]:
    """Read ``(blob id, path, commit)`` through one ``git cat-file --batch``."""
    if not ids:
        return
    process = subprocess.Popen([_git(), "-C", str(repo), "cat-file", "--batch"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        for blob, path, commit in ids:
            process.stdin.write(blob.encode() + b"\n")
            process.stdin.flush()
            header = process.stdout.readline().split()
            if len(header) != 3:
                skipped.unreadable += 1
                continue
            size = int(header[2])
            data = process.stdout.read(size + 1)[:size]
            if size > MAX_BYTES:
                skipped.too_large += 1
                continue
            yield Item(path, _decode(data), commit)
    finally:
        process.stdin.close()
        process.stdout.close()
        process.wait(timeout=60)


def git_history(repo: Path, *, since: str | None, skipped: Skipped) -> Iterator[Item]:
    """Every blob reachable from any ref (each once), with the commit that introduced it;
    with ``since``, only blobs of commits not reachable from ``since``."""
    if _work_tree(repo) is None and not (repo / "HEAD").exists():
        raise UsageError(f"{repo} is not a git repository: --git scans a repository's history")
    args = ["rev-list", "--all", "--objects", "--filter=object:type=blob", "--filter-provided-objects"]
    if since:
        args += ["--not", since]
    listed = _decode(_run_git(repo, *args))
    introduced = _introducing_commits(repo, since)
    ids: list[tuple[str, str, str | None]] = []
    for line in listed.splitlines():
        blob, _, path = line.partition(" ")
        if not blob:
            continue
        commit, first_path = introduced.get(blob, (None, path))
        ids.append((blob, first_path or path or blob, commit))
    yield from _blobs(repo, ids, skipped)


def staged(repo: Path, *, skipped: Skipped) -> Iterator[Item]:
    """The staged content of every added, copied or modified path (what ``git commit`` would
    record), for a pre-commit hook."""
    if _work_tree(repo) is None:
        raise UsageError(f"{repo} is not inside a git work tree: --staged needs one")
    out = _decode(_run_git(repo, "diff", "--cached", "--raw", "-z", "--no-abbrev",
                           "--diff-filter=ACMR", "--no-renames"))
    fields = out.split("\0")
    ids: list[tuple[str, str, str | None]] = []
    for i in range(0, len(fields) - 1, 2):
        parts = fields[i].split()
        if len(parts) >= 5:
            ids.append((parts[3], fields[i + 1], None))
    yield from _blobs(repo, ids, skipped)


def stdin_text(stream: IO[bytes]) -> Iterator[Item]:
    """Standard input, read in full (bounded by `MAX_BYTES`)."""
    data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise UsageError(f"stdin is larger than {MAX_BYTES} bytes: split it")
    yield Item("<stdin>", _decode(data))


def query_rows(dsn: str, query: str, *, max_rows: int = 10_000_000) -> Iterator[Item]:
    """Every non-null column of every row of ``query`` (read-only transaction), as text."""
    try:
        import psycopg
    except ImportError:
        raise UsageError("scanning a table needs psycopg: pip install 'keyroll[postgres]'"
                         ) from None
    from keyroll.scrub import dsn_secret_parts, scrub

    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.read_only = True
            with conn.cursor() as cursor:
                cursor.execute(query.encode())
                columns = [c.name for c in cursor.description or ()]
                for number, row in enumerate(cursor, start=1):
                    if number > max_rows:
                        raise UsageError(f"the query returned more than {max_rows} rows: "
                                         "add a WHERE or LIMIT")
                    for column, value in zip(columns, row, strict=False):
                        if value is None:
                            continue
                        text = (_decode(bytes(value)) if isinstance(value, bytes | memoryview)
                                else str(value))
                        yield Item(f"query row {number} column {column}", text)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"PostgreSQL: {scrub(first, dsn_secret_parts(dsn))}") from None
