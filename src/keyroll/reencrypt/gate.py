"""The retire gate's count: rows of a class's columns not yet under its current key.

The ``encryption-key`` strategy (`keyroll.rotation.strategies.encryption_key`) imports
`count_remaining` and refuses to retire the previous key until the count is 0; it puts
`RemainingCount.evidence` in the audit evidence. This module takes plain arguments and knows
nothing of the rotation engine.

It counts rows *not under the current kid* (the previous kid, older kids, legacy Fernet tokens,
malformed values), not just rows under ``old_kid``. That is the safe reading: if the DSN points
at the wrong environment's database, or rows sit under a kid nobody expected, the gate stays
shut instead of reporting 0 and letting a key go that data still needs. Decided from the
ciphertext headers alone; nothing is decrypted and no key is read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keyroll.inventory import EncryptionColumn
from keyroll.model import format_kid
from keyroll.reencrypt.connect import open_database
from keyroll.reencrypt.database import Database
from keyroll.reencrypt.headers import HeaderMatch

__all__ = ["RemainingCount", "count_remaining"]


@dataclass(frozen=True, slots=True)
class RemainingCount:
    """Rows not under the current kid, per column (``table.column``) and in all."""

    current_kid: int
    old_kid: int
    columns: dict[str, int]

    @property
    def total(self) -> int:
        """The sum over every column (0 lets retire proceed)."""
        return sum(self.columns.values())

    def evidence(self) -> dict[str, object]:
        """The audit evidence (kids in hex, counts per column)."""
        return {"current_kid": format_kid(self.current_kid), "old_kid": format_kid(self.old_kid),
                "columns": dict(self.columns)}


def count_remaining(
    columns: Sequence[EncryptionColumn],
    environment: str,
    *,
    current_kid: int,
    old_kid: int,
    environ: Mapping[str, str] | None = None,
) -> RemainingCount | None:
    """Rows in ``columns`` not under ``current_kid``.

    Args:
        columns: the class's ``columns`` (from the inventory).
        environment: whose DSN variables to read (`EncryptionColumn.dsn_var`).
        current_kid: the kid every row should be under.
        old_kid: the kid about to be retired (recorded in the evidence; see the module
            docstring for why every non-current row counts).
        environ: where the DSN variables are read (default ``os.environ``).

    Returns:
        The count, or None when there are no columns or a column's DSN variable is unset
        (the gate then cannot count and stays shut).

    Raises:
        UsageError: a table or column in the inventory does not exist.
        TargetError: a database cannot be reached.
    """
    if not columns:
        return None
    env = os.environ if environ is None else environ
    if any(not env.get(spec.dsn_var(environment)) for spec in columns):
        return None
    current = HeaderMatch.for_kid(current_kid)
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
    return RemainingCount(current_kid, old_kid, per_column)
