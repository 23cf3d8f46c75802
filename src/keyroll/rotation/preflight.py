"""The plan step's backups: ``preflight = [{ backup = …, verify = true }]`` (seed 000 §3.1:
``db_backup.py --verify`` before a credential changes).

Each entry of `Inventory.preflight_for` is taken before the strategy's apply, after the
strategy proved the current credential works. The artefact is written through
`keyroll.files` (`private_temp` beside the target, 0600, renamed into place by
`publish_private` only once it verified), so the target never holds a partial backup and a
run killed halfway leaves a temp file the next write removes. Its path, size and SHA-256 become
the plan step's evidence; a failure refuses the rotation before anything changed.

- ``pg_dump``: `keyroll.targets.postgres.backup.backup` (``pg_dump -Fc``, read back with
  ``pg_restore --list``) on the database of ``dsn_env``.
- ``sqlite``: SQLite's online backup API (a consistent copy while the app writes), verified
  with ``PRAGMA integrity_check`` on the copy.
- ``{ run = … }``: a command that fills ``$KEYROLL_BACKUP_PATH``; verified as non-empty and
  by its ``check`` command. Commands run like hooks (`keyroll.targets.hooks.run_hook`: small
  environment, timeout, output redacted).

The artefact file name holds the environment, the class and the rotation id, so a rerun of
the plan step after a crash replaces its own artefact and never another rotation's.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from keyroll.errors import KeyrollError, RotationRefused, UsageError
from keyroll.files import private_temp, publish_private
from keyroll.inventory import BackupCommand, Hook, Preflight
from keyroll.rotation.strategies.base import StepContext
from keyroll.targets.hooks import run_hook
from keyroll.urls import sqlite_url_path

__all__ = ["take_backups"]

_SUFFIX = {"pg_dump": "dump", "sqlite": "sqlite3", "run": "backup"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _target(ctx: StepContext, entry: Preflight, number: int) -> Path:
    folder = Path(entry.dir)
    folder = folder if folder.is_absolute() else ctx.workdir / folder
    tail = f"-{number}" if number else ""
    return folder / (f"{ctx.ref.environment}-{ctx.ref.name}-{ctx.rotation}{tail}."
                     f"{_SUFFIX[entry.label]}")


def _env_value(ctx: StepContext, name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RotationRefused(f"{ctx.ref}: env var {name} ({what}) is not set: export it where "
                              "keyroll runs")
    return value


def _pg_dump(ctx: StepContext, entry: Preflight, target: Path) -> dict[str, Any]:
    from keyroll.targets.postgres.backup import backup

    assert entry.dsn_env is not None
    dsn = _env_value(ctx, entry.dsn_env, "preflight dsn_env")
    result = backup(dsn, target, pg_dump=entry.pg_dump, timeout=entry.timeout.total_seconds())
    return {"path": str(result.path), "sha256": result.sha256, "size": result.size,
            "verified": f"pg_restore --list ({result.entries} entries)"}


def _sqlite_source(ctx: StepContext, entry: Preflight) -> Path:
    if entry.database is not None:
        path = Path(entry.database)
    else:
        assert entry.dsn_env is not None
        text = _env_value(ctx, entry.dsn_env, "preflight dsn_env")
        if text.lower().startswith("sqlite"):
            path = sqlite_url_path(text)
        elif "://" in text:
            raise UsageError(f"{ctx.ref}: env var {entry.dsn_env} does not hold a sqlite: URL "
                             "or a file path (its text is not shown)")
        else:
            path = Path(text)
    path = path if path.is_absolute() else ctx.workdir / path
    if not path.is_file():
        raise RotationRefused(f"{ctx.ref}: the SQLite database {path} to back up does not "
                              "exist: check preflight.database / dsn_env")
    return path


def _sqlite(ctx: StepContext, entry: Preflight, target: Path) -> dict[str, Any]:
    source_path = _sqlite_source(ctx, entry)
    with private_temp(target) as partial:
        source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True,
                                 timeout=entry.timeout.total_seconds())
        try:
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy)
            finally:
                copy.close()
        except sqlite3.Error as exc:
            raise RotationRefused(f"{ctx.ref}: SQLite backup of {source_path} failed: "
                                  f"{exc.__class__.__name__}: {exc}") from None
        finally:
            source.close()
        evidence: dict[str, Any] = {}
        if entry.verify:
            check = sqlite3.connect(f"file:{partial}?mode=ro", uri=True)
            try:
                verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
                tables = check.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            finally:
                check.close()
            if verdict != "ok":
                raise RotationRefused(f"{ctx.ref}: the SQLite backup of {source_path} does not "
                                      f"verify (integrity_check: {str(verdict)[:120]})")
            evidence["verified"] = f"PRAGMA integrity_check ok ({tables} tables)"
        digest = _sha256(partial)
        publish_private(partial, target)
    return {"path": str(target), "sha256": digest, "size": target.stat().st_size,
            "source": str(source_path), **evidence}


def _command(spec: BackupCommand, argv: str | list[str], entry: Preflight) -> Hook:
    return Hook(run=argv, shell=spec.shell, pass_env=spec.pass_env, timeout=entry.timeout)


def _run(ctx: StepContext, entry: Preflight, target: Path, *, context: Mapping[str, str],
         redact: Callable[[str], str]) -> dict[str, Any]:
    spec = entry.backup
    assert isinstance(spec, BackupCommand)
    with private_temp(target) as partial:
        env = {**context, "KEYROLL_BACKUP_PATH": str(partial)}
        done = run_hook(_command(spec, spec.run, entry), cwd=ctx.workdir, env=env,
                        redact=redact, check=False)
        if not done.ok:
            raise RotationRefused(f"{ctx.ref}: the preflight backup command failed "
                                  f"({done.detail}): {done.output[-300:] or 'no output'}")
        evidence: dict[str, Any] = {"output": done.output}
        if entry.verify:
            if partial.stat().st_size == 0:
                raise RotationRefused(f"{ctx.ref}: the preflight backup command wrote nothing "
                                      "to $KEYROLL_BACKUP_PATH: make it write the backup there")
            verified = "non-empty"
            if spec.check is not None:
                checked = run_hook(_command(spec, spec.check, entry), cwd=ctx.workdir, env=env,
                                   redact=redact, check=False)
                if not checked.ok:
                    raise RotationRefused(f"{ctx.ref}: the preflight backup does not verify "
                                          f"(check: {checked.detail}): "
                                          f"{checked.output[-300:] or 'no output'}")
                verified = f"non-empty, check {checked.detail}"
            evidence["verified"] = verified
        digest = _sha256(partial)
        publish_private(partial, target)
    return {"path": str(target), "sha256": digest, "size": target.stat().st_size, **evidence}


def take_backups(ctx: StepContext, entries: list[Preflight], *, context: Mapping[str, str],
                 redact: Callable[[str], str]) -> list[dict[str, Any]]:
    """Take every backup of ``entries`` in order; return their evidence.

    Args:
        ctx: the plan step's context (paths relative to ``ctx.workdir``).
        entries: from `Inventory.preflight_for`.
        context: the ``KEYROLL_*`` variables command backups see.
        redact: masks secrets in command output before it becomes evidence.

    Raises:
        RotationRefused: a backup failed or does not verify (nothing changed yet: the
            rotation rolls back before create).
    """
    results: list[dict[str, Any]] = []
    for number, entry in enumerate(entries):
        target = _target(ctx, entry, number)
        started = time.monotonic()
        ctx.emit(f"preflight: {entry.label} backup to {target}…")
        try:
            if entry.backup == "pg_dump":
                evidence = _pg_dump(ctx, entry, target)
            elif entry.backup == "sqlite":
                evidence = _sqlite(ctx, entry, target)
            else:
                evidence = _run(ctx, entry, target, context=context, redact=redact)
        except RotationRefused:
            raise
        except KeyrollError as exc:
            raise RotationRefused(f"{ctx.ref}: the preflight {entry.label} backup failed, so "
                                  f"the rotation did not start: {exc}") from None
        except OSError as exc:
            raise RotationRefused(f"{ctx.ref}: the preflight {entry.label} backup to {target} "
                                  f"failed: {exc.strerror or exc.__class__.__name__}") from None
        results.append({"backup": entry.label, **evidence,
                        "seconds": round(time.monotonic() - started, 3)})
    return results
