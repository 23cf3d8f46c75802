"""An IAM user's access keys through boto3 (extra ``aws``): list, create, test with STS,
last use, deactivate, delete.

Every botocore error is translated here, once, into `TargetError` with AWS's error code and
message (which never hold a secret access key); nothing above this module sees a botocore
exception. boto3 is imported on first use, with the extra to install when it is missing.

The same calls serve any endpoint that implements the IAM and STS query APIs
(``endpoint_url``): moto in server mode in the tests, and S3-compatible stores whose admin API
is IAM's (see docs/providers.md for which are and are not).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keyroll._compat import UTC
from keyroll.errors import TargetError, UsageError
from keyroll.model import SecretValue

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_sts import STSClient

__all__ = ["AccessKey", "IamTarget", "QuotaFull"]

#: How many access keys IAM allows one user (the CIS two-key overlap needs both slots).
KEYS_PER_USER = 2


class QuotaFull(TargetError):
    """The user already holds as many access keys as IAM allows."""


@dataclass(frozen=True, slots=True)
class AccessKey:
    """One access key of the user, as IAM lists it (no secret)."""

    key_id: str
    active: bool
    created: datetime | None


_SESSION: list[Any] = []
#: IAM clients by (pid, region, endpoint, admin key id, admin secret's fingerprint): a forked
#: child builds its own instead of sharing its parent's sockets
_IAM_CLIENTS: dict[tuple[object, ...], Any] = {}


def _session() -> Any:
    """One boto3 session (it caches the service models, so each client after the first is
    cheap; it holds no connection, so a forked child may keep using it)."""
    if not _SESSION:
        try:
            import boto3
        except ImportError:
            raise UsageError("rotating aws-iam keys needs boto3: pip install "
                             "'keyroll[aws]'") from None
        _SESSION.append(boto3.session.Session())
    return _SESSION[0]


def _translate(exc: Exception, doing: str) -> TargetError:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "error"))
        message = str(error.get("Message", "")).replace("\n", " ")[:300]
        kind = QuotaFull if code == "LimitExceeded" else TargetError
        return kind(f"IAM {doing}: {code}: {message}")
    if isinstance(exc, BotoCoreError):
        return TargetError(f"IAM {doing}: {exc.__class__.__name__}: {str(exc)[:300]}")
    return TargetError(f"IAM {doing}: {exc.__class__.__name__}")


class IamTarget:
    """The access keys of one IAM user.

    Args:
        user: the IAM user whose keys rotate.
        region: the signing region (IAM is global; STS is called in this region).
        endpoint_url: the IAM endpoint (None: AWS's own); ``sts_endpoint_url`` likewise.
        admin_key_id, admin_secret: keyroll's own credentials for the IAM calls (None: the
            boto3 default chain: profile, instance or task role).
        timeout: connect and read timeout of every call, in seconds.
    """

    def __init__(self, user: str, *, region: str = "us-east-1", endpoint_url: str | None = None,
                 sts_endpoint_url: str | None = None, admin_key_id: str | None = None,
                 admin_secret: SecretValue | None = None, timeout: float = 20.0) -> None:
        self.user = user
        self.region = region
        self.endpoint_url = endpoint_url
        self.sts_endpoint_url = sts_endpoint_url or endpoint_url
        self._admin = (admin_key_id, admin_secret)
        self.timeout = timeout
        self._iam: IAMClient | None = None

    def _config(self) -> Any:
        from botocore.config import Config

        return Config(connect_timeout=self.timeout, read_timeout=self.timeout,
                      retries={"max_attempts": 3, "mode": "standard"})

    @property
    def iam(self) -> IAMClient:
        if self._iam is None:
            key_id, secret = self._admin
            cache = (os.getpid(), self.region, self.endpoint_url, key_id,
                     secret.fingerprint if secret is not None else None)
            if cache not in _IAM_CLIENTS:
                _IAM_CLIENTS[cache] = _session().client(
                    "iam", region_name=self.region, endpoint_url=self.endpoint_url,
                    aws_access_key_id=key_id,
                    aws_secret_access_key=secret.reveal() if secret is not None else None,
                    config=self._config())
            self._iam = _IAM_CLIENTS[cache]
        return self._iam

    def _sts(self, key_id: str, secret: SecretValue) -> STSClient:
        client: STSClient = _session().client(
            "sts", region_name=self.region, endpoint_url=self.sts_endpoint_url,
            aws_access_key_id=key_id, aws_secret_access_key=secret.reveal(),
            config=self._config())
        return client

    # --- reads ----------------------------------------------------------------------------

    def user_arn(self) -> str:
        try:
            return self.iam.get_user(UserName=self.user)["User"]["Arn"]
        except Exception as exc:  # noqa: BLE001  (translated once, here)
            raise _translate(exc, f"GetUser {self.user}") from None

    def access_keys(self) -> list[AccessKey]:
        try:
            listed = self.iam.list_access_keys(UserName=self.user)["AccessKeyMetadata"]
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc, f"ListAccessKeys {self.user}") from None
        return [AccessKey(k["AccessKeyId"], k.get("Status") == "Active", k.get("CreateDate"))
                for k in listed]

    def last_used(self, key_id: str) -> datetime | None:
        """When ``key_id`` last signed a request, as IAM reports it (None: never)."""
        try:
            reply = self.iam.get_access_key_last_used(AccessKeyId=key_id)
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc, f"GetAccessKeyLastUsed {key_id}") from None
        moment = reply.get("AccessKeyLastUsed", {}).get("LastUsedDate")
        if moment is None:
            return None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    def caller_arn(self, key_id: str, secret: SecretValue) -> str:
        """``sts get-caller-identity`` signed with this key pair: whom AWS takes it for."""
        try:
            return self._sts(key_id, secret).get_caller_identity()["Arn"]
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc, f"sts GetCallerIdentity with key {key_id}") from None

    # --- writes ---------------------------------------------------------------------------

    def create(self) -> tuple[str, SecretValue]:
        """A new access key: its id and its secret (returned once by IAM, never again).

        Raises:
            QuotaFull: the user already has two keys.
        """
        try:
            key = self.iam.create_access_key(UserName=self.user)["AccessKey"]
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc, f"CreateAccessKey {self.user}") from None
        return key["AccessKeyId"], SecretValue(key["SecretAccessKey"])

    def set_active(self, key_id: str, active: bool) -> None:
        try:
            self.iam.update_access_key(UserName=self.user, AccessKeyId=key_id,
                                       Status="Active" if active else "Inactive")
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc, f"UpdateAccessKey {key_id}") from None

    def delete(self, key_id: str) -> bool:
        """Delete a key; False if IAM no longer has it (deleted before: a rerun)."""
        if key_id not in {k.key_id for k in self.access_keys()}:
            return False
        try:
            self.iam.delete_access_key(UserName=self.user, AccessKeyId=key_id)
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc, f"DeleteAccessKey {key_id}") from None
        return True
