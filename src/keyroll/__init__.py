"""keyroll: rotate secrets without downtime.

This package's top level is the runtime API applications import (key rings, key sources,
redaction, startup validation). It imports no rotation, CLI or dashboard code, so an app that
uses keyroll's key rings pulls in no server code (a test checks it).
"""

from keyroll.errors import InvalidToken as InvalidToken
from keyroll.errors import KeyrollError as KeyrollError
from keyroll.errors import SecretRejected as SecretRejected
from keyroll.errors import UsageError as UsageError
from keyroll.model import Label as Label
from keyroll.model import SecretRef as SecretRef
from keyroll.model import SecretValue as SecretValue
from keyroll.runtime import EnvKeySource as EnvKeySource
from keyroll.runtime import FieldCipher as FieldCipher
from keyroll.runtime import FileKeySource as FileKeySource
from keyroll.runtime import JWKSKeySource as JWKSKeySource
from keyroll.runtime import JWTKeyRing as JWTKeyRing
from keyroll.runtime import Key as Key
from keyroll.runtime import KeySet as KeySet
from keyroll.runtime import KeySource as KeySource
from keyroll.runtime import KidUsage as KidUsage
from keyroll.runtime import LazyKeySource as LazyKeySource
from keyroll.runtime import RedactingFilter as RedactingFilter
from keyroll.runtime import Redactor as Redactor
from keyroll.runtime import StaticKeySource as StaticKeySource
from keyroll.runtime import StoreKeySource as StoreKeySource
from keyroll.runtime import StructlogRedactor as StructlogRedactor
from keyroll.runtime import UsageCounter as UsageCounter
from keyroll.runtime import WebhookKeyRing as WebhookKeyRing
from keyroll.runtime import check_value as check_value
from keyroll.runtime import jwks_document as jwks_document
from keyroll.runtime import read_usage as read_usage
from keyroll.runtime import require as require
from keyroll.runtime import require_all as require_all
from keyroll.runtime import round_trip as round_trip

__all__ = [
    "EnvKeySource",
    "FieldCipher",
    "FileKeySource",
    "InvalidToken",
    "JWKSKeySource",
    "JWTKeyRing",
    "Key",
    "KeySet",
    "KeySource",
    "KeyrollError",
    "KidUsage",
    "Label",
    "LazyKeySource",
    "RedactingFilter",
    "Redactor",
    "SecretRef",
    "SecretRejected",
    "SecretValue",
    "StaticKeySource",
    "StoreKeySource",
    "StructlogRedactor",
    "UsageCounter",
    "UsageError",
    "WebhookKeyRing",
    "check_value",
    "jwks_document",
    "read_usage",
    "require",
    "require_all",
    "round_trip",
]
