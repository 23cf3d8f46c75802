"""One strategy per kind of secret, behind the step contract in `base`.

Strategies for kinds that talk to servers (PostgreSQL, Redis) import their drivers lazily, so a
rotation of a JWT key needs neither psycopg nor redis installed.
"""

from __future__ import annotations

from importlib import import_module

from keyroll.model import Kind
from keyroll.rotation.strategies.base import ManualStep as ManualStep
from keyroll.rotation.strategies.base import StepContext as StepContext
from keyroll.rotation.strategies.base import Strategy as Strategy
from keyroll.rotation.strategies.base import Verdict as Verdict

__all__ = ["ManualStep", "StepContext", "Strategy", "Verdict", "strategy_for"]

_BY_KIND: dict[Kind, tuple[str, str]] = {
    Kind.JWT_SIGNING: ("signing_key", "JWTSigningStrategy"),
    Kind.WEBHOOK_HMAC: ("signing_key", "WebhookStrategy"),
    Kind.API_KEY: ("signing_key", "ApiKeyStrategy"),
    Kind.OPAQUE: ("signing_key", "OpaqueStrategy"),
    Kind.ENCRYPTION_KEY: ("encryption_key", "EncryptionKeyStrategy"),
    Kind.PROVIDER_SHARED: ("provider_shared", "ProviderSharedStrategy"),
    Kind.POSTGRES_ROLE: ("postgres_role", "PostgresRoleStrategy"),
    Kind.REDIS_ACL: ("redis_acl", "RedisAclStrategy"),
    Kind.MYSQL_USER: ("mysql_user", "MySQLUserStrategy"),
    Kind.ISSUED_KEY: ("issued_key", "IssuedKeyStrategy"),
    Kind.AWS_IAM: ("aws_iam", "AwsIamStrategy"),
    Kind.TLS_CERTIFICATE: ("tls_certificate", "TlsCertificateStrategy"),
    Kind.RABBITMQ_USER: ("rabbitmq_user", "RabbitMQUserStrategy"),
}


def strategy_for(kind: Kind) -> Strategy:
    """A fresh strategy for a kind.

    Raises:
        UsageError: the kind's strategy is not available in this installation.
    """
    from keyroll.errors import UsageError

    module_name, class_name = _BY_KIND[kind]
    try:
        module = import_module(f"keyroll.rotation.strategies.{module_name}")
    except ImportError as exc:
        raise UsageError(
            f"rotating {kind.value} secrets needs {exc.name}: pip install 'keyroll[all]'"
        ) from None
    strategy: Strategy = getattr(module, class_name)()
    return strategy
