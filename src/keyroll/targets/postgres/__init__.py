"""PostgreSQL as a rotation target (extra ``postgres``): see `keyroll.targets.postgres.roles`.

`roles` holds the alternating roles (`PostgresTarget`), `adopt` the adoption of an existing role,
`handover` what moves from a role to the owner (group) role and what is refused, `acting` the
admin acting as grantors with borrowed memberships, `privileges` the effective-privilege
introspection and its diff, `backup` the verified ``pg_dump``, `layout` the alternation's shape
and catalog helpers, `_driver` psycopg, its errors, identifier rules and DSN parsing.
"""

from keyroll.targets.postgres._driver import MAX_IDENTIFIER_BYTES as MAX_IDENTIFIER_BYTES
from keyroll.targets.postgres._driver import dbname as dbname
from keyroll.targets.postgres._driver import driver_error as driver_error
from keyroll.targets.postgres._driver import hint_for as hint_for
from keyroll.targets.postgres._driver import identifier_problem as identifier_problem
from keyroll.targets.postgres._driver import where as where
from keyroll.targets.postgres.adopt import AdoptResult as AdoptResult
from keyroll.targets.postgres.backup import BackupResult as BackupResult
from keyroll.targets.postgres.backup import backup as backup
from keyroll.targets.postgres.layout import RoleLayout as RoleLayout
from keyroll.targets.postgres.privileges import Privilege as Privilege
from keyroll.targets.postgres.privileges import PrivilegeDiff as PrivilegeDiff
from keyroll.targets.postgres.roles import PostgresTarget as PostgresTarget
from keyroll.targets.postgres.roles import RetireMode as RetireMode
from keyroll.targets.postgres.roles import RetireResult as RetireResult

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "AdoptResult",
    "BackupResult",
    "PostgresTarget",
    "Privilege",
    "PrivilegeDiff",
    "RetireMode",
    "RetireResult",
    "RoleLayout",
    "backup",
    "dbname",
    "driver_error",
    "hint_for",
    "identifier_problem",
    "where",
]
