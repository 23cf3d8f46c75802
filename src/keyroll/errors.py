"""Every error keyroll raises, under one root.

Messages say what happened and what to do. They carry context (secret, environment, step,
backend, file, field) and never a secret value: an exception may end up in a log line, a CLI
message or an HTTP response.

The tree::

    KeyrollError
    ├── UsageError                 bad input from a person: exit code 2, nothing changed
    │   ├── InventoryError         keyroll.toml is missing, unreadable or invalid
    │   ├── MasterKeyError         KEYROLL_MASTER_KEY / key file missing, malformed or wrong
    │   └── UnknownSecret          a class or environment the inventory does not define
    ├── StoreError                 the secret store failed or refused
    │   ├── StoreUnavailable       the backend cannot be reached or is busy; retry (a step pauses)
    │   ├── StoreForbidden         the backend refused the credentials for a path, or is read-only
    │   ├── NotFound               a secret, version or rotation that does not exist
    │   ├── Conflict               a compare-and-set lost: someone else changed it first
    │   │   ├── LockHeld           another rotation holds the per-secret lock
    │   │   └── LeaseLost          this process lost its lock (paused past it): it stops
    │   └── StoreCorrupted         a stored value fails authentication (wrong key, moved row)
    ├── AuditTampered              the journal's hash chain is broken
    ├── InvalidToken               a token, ciphertext or signature failed verification
    ├── SecretRejected             startup validation refused a secret (names rule, not value)
    ├── RotationError              a rotation cannot proceed
    │   ├── RotationRefused        preflight said no (approval missing, gate closed, …)
    │   └── StepFailed             a step's side effect failed; the engine rolls back
    ├── TargetError                a target failed: PostgreSQL, PgBouncer, Redis, MySQL/MariaDB,
    │   │                          RabbitMQ, AWS IAM, an ACME CA, a provider command, a
    │   │                          re-encryption database
    │   ├── RoleMissing            the PostgreSQL role a step acts on does not exist
    │   └── QuotaFull              AWS IAM: the user already has its two access keys
    │                              (`keyroll.targets.aws_iam`)
    └── HookFailed                 an inventory hook exited non-zero or timed out

`UsageError` subclasses (and a few others a person can fix at once, such as `LockHeld`) have
``exit_code = 2``: the CLI prints the one-line message and exits 2 without a traceback.
"""

from __future__ import annotations

import jwt as _pyjwt

__all__ = [
    "AuditTampered",
    "Conflict",
    "HookFailed",
    "InvalidToken",
    "InventoryError",
    "KeyrollError",
    "LeaseLost",
    "LockHeld",
    "MasterKeyError",
    "NotFound",
    "RoleMissing",
    "RotationError",
    "RotationRefused",
    "SecretRejected",
    "StepFailed",
    "StoreCorrupted",
    "StoreError",
    "StoreForbidden",
    "StoreUnavailable",
    "TargetError",
    "UnknownSecret",
    "UsageError",
]


class KeyrollError(Exception):
    """Root of every error keyroll raises on purpose.

    Attributes:
        exit_code: what the CLI exits with when this error ends a command.
    """

    exit_code: int = 1


class UsageError(KeyrollError):
    """Bad input from a person (arguments, files, environment). Nothing was changed."""

    exit_code = 2


class InventoryError(UsageError):
    """Raised when keyroll.toml is missing, not TOML, or fails validation.

    The message names the file, the class and the field, and what is allowed.
    """


class MasterKeyError(UsageError):
    """Raised when the local store's master key is missing, unreadable or malformed, or does not
    open the store (its key-check value): a wrong key is refused before anything is written."""


class UnknownSecret(UsageError):
    """Raised when a command names a class or environment the inventory does not define."""


class StoreError(KeyrollError):
    """Raised when the secret store fails or refuses an operation."""


class StoreUnavailable(StoreError):
    """Raised when the store cannot be reached. Safe to retry: nothing was changed."""


class StoreForbidden(StoreError):
    """Raised when the store refuses the credentials for a path (names the path)."""

    exit_code = 2


class NotFound(StoreError):
    """Raised when a secret, version, label or rotation does not exist."""

    exit_code = 2


class Conflict(StoreError):
    """Raised when a compare-and-set loses: the state changed since it was read."""


class LockHeld(Conflict):
    """Raised when another rotation holds the per-secret lock."""

    exit_code = 2


class LeaseLost(Conflict):
    """Raised when this process no longer holds the lock it worked under: it was paused (or
    cut off) past the lease and another process took the rotation over. The process stops and
    writes nothing more; the rotation goes on in the process that holds the lock now."""


class StoreCorrupted(StoreError):
    """Raised when a stored ciphertext fails authentication.

    Either the master key is wrong, or a row was edited or moved to another secret or version.
    """


class AuditTampered(KeyrollError):
    """Raised when the audit journal's hash chain does not verify."""


class InvalidToken(KeyrollError, _pyjwt.InvalidTokenError):
    """Raised when a token, ciphertext or webhook signature fails verification.

    Deliberately one type with one message: the caller cannot tell which check failed
    (unknown key id, bad signature, expired, malformed), as with Fernet's ``InvalidToken``.
    It is also a PyJWT ``jwt.InvalidTokenError``, so an app's existing
    ``except jwt.InvalidTokenError`` turns a bad token into a 401, not a 500.
    """


class SecretRejected(KeyrollError):
    """Raised by startup validation. Names the variable and the rule, never the value."""

    exit_code = 2


class RotationError(KeyrollError):
    """Raised when a rotation cannot proceed."""


class RotationRefused(RotationError):
    """Raised by preflight or a gate: approval missing, rotation in flight, data remaining."""

    exit_code = 2


class StepFailed(RotationError):
    """Raised when a step's side effect failed. Before promote the engine rolls back."""


class TargetError(KeyrollError):
    """Raised when the rotation target (database, cache, provider) fails or refuses."""


class RoleMissing(TargetError):
    """Raised when the PostgreSQL role a target step acts on does not exist.

    Typed so that a caller for which a missing role means "already done" (a retire rerun after
    a crash in ``drop`` mode, a rollback before the layout existed) tests the type, not a text.
    """


class HookFailed(KeyrollError):
    """Raised when an inventory hook exits non-zero, times out or gets the wrong HTTP status."""
