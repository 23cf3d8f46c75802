"""The nouns of keyroll: secrets, versions, labels, values, fingerprints and key ids.

A *secret* is one (environment, class name) pair. It has numbered *versions*; three *labels*
(``current``, ``pending``, ``previous``) point at versions, each at most one. A value leaves the
store only through `SecretValue.reveal`, so a grep for ``reveal(`` finds every place that
touches raw material.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from keyroll._compat import UTC, StrEnum
from keyroll.errors import UsageError

__all__ = [
    "Kind",
    "Label",
    "SecretRef",
    "SecretValue",
    "Tier",
    "Version",
    "fingerprint",
    "format_kid",
    "new_kid",
    "parse_kid",
    "utcnow",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def utcnow() -> datetime:
    """The default clock: timezone-aware UTC now. Pass your own to freeze time in tests."""
    return datetime.now(UTC)


class Label(StrEnum):
    """Where a version stands. Each label points at most at one version of a secret."""

    CURRENT = "current"
    PENDING = "pending"
    PREVIOUS = "previous"


class Kind(StrEnum):
    """What a secret is for; decides the rotation strategy."""

    JWT_SIGNING = "jwt-signing"
    ENCRYPTION_KEY = "encryption-key"
    WEBHOOK_HMAC = "webhook-hmac"
    API_KEY = "api-key"
    POSTGRES_ROLE = "postgres-role"
    REDIS_ACL = "redis-acl"
    MYSQL_USER = "mysql-user"
    RABBITMQ_USER = "rabbitmq-user"
    PROVIDER_SHARED = "provider-shared"
    OPAQUE = "opaque"
    ISSUED_KEY = "issued-key"  # the provider issues and revokes it through commands
    AWS_IAM = "aws-iam"  # an IAM user's access key pair (boto3)
    TLS_CERTIFICATE = "tls-certificate"


class Tier(StrEnum):
    """Severity tier (seed 000 §1): how carefully a rotation must be rehearsed."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True, slots=True, order=True)
class SecretRef:
    """Identifies one secret: an environment and a class name from the inventory."""

    environment: str
    name: str

    def __post_init__(self) -> None:
        for what, text in (("environment", self.environment), ("class name", self.name)):
            if not _NAME.match(text):
                raise UsageError(
                    f"invalid {what} {text!r}: use 1-63 lowercase letters, digits, '-', '_' or "
                    "'.', starting with a letter or digit"
                )

    def __str__(self) -> str:
        return f"{self.environment}/{self.name}"


def fingerprint(value: str | bytes) -> str:
    """First 16 hex chars of SHA-256: the only form of a value that may be shown or logged.

    A PEM key pair (asymmetric JWT keys) is fingerprinted by its public key instead: the first
    16 hex chars of its RFC 7638 JWK thumbprint (`keyroll.jwk.pem_fingerprint`), the same for
    the private PEM, the public PEM and the published JWK, so it can be shown beside the kid.
    """
    text = value if isinstance(value, str) else value.decode("utf-8", "replace")
    if "-----BEGIN" in text[:80]:
        from keyroll.jwk import looks_like_pem_key, pem_fingerprint

        if looks_like_pem_key(text):
            by_public_key = pem_fingerprint(text)
            if by_public_key is not None:
                return by_public_key
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()[:16]


def new_kid() -> int:
    """A random 32-bit key id. Never derived from the value, so it reveals nothing about it."""
    return secrets.randbits(32)


def format_kid(kid: int) -> str:
    """The text form of a key id as it travels in JWT headers: 8 lowercase hex digits."""
    return f"{kid:08x}"


def parse_kid(text: str) -> int:
    """Inverse of `format_kid`. Raises ValueError on anything but 8 hex digits."""
    if len(text) != 8:
        raise ValueError("kid must be 8 hex digits")
    return int(text, 16)


class SecretValue:
    """A secret's raw value, wrapped so it does not leak by accident.

    ``repr``/``str`` show only the fingerprint; pickling is refused; equality is constant-time.
    The value comes out only through `reveal` (text) or `reveal_bytes`.
    """

    __slots__ = ("_fingerprint", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("SecretValue holds text; encode binary keys (base64) first")
        self._value = value
        self._fingerprint: str | None = None

    def reveal(self) -> str:
        """The raw value. Every call site is a place a secret leaves its wrapper."""
        return self._value

    def reveal_bytes(self) -> bytes:
        """The raw value as UTF-8 bytes."""
        return self._value.encode()

    @property
    def fingerprint(self) -> str:
        """`fingerprint` of the value (computed once: a key pair's needs its key parsed)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self._value)
        return self._fingerprint

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"SecretValue(fingerprint={self.fingerprint!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretValue):
            return NotImplemented
        return secrets.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretValue refuses to be pickled: it would copy a secret out")


@dataclass(frozen=True, slots=True)
class Version:
    """Metadata of one version of a secret. Holds no value.

    Attributes:
        number: 1, 2, 3 … in order of creation.
        kid: random 32-bit key id (`format_kid` for its text form).
        fingerprint: `fingerprint` of the value.
        created_at: when the version was stored (UTC).
        destroyed: the value was erased (retired for good); metadata stays for the audit.
        meta: non-secret annotations (generator, rotation id, source).
    """

    number: int
    kid: int
    fingerprint: str
    created_at: datetime
    destroyed: bool = False
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kid_hex(self) -> str:
        return format_kid(self.kid)
