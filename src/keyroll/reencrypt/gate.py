"""The retire gate's count: rows of a class's columns not yet under its current key.

The ``encryption-key`` strategy (`keyroll.rotation.strategies.encryption_key`) imports
`count_remaining` and refuses to retire the previous key until it returns 0; the engine puts
the count in the audit evidence.

It counts rows *not under the current kid* (the previous kid, older kids, legacy Fernet tokens,
malformed values), not just rows under ``old_kid``. That is the safe reading: if the DSN points
at the wrong environment's database, or rows sit under a kid nobody expected, the gate stays
shut instead of reporting 0 and letting a key go that data still needs. Decided from the
ciphertext headers alone; nothing is decrypted and no key is read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from keyroll.errors import NotFound
from keyroll.model import Label, format_kid
from keyroll.reencrypt.database import Database, open_database
from keyroll.reencrypt.headers import HeaderMatch
from keyroll.rotation.strategies.base import StepContext

__all__ = ["count_remaining"]


def _current_kid(ctx: StepContext) -> int:
    labels = ctx.store.get_labels(ctx.ref)
    number = labels.get(Label.CURRENT)
    if number is not None:
        return ctx.store.get_version(ctx.ref, number).kid
    if ctx.new is not None:
        return ctx.new.kid
    raise NotFound(f"{ctx.ref} has no current version: nothing to count rows against")


def count_remaining(ctx: StepContext, old_kid: int, *,
                    environ: Mapping[str, str] | None = None) -> int | None:
    """Rows in the class's ``columns`` not under its current kid (0 lets retire proceed).

    Args:
        ctx: the rotation step (its class's ``columns``, its store).
        old_kid: the kid about to be retired (recorded in the evidence; see the module
            docstring for why every non-current row counts).
        environ: where the DSN variables are read (default ``os.environ``).

    Returns:
        The count, or None when the class has no columns or a column's DSN variable is unset
        (the gate then cannot count and stays shut).

    Raises:
        UsageError: a table or column in the inventory does not exist.
        TargetError: a database cannot be reached.
    """
    columns = ctx.cls.columns
    if not columns:
        return None
    env = os.environ if environ is None else environ
    environment = ctx.ref.environment
    if any(not env.get(spec.dsn_var(environment)) for spec in columns):
        return None
    current = HeaderMatch.for_kid(_current_kid(ctx))
    databases: dict[str, Database] = {}
    per_column: dict[str, int] = {}
    try:
        for spec in columns:
            var = spec.dsn_var(environment)
            db = databases.get(var)
            if db is None:
                db = databases[var] = open_database(env[var], env_var=var)
            column = db.resolve(spec.table, spec.key, spec.column)
            per_column[column.label] = db.count_stale(column, current)
    finally:
        for db in databases.values():
            db.close()
    total = sum(per_column.values())
    ctx.evidence["reencrypt_remaining"] = {
        "current_kid": current.kid_hex, "old_kid": format_kid(old_kid), "columns": per_column,
    }
    return total
