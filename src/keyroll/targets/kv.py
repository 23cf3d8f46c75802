"""OpenBao/Vault KV v2 in the env-var layout, for External Secrets and the Vault Secrets Operator.

`write_layout` replaces one KV v2 entry with exactly the variables an app reads
(``JWT_SECRET``, ``JWT_SECRET_KID``, during a rotation ``JWT_SECRET_NEXT``, during the overlap
``JWT_SECRET_PREVIOUS``), so an ``ExternalSecret`` with ``dataFrom: [{extract: {key: …}}]``
syncs a Kubernetes Secret that is right at every step. keyroll owns the entry: it is
rewritten whole (a new KV version) at every deploy step, and its custom metadata names the
rotation and the fingerprints, never a value. Through hvac (extra ``openbao``), imported on
first use; hvac's errors are translated here into one-line `TargetError`s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from keyroll.errors import TargetError, UsageError

__all__ = ["connect", "read_layout", "write_layout"]


def connect(url: str | None, token_env: str | None) -> Any:
    """An hvac client for ``url`` (default ``BAO_ADDR``/``VAULT_ADDR``) with the token from
    ``token_env`` (default ``BAO_TOKEN``/``VAULT_TOKEN``)."""
    try:
        import hvac
    except ImportError:
        raise UsageError("kv_delivery needs hvac: pip install 'keyroll[openbao]'") from None
    address = url or os.environ.get("BAO_ADDR") or os.environ.get("VAULT_ADDR")
    if not address:
        raise UsageError("kv_delivery: no server: set url in the hook, or BAO_ADDR")
    names = [token_env] if token_env else ["BAO_TOKEN", "VAULT_TOKEN"]
    token = next((os.environ[n] for n in names if os.environ.get(n)), None)
    if not token:
        raise UsageError(f"kv_delivery: no token: set {' or '.join(names)}")
    return hvac.Client(url=address, token=token, timeout=30)


def _error(exc: Exception, what: str) -> TargetError:
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None),
                                                          "status_code", None)
    code = f"HTTP {status}: " if status else ""
    hint = {403: "the token's policy must allow create/update on this path",
            404: "no KV v2 engine at this mount"}.get(status or 0, type(exc).__name__)
    return TargetError(f"{what}: {code}{hint}")


def write_layout(client: Any, mount: str, path: str, values: Mapping[str, str],
                 metadata: Mapping[str, str]) -> int:
    """Replace the entry with ``values``; return its new KV version."""
    import hvac.exceptions
    import requests

    try:
        reply = client.secrets.kv.v2.create_or_update_secret(
            path=path, secret=dict(values), mount_point=mount)
        client.secrets.kv.v2.update_metadata(path=path, mount_point=mount,
                                             custom_metadata=dict(metadata))
    except (hvac.exceptions.VaultError, requests.RequestException) as exc:
        raise _error(exc, f"write KV {mount}/{path}") from None
    return int(reply["data"]["version"])


def read_layout(client: Any, mount: str, path: str) -> dict[str, str]:
    """The entry's current values (for checks and tests)."""
    import hvac.exceptions
    import requests

    try:
        reply = client.secrets.kv.v2.read_secret_version(path=path, mount_point=mount,
                                                         raise_on_deleted_version=True)
    except (hvac.exceptions.VaultError, requests.RequestException) as exc:
        raise _error(exc, f"read KV {mount}/{path}") from None
    return {str(k): str(v) for k, v in reply["data"]["data"].items()}
