"""The runtime library applications import: key sources, key rings, redaction, validation.

Imports no rotation, CLI or dashboard code (a test checks the import graph). The
pydantic-settings integration (`keyroll.runtime.settings`), the SQLAlchemy types
(`keyroll.runtime.sqlalchemy`) and the Starlette JWKS endpoint (`keyroll.runtime.jwks_starlette`)
are separate modules, imported only by apps that use them.
"""

from keyroll.runtime.fields import FieldCipher as FieldCipher
from keyroll.runtime.filesource import FileKeySource as FileKeySource
from keyroll.runtime.jwks import jwks_document as jwks_document
from keyroll.runtime.jwks_source import JWKSKeySource as JWKSKeySource
from keyroll.runtime.jwt import JWTKeyRing as JWTKeyRing
from keyroll.runtime.keysource import EnvKeySource as EnvKeySource
from keyroll.runtime.keysource import Key as Key
from keyroll.runtime.keysource import KeySet as KeySet
from keyroll.runtime.keysource import KeySource as KeySource
from keyroll.runtime.keysource import LazyKeySource as LazyKeySource
from keyroll.runtime.keysource import StaticKeySource as StaticKeySource
from keyroll.runtime.keysource import StoreKeySource as StoreKeySource
from keyroll.runtime.redaction import RedactingFilter as RedactingFilter
from keyroll.runtime.redaction import Redactor as Redactor
from keyroll.runtime.redaction import StructlogRedactor as StructlogRedactor
from keyroll.runtime.selftest import round_trip as round_trip
from keyroll.runtime.startup import check_value as check_value
from keyroll.runtime.startup import require as require
from keyroll.runtime.startup import require_all as require_all
from keyroll.runtime.usage import KidUsage as KidUsage
from keyroll.runtime.usage import UsageCounter as UsageCounter
from keyroll.runtime.usage import read_usage as read_usage
from keyroll.runtime.webhooks import WebhookKeyRing as WebhookKeyRing

__all__ = [
    "EnvKeySource",
    "FieldCipher",
    "FileKeySource",
    "JWKSKeySource",
    "JWTKeyRing",
    "Key",
    "KeySet",
    "KeySource",
    "KidUsage",
    "LazyKeySource",
    "RedactingFilter",
    "Redactor",
    "StaticKeySource",
    "StoreKeySource",
    "StructlogRedactor",
    "UsageCounter",
    "WebhookKeyRing",
    "check_value",
    "jwks_document",
    "read_usage",
    "require",
    "require_all",
    "round_trip",
]
