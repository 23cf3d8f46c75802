"""AWS IAM access keys (``aws-iam``, extra ``aws``): the two-key overlap of the CIS AWS
Foundations benchmark (rotate keys every 90 days; IAM allows two keys per user for it).

============ ==================================================================================
plan         the user holds the current key, active, and room for a second one (two keys
             already: refused in one line saying which to delete); the current pair passes
             ``sts get-caller-identity`` as that user
create       reconcile an earlier attempt (`_issuance`), record the intent, ``CreateAccessKey``
apply        nothing: the new key works as soon as IAM made it
test         ``sts get-caller-identity`` signed with the new pair answers the user's ARN
             (retried up to ``test_timeout``: IAM is eventually consistent)
overlap      the deadline; then until ``GetAccessKeyLastUsed`` of the old key is older than the
             overlap's start (or ``quiet``), ``overlap.max`` at most; then the old key is
             deactivated (``UpdateAccessKey Inactive``) and the overlap waits ``delete_after``
             more, the time to notice what broke and turn back
retire       ``DeleteAccessKey`` of the old key (deactivated first if it is still active)
incident     no overlap: deactivate and delete the old key at once
rollback     before promote: the new key is deleted; after promote (a rotation back) the old
             key is reactivated if it was deactivated, and the new one retires the same way
============ ==================================================================================

The pair is one credential and one version: the secret access key is the value (encrypted in
the store), the access key id its ``meta["key_id"]`` (an identifier, shown in evidence). The
class names two env vars, the id's first: ``["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]``.

Options (``[classes.<name>].options``)::

    user              the IAM user whose keys rotate (required)
    region            signing region (default us-east-1)
    endpoint_url      IAM endpoint (default AWS's; moto, or an IAM-compatible store)
    sts_endpoint_url  STS endpoint (default endpoint_url)
    admin_key_id_env  env vars holding keyroll's own credentials for the IAM calls (both or
    admin_secret_env  neither; default the boto3 chain: profile, instance or task role)
    delete_after      how long a deactivated key waits before it is deleted (default 7d)
    quiet             the old key counts as unused once its last use is this old
    test_timeout      how long test retries a new key IAM does not know yet (default 30s)
    last_used         false for an endpoint without GetAccessKeyLastUsed (Ceph RGW): the
                      overlap's deadline alone decides when the old key is deactivated
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keyroll.durations import parse_duration
from keyroll.errors import KeyrollError, RotationRefused, StepFailed, TargetError
from keyroll.inventory import SecretClass
from keyroll.issued import KEY_ID
from keyroll.model import Kind, SecretValue, Version
from keyroll.rotation.strategies import _issuance
from keyroll.rotation.strategies._options import env_name_option, option_error, text_option
from keyroll.rotation.strategies.base import StepContext, Strategy, Verdict
from keyroll.targets.aws_iam import KEYS_PER_USER, IamTarget

__all__ = ["AwsIamOptions", "AwsIamStrategy", "aws_options"]

_KNOWN = ("user", "region", "endpoint_url", "sts_endpoint_url", "admin_key_id_env",
          "admin_secret_env", "delete_after", "quiet", "test_timeout", "last_used")


@dataclass(frozen=True, slots=True)
class AwsIamOptions:
    """An ``aws-iam`` class's options, checked (see the module docstring)."""

    user: str
    region: str
    endpoint_url: str | None
    sts_endpoint_url: str | None
    admin_key_id_env: str | None
    admin_secret_env: str | None
    delete_after: timedelta
    quiet: timedelta | None
    test_timeout: timedelta
    last_used: bool = True


def _duration(cls: SecretClass, name: str, default: str | None) -> timedelta | None:
    raw = cls.options.get(name, default)
    if raw is None:
        return None
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise option_error(cls, name, str(exc)) from None
    if value > timedelta(days=365):
        raise option_error(cls, name, "at most 365d")
    return value


def aws_options(cls: SecretClass) -> AwsIamOptions:
    """The class's options, checked.

    Raises:
        UsageError: one line naming the class and the option.
    """
    unknown = sorted(set(cls.options) - set(_KNOWN))
    if unknown:
        raise option_error(cls, unknown[0], f"unknown option (known: {', '.join(_KNOWN)})")
    if len(cls.env_vars) != 2:
        raise option_error(cls, "env_vars", "an aws-iam class names two env vars, the access "
                           'key id first: ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]')
    user = text_option(cls, "user", required=True)
    assert user is not None
    region = text_option(cls, "region") or "us-east-1"
    urls = {}
    for name in ("endpoint_url", "sts_endpoint_url"):
        url = text_option(cls, name)
        if url is not None and not url.startswith(("http://", "https://")):
            raise option_error(cls, name, "an http:// or https:// URL")
        urls[name] = url
    key_env = env_name_option(cls, "admin_key_id_env")
    secret_env = env_name_option(cls, "admin_secret_env")
    if (key_env is None) != (secret_env is None):
        raise option_error(cls, "admin_key_id_env", "set both admin_key_id_env and "
                           "admin_secret_env, or neither (the boto3 default chain)")
    delete_after = _duration(cls, "delete_after", "7d")
    test_timeout = _duration(cls, "test_timeout", "30s")
    assert delete_after is not None
    assert test_timeout is not None
    last_used = cls.options.get("last_used", True)
    if not isinstance(last_used, bool):
        raise option_error(cls, "last_used", "true (ask GetAccessKeyLastUsed) or false (an "
                           "endpoint without it: the deadline alone decides)")
    return AwsIamOptions(user, region, urls["endpoint_url"], urls["sts_endpoint_url"], key_env,
                         secret_env, delete_after, _duration(cls, "quiet", None), test_timeout,
                         last_used)


def _key_id(version: Version | None) -> str | None:
    named = version.meta.get(KEY_ID) if version is not None else None
    return str(named) if named else None


def _deactivated_key(rotation: str) -> str:
    return f"aws-deactivated:{rotation}"


class AwsIamStrategy(Strategy):
    """An IAM user's access key pair, rotated through IAM's two-key overlap."""

    kind = Kind.AWS_IAM
    issues_value = True

    def validate(self, cls: SecretClass) -> None:
        aws_options(cls)

    @staticmethod
    def _target(ctx: StepContext, opts: AwsIamOptions) -> IamTarget:
        admin_id = admin_secret = None
        if opts.admin_key_id_env is not None and opts.admin_secret_env is not None:
            admin_id = os.environ.get(opts.admin_key_id_env)
            secret = os.environ.get(opts.admin_secret_env)
            if not admin_id or not secret:
                raise RotationRefused(
                    f"{ctx.ref}: env vars {opts.admin_key_id_env} and {opts.admin_secret_env} "
                    "(options.admin_key_id_env/admin_secret_env) must both be set where "
                    "keyroll runs: keyroll's own IAM credentials")
            admin_secret = SecretValue(secret)
        return IamTarget(opts.user, region=opts.region, endpoint_url=opts.endpoint_url,
                         sts_endpoint_url=opts.sts_endpoint_url, admin_key_id=admin_id,
                         admin_secret=admin_secret)

    @staticmethod
    def _tested(ctx: StepContext, target: IamTarget, key_id: str, secret: SecretValue,
                timeout: timedelta) -> str:
        """The pair authenticates as the user (retried while IAM propagates a new key)."""
        expected = target.user_arn()
        deadline = time.monotonic() + timeout.total_seconds()
        for attempt in range(60):
            try:
                arn = target.caller_arn(key_id, secret)
            except TargetError as exc:
                arn, problem = None, str(exc)
            else:
                if arn == expected:
                    return arn
                problem = f"it authenticates as {arn}, not as {expected}"
            if time.monotonic() >= deadline:
                break
            time.sleep(min(2.0, 0.2 * (attempt + 1)))
        raise StepFailed(f"{ctx.ref}: access key {key_id} does not pass sts "
                         f"get-caller-identity: {problem}")

    @staticmethod
    def _room(ctx: StepContext, target: IamTarget, opts: AwsIamOptions, keep: set[str]) -> None:
        keys = target.access_keys()
        if len(keys) >= KEYS_PER_USER:
            spare = [k for k in keys if k.key_id not in keep]
            which = spare[0].key_id if spare else keys[-1].key_id
            listed = ", ".join(f"{k.key_id} {'active' if k.active else 'inactive'}"
                               for k in keys)
            raise RotationRefused(
                f"{ctx.ref}: IAM user {opts.user!r} already has {len(keys)} access keys "
                f"({listed}) and IAM allows {KEYS_PER_USER}, so the overlap's second key "
                f"cannot be created: delete the one not in use (`aws iam delete-access-key "
                f"--user-name {opts.user} --access-key-id {which}`) and rotate again; nothing "
                "was changed")

    # steps --------------------------------------------------------------------------------

    def plan(self, ctx: StepContext) -> None:
        opts = aws_options(ctx.cls)
        target = self._target(ctx, opts)
        old_id = _key_id(ctx.old)
        if ctx.old is None or old_id is None:
            raise RotationRefused(
                f"{ctx.ref}: the current version has no access key id: import the pair with "
                f"`keyroll import` from a file that holds both {ctx.cls.env_vars[0]} and "
                f"{ctx.cls.env_vars[1]}")
        keys = {k.key_id: k for k in target.access_keys()}
        if old_id not in keys:
            raise RotationRefused(f"{ctx.ref}: IAM user {opts.user!r} has no access key "
                                  f"{old_id}: it was deleted outside keyroll; import the pair "
                                  "the app uses now before rotating")
        if not keys[old_id].active:
            raise RotationRefused(f"{ctx.ref}: the current access key {old_id} is inactive in "
                                  "IAM: reactivate it or import the pair the app uses now")
        self._room(ctx, target, opts, {old_id})
        arn = self._tested(ctx, target, old_id, ctx.value(ctx.old), timedelta(0))
        ctx.evidence["current"] = {"key_id": old_id, "arn": arn, "keys": len(keys)}

    def create(self, ctx: StepContext) -> SecretValue:
        opts = aws_options(ctx.cls)
        target = self._target(ctx, opts)
        old_id = _key_id(ctx.old)
        keep = {old_id} if old_id else set()
        previous = _issuance.read(ctx)
        if previous is not None:
            listed = {k.key_id for k in target.access_keys()}
            done = []
            for orphan in sorted(previous.orphans(listed, keep)):
                deleted = target.delete(orphan)
                done.append({"key_id": orphan, "outcome": "deleted" if deleted else "gone"})
            ctx.evidence["reconciled"] = done
        self._room(ctx, target, opts, keep)
        before = {k.key_id for k in target.access_keys()}
        intent = _issuance.begin(ctx, before, previous)
        key_id, secret = target.create()
        _issuance.issued(ctx, intent, key_id)
        ctx.state[KEY_ID] = key_id
        ctx.evidence["created"] = {"key_id": key_id, "user": opts.user,
                                   "attempt": intent.attempts}
        return secret

    def version_meta(self, ctx: StepContext) -> dict[str, Any]:
        key_id = ctx.state.get(KEY_ID)
        return {KEY_ID: key_id, "user": aws_options(ctx.cls).user} if key_id else {}

    def test(self, ctx: StepContext) -> None:
        opts = aws_options(ctx.cls)
        key_id = _key_id(ctx.new)
        if key_id is None:
            raise StepFailed(f"{ctx.ref}: the new version has no access key id")
        arn = self._tested(ctx, self._target(ctx, opts), key_id, ctx.value(ctx.new),
                           opts.test_timeout)
        ctx.evidence["checked"] = {"key_id": key_id, "sts_arn": arn}

    def overlap_done(self, ctx: StepContext, started: datetime) -> Verdict:
        if ctx.incident:
            return Verdict(True, "incident: no overlap (the old key is deleted at once)")
        opts = aws_options(ctx.cls)
        old_id = _key_id(ctx.old)
        marked = ctx.store.get_meta(_deactivated_key(ctx.rotation))
        if marked is not None:
            since = datetime.fromisoformat(marked)
            ends = since + opts.delete_after
            evidence = {"deactivated": old_id, "deactivated_at": marked}
            if ctx.now >= ends:
                return Verdict(True, f"key {old_id} inactive since {since:%Y-%m-%d %H:%M} UTC "
                               f"for {opts.delete_after}: deleting it", evidence)
            return Verdict(False, f"key {old_id} is inactive; it is deleted at "
                           f"{ends:%Y-%m-%d %H:%M} UTC (delete_after)", evidence)
        by_time = super().overlap_done(ctx, started)
        if not by_time.done or old_id is None:
            return by_time
        target = self._target(ctx, opts)
        if ctx.cls.overlap.until_unused and opts.last_used:
            try:
                last = target.last_used(old_id)
            except TargetError as exc:
                if ctx.now < started + ctx.cls.overlap.max:
                    return Verdict(False, f"{exc}; unknown is not unused, the overlap goes on "
                                   "(an endpoint without GetAccessKeyLastUsed: set "
                                   "options.last_used = false)")
            else:
                verdict = _issuance.usage_verdict(ctx, started, last, quiet=opts.quiet,
                                                  what=f"key {old_id}")
                if not verdict.done:
                    return verdict
        keys = {k.key_id: k for k in target.access_keys()}
        if old_id in keys and keys[old_id].active:
            target.set_active(old_id, False)
        ctx.store.put_meta(_deactivated_key(ctx.rotation), ctx.now.isoformat(), fence=ctx.fence)
        ctx.emit(f"old access key {old_id} deactivated; deleted after {opts.delete_after}")
        if opts.delete_after <= timedelta(0):
            return Verdict(True, f"key {old_id} deactivated: deleting it", {"deactivated": old_id})
        return Verdict(False, f"key {old_id} deactivated; it is deleted after "
                       f"{opts.delete_after} (delete_after)", {"deactivated": old_id})

    def retire(self, ctx: StepContext) -> None:
        opts = aws_options(ctx.cls)
        old_id = _key_id(ctx.old)
        if old_id is None:
            return
        target = self._target(ctx, opts)
        keys = {k.key_id: k for k in target.access_keys()}
        if old_id in keys and keys[old_id].active:
            target.set_active(old_id, False)
        deleted = target.delete(old_id)
        ctx.store.put_meta(_deactivated_key(ctx.rotation), None, fence=ctx.fence)
        _issuance.forget(ctx)
        ctx.evidence["deleted"] = {"key_id": old_id, "outcome": "deleted" if deleted else "gone"}

    def reinstate(self, ctx: StepContext) -> None:
        opts = aws_options(ctx.cls)
        keep = _key_id(ctx.new)
        if ctx.store.get_meta(_deactivated_key(ctx.rotation)) is not None:
            ctx.store.put_meta(_deactivated_key(ctx.rotation), None, fence=ctx.fence)
        if keep is None:
            return
        target = self._target(ctx, opts)
        keys = {k.key_id: k for k in target.access_keys()}
        if keep not in keys:
            raise StepFailed(f"{ctx.ref}: access key {keep} is already deleted; there is no "
                             "way back to it: rotate forward")
        if not keys[keep].active:
            target.set_active(keep, True)
            ctx.evidence["reactivated"] = keep

    def rollback(self, ctx: StepContext) -> None:
        opts = aws_options(ctx.cls)
        target = self._target(ctx, opts)
        old_id = _key_id(ctx.old)
        keep = {old_id} if old_id else set()
        listed = {k.key_id for k in target.access_keys()}
        doomed: set[str] = set()
        intent = _issuance.read(ctx)
        if intent is not None:
            doomed |= intent.orphans(listed, keep)
        for version in ctx.store.list_versions(ctx.ref):
            key_id = _key_id(version)
            if version.meta.get("rotation") == ctx.rotation and key_id and key_id not in keep:
                doomed.add(key_id)
        ctx.evidence["deleted_new"] = [
            {"key_id": k, "outcome": "deleted" if target.delete(k) else "gone"}
            for k in sorted(doomed)]
        _issuance.forget(ctx)

    def verify_current(self, ctx: StepContext, version: Version) -> dict[str, Any]:
        opts = aws_options(ctx.cls)
        key_id = _key_id(version)
        if key_id is None:
            raise StepFailed(f"{ctx.ref}: version {version.number} has no access key id")
        target = self._target(ctx, opts)
        try:
            keys = {k.key_id: k for k in target.access_keys()}
            if key_id not in keys or not keys[key_id].active:
                raise StepFailed(f"{ctx.ref}: access key {key_id} is "
                                 f"{'inactive' if key_id in keys else 'deleted'} in IAM")
            arn = self._tested(ctx, target, key_id, ctx.value(version), opts.test_timeout)
        except KeyrollError as exc:
            raise StepFailed(str(exc)) from None
        return {"sts": {"key_id": key_id, "arn": arn, "active": True}}
