"""The plan step's backup: ``pg_dump -Fc`` to a private file, verified with ``pg_restore``."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from keyroll.errors import TargetError
from keyroll.files import private_temp, publish_private
from keyroll.model import SecretValue
from keyroll.targets.postgres._driver import driver_error, dsn_params, psycopg, where

__all__ = ["BackupResult", "backup"]


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A verified ``pg_dump -Fc`` archive (seed 000 §3.1): evidence for the audit journal.

    Attributes:
        path: where the archive is.
        sha256: hex SHA-256 of the file.
        size: bytes.
        entries: table-of-contents entries ``pg_restore --list`` read back.
    """

    path: Path
    sha256: str
    size: int
    entries: int


def backup(
    dsn: str,
    path: str | os.PathLike[str],
    *,
    password: SecretValue | None = None,
    pg_dump: str | None = None,
    pg_restore: str | None = None,
    timeout: float = 3600.0,
) -> BackupResult:
    """``pg_dump -Fc`` the database to ``path``, verify it with ``pg_restore --list``.

    The archive is written next to ``path`` under a private temporary name (`keyroll.files`)
    and renamed only once it verifies, so ``path`` never holds a partial dump. The password
    travels in the child's environment (``PGPASSWORD``), never on its command line.

    Args:
        dsn: conninfo or URL of a role that can read the whole database.
        path: where the archive goes (created or replaced).
        password: the password, if not in ``dsn`` (a password in ``dsn`` is moved to the
            environment as well).
        pg_dump: path of ``pg_dump`` (at least the server's major version); default: PATH.
        pg_restore: path of ``pg_restore``; default: next to ``pg_dump`` or PATH.
        timeout: seconds each command may take.

    Returns:
        The archive's path, SHA-256, size and number of table-of-contents entries.

    Raises:
        TargetError: a binary is missing, the dump failed or the archive does not verify.
    """
    pg = psycopg()
    target = Path(path)
    place = where(dsn)
    step = "backup (pg_dump -Fc)"
    dump_bin = pg_dump or shutil.which("pg_dump")
    if dump_bin is None:
        raise TargetError("pg_dump not found: install the PostgreSQL client "
                          "(apt-get install postgresql-client) or pass pg_dump=")
    restore_bin = pg_restore or str(Path(dump_bin).with_name("pg_restore"))
    if not Path(restore_bin).exists():
        restore_bin = shutil.which("pg_restore") or restore_bin
    params = dsn_params(dsn, step)
    secret = params.pop("password", None)
    if password is not None:
        secret = password.reveal()
    secrets = [secret] if secret else []
    env = dict(os.environ)
    if secret:
        env["PGPASSWORD"] = str(secret)
    conninfo = pg.conninfo.make_conninfo("", **params)
    with private_temp(target) as partial:
        _run([dump_bin, "-Fc", "-f", str(partial), "--dbname", conninfo], env, timeout, place,
             step, secrets)
        listing = _run([restore_bin, "--list", str(partial)], env, timeout, place,
                       "verify backup (pg_restore --list)", secrets)
        entries = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
        if entries == 0:
            raise driver_error(place, "verify backup", "the archive lists no entries",
                               "check that the DSN names the application database")
        digest = hashlib.sha256()
        with partial.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        publish_private(partial, target)
    return BackupResult(target, digest.hexdigest(), target.stat().st_size, entries)


def _run(argv: list[str], env: dict[str, str], timeout: float, place: str, step: str,
         secrets: list[str]) -> str:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise TargetError(f"PostgreSQL {place}: {step}: {argv[0]} not found: install the "
                          "PostgreSQL client tools") from None
    except subprocess.TimeoutExpired:
        raise TargetError(f"PostgreSQL {place}: {step}: timed out after {timeout:.0f}s: "
                          "raise the timeout or dump a smaller database") from None
    if done.returncode != 0:
        raise driver_error(
            place, step, f"exit code {done.returncode}",
            "check the DSN, the role's read privileges and that pg_dump is at least the "
            "server's major version",
            done.stderr.decode(errors="replace") or "no output", secrets,
        )
    return done.stdout.decode(errors="replace")
