"""Credentials a provider issues (``issued-key``, ``aws-iam``): the vocabulary every layer
shares.

- The provider's **key id** (an AWS access key id, an OpenAI service account id, a MinIO
  access key) is a public identifier, not a secret: it is kept in the version's ``meta`` under
  `KEY_ID`, shown in evidence, and needed to revoke the key or ask when it was last used.
- A class may deliver it as one of its env vars (`id_var_of`): an AWS key pair is one
  credential, one version (the secret access key is the value), rendered as two variables.
- `local_provider_credentials` finds classes that *generate* locally what a provider issues
  (an ``api-key`` named ``MINIO_ACCESS_KEY``): rotating one would write a value the provider
  never heard of. ``keyroll inventory check`` warns about each.
"""

from __future__ import annotations

import fnmatch

from keyroll.inventory import Inventory, SecretClass
from keyroll.model import Kind

__all__ = ["KEY_ID", "PROVIDER_PATTERNS", "id_var_of", "local_provider_credentials"]

#: The version meta field holding the provider's key id.
KEY_ID = "key_id"

#: Env var names that are, by convention, credentials a provider issues.
PROVIDER_PATTERNS = (
    "*_ACCESS_KEY*", "*ACCESS_KEY_ID", "*_SECRET_ACCESS_KEY", "*_CLIENT_SECRET", "*_APP_SECRET",
    "AWS_*", "MINIO_*", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "STRIPE_*", "GITHUB_TOKEN",
    "GH_TOKEN", "GITLAB_TOKEN", "SLACK_BOT_TOKEN", "SLACK_*_TOKEN", "TWILIO_AUTH_TOKEN",
    "SENDGRID_API_KEY", "MAILGUN_API_KEY", "*_OA_ACCESS_TOKEN",
)
_LOCAL = (Kind.API_KEY, Kind.OPAQUE)


def id_var_of(cls: SecretClass) -> str | None:
    """The env var of ``cls`` fed the version's key id instead of its value, or None.

    ``aws-iam`` classes name two variables, the access key id first; ``issued-key`` classes
    pick one with ``options.id_var``.
    """
    if cls.kind is Kind.AWS_IAM:
        return cls.env_vars[0] if len(cls.env_vars) == 2 else None
    if cls.kind is Kind.ISSUED_KEY:
        named = cls.options.get("id_var")
        return named if isinstance(named, str) and named in cls.env_vars else None
    return None


def local_provider_credentials(inventory: Inventory) -> list[str]:
    """One warning per class that generates locally a value whose env var names a provider's
    credential (what to change is in the message)."""
    found = []
    for cls in inventory.classes.values():
        if cls.kind not in _LOCAL or cls.generator is None:
            continue
        named = [v for v in cls.env_vars
                 if any(fnmatch.fnmatchcase(v, p) for p in PROVIDER_PATTERNS)]
        if named:
            found.append(
                f"class {cls.name!r} ({cls.kind.value}) generates {', '.join(named)} locally, "
                "but that name is a credential a provider issues: rotating it would write a "
                "value the provider never heard of. Use kind issued-key (the provider's CLI or "
                "API issues and revokes), aws-iam, or provider-shared (a person enters it); "
                "see docs/providers.md")
    return found
