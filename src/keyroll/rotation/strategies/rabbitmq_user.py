"""RabbitMQ passwords rotated by alternating two users, through the management HTTP API.

RabbitMQ keeps one password per user and checks it only when a connection opens: changing it
under running clients fails their next connection. So two users (``<user>_a``/``<user>_b`` or
``users``) alternate, like PostgreSQL's login roles (`postgres_role`): the store's value is the
password of the *active* one and the version's ``meta["role"]`` names it (``render`` builds
``AMQP_URL`` from ``options.app_url``). Each rotation gives the *idle* user a fresh password:

============ ==================================================================================
plan         the admin credential works and is an administrator; an AMQP login with the current
             credential (refuse otherwise: nothing is changed)
apply        the idle user gets the new password (a salted hash computed by keyroll) and the
             active user's tags; then exactly the active user's permissions and topic
             permissions, per vhost, and its user limits (grants it had beyond them are
             removed)
test         an AMQP connection as the idle user to ``amqp_url``'s vhost; its tags,
             permissions, topic permissions and limits compared with the active user's: any
             difference fails the step (and rolls back), listed in the error
overlap      the deadline, then no connection of the old user for ``overlap.settle``
             (``GET /api/connections/username/{user}``: the broker's connection tracking)
retire       the old user's password is reset to a random value that is not stored (its
             fingerprint is evidence); the user keeps its tags and grants
incident     no overlap; retire as above, then every connection of the old user is closed
rollback     the idle user's password is reset the same way; the active user is never touched
============ ==================================================================================

Why retire resets the password rather than clearing the permissions: the retired password must
stop *authenticating*, everywhere the user can log in (AMQP, the management API and its HTTP
basic auth for tagged users, MQTT/STOMP plugins); a user without permissions still logs in to
the management API and its login still proves the password. An unknown password also leaves
the user a ready alternate with its grants in place, so nothing has to be re-granted at the next
rotation, and it is what the PostgreSQL strategy does (``break-glass``). Deleting the user
would close its connections at once, which the overlap exists to avoid.

A rollback after promote is a rotation back (`Direction.BACK`): ``ctx.old`` is the user that
retires, ``ctx.new`` the one that stays; the same overlap waits for the rolled-back user's
connections before its password is reset.

Admin credentials come from an environment variable named in the options, never from the
inventory. Options (``[classes.<name>].options``)::

    admin_url_env   env var: http://ADMIN:PASSWORD@HOST:15672 (https:// for TLS), the
                    management API with a user tagged administrator (required)
    amqp_url        where the AMQP test logins go, without credentials:
                    amqp://HOST:5672/VHOST (amqps:// for TLS); default: the admin URL's host,
                    port 5672, vhost /
    user            the base name of the pair (required)
    users           the two user names (default <user>_a, <user>_b)
    app_url         the URL apps read, with {role} and {password} (render only)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from keyroll.errors import RotationRefused, StepFailed, TargetError
from keyroll.generate import generate
from keyroll.inventory import SecretClass
from keyroll.model import Kind, Version
from keyroll.render import check_template
from keyroll.rotation.strategies._alternating import account_of, old_and_new, other
from keyroll.rotation.strategies._options import env_name_option, option_error, text_option
from keyroll.rotation.strategies._settle import forget_quiet, settled
from keyroll.rotation.strategies.base import StepContext, Strategy, Verdict
from keyroll.targets.rabbitmq import (
    ADMIN_URL_SHAPE,
    AMQP_URL_SHAPE,
    AmqpEndpoint,
    RabbitMQTarget,
    parse_admin_url,
    parse_amqp_url,
)

__all__ = ["RabbitMQUserOptions", "RabbitMQUserStrategy", "rabbitmq_options", "rabbitmq_target"]

_KNOWN = ("admin_url_env", "amqp_url", "user", "users", "app_url")


@dataclass(frozen=True, slots=True)
class RabbitMQUserOptions:
    """A ``rabbitmq-user`` class's options, checked (see the module docstring for each)."""

    admin_url_env: str
    amqp: AmqpEndpoint | None
    user: str
    users: tuple[str, str]

    def other(self, user: str) -> str:
        """The alternating user that is not ``user``."""
        return other(self.users, user)


def _user_name(cls: SecretClass, name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 255 \
            or any(ord(ch) < 33 for ch in value):
        raise option_error(cls, name, "user names must be non-empty, at most 255 characters, "
                           "without spaces or control characters")
    return value


def rabbitmq_options(cls: SecretClass) -> RabbitMQUserOptions:
    """The class's options, checked.

    Raises:
        UsageError: one line naming the class and the field.
    """
    unknown = sorted(set(cls.options) - set(_KNOWN))
    if unknown:
        raise option_error(cls, unknown[0], f"unknown option (known: {', '.join(_KNOWN)})")
    env = env_name_option(cls, "admin_url_env", required=True)
    assert env is not None
    user = _user_name(cls, "user", cls.options.get("user"))
    users_opt = cls.options.get("users")
    if users_opt is None:
        users = (f"{user}_a", f"{user}_b")
    elif isinstance(users_opt, list) and len(users_opt) == 2:
        users = (_user_name(cls, "users", users_opt[0]), _user_name(cls, "users", users_opt[1]))
    else:
        raise option_error(cls, "users", 'give exactly two user names, e.g. ["app_a", "app_b"]')
    if users[0] == users[1]:
        raise option_error(cls, "users", "the two users must differ")
    amqp_text = text_option(cls, "amqp_url")
    amqp = None
    if amqp_text is not None:
        amqp = parse_amqp_url(amqp_text)
        if amqp is None:
            # not echoed: a URL with a password pasted here by mistake must not be shown
            raise option_error(cls, "amqp_url", f"must be {AMQP_URL_SHAPE} (its text is not "
                               "shown)")
    template = text_option(cls, "app_url")
    problem = check_template(template) if template is not None else None
    if problem is not None:
        raise option_error(cls, "app_url", problem)
    return RabbitMQUserOptions(env, amqp, user, users)


def rabbitmq_target(url: str, amqp: AmqpEndpoint | None, *, what: str) -> RabbitMQTarget:
    """A `RabbitMQTarget` from the admin URL (`ADMIN_URL_SHAPE`) and the AMQP endpoint
    (default: the admin URL's host, port 5672, vhost ``/``).

    Raises:
        RotationRefused: the URL is malformed (its text, which holds a password, is not shown).
    """
    parsed = parse_admin_url(url)
    if parsed is None:
        raise RotationRefused(f"{what} must be {ADMIN_URL_SHAPE} (its text is not shown)")
    base, admin_user, password = parsed
    if amqp is None:
        host = urlsplit(base).hostname or "localhost"
        amqp = AmqpEndpoint(host, 5672, "/", tls=False)
    return RabbitMQTarget(base, admin_user=admin_user, admin_password=password, amqp=amqp)


class RabbitMQUserStrategy(Strategy):
    """Two alternating RabbitMQ users with the same tags and grants."""

    kind = Kind.RABBITMQ_USER

    def validate(self, cls: SecretClass) -> None:
        rabbitmq_options(cls)

    # helpers -------------------------------------------------------------------------------

    @staticmethod
    def _target(ctx: StepContext, opts: RabbitMQUserOptions) -> RabbitMQTarget:
        url = os.environ.get(opts.admin_url_env)
        if not url:
            raise RotationRefused(f"{ctx.ref}: env var {opts.admin_url_env} "
                                  "(options.admin_url_env) is not set: export the management "
                                  "API URL where keyroll runs (it is read from the "
                                  "environment, never the inventory)")
        return rabbitmq_target(url, opts.amqp, what=f"{ctx.ref}: env var {opts.admin_url_env}")

    @staticmethod
    def _user_of(version: Version | None, opts: RabbitMQUserOptions, ref: object) -> str:
        """The user a version's password belongs to (``meta["role"]``; else the first)."""
        return account_of(version, opts.users, ref, hint="set users to the user apps log in "
                          "as today and its alternate")

    def _users(self, ctx: StepContext, opts: RabbitMQUserOptions) -> tuple[str, str]:
        """(old, new): the user that retires and the one whose password is (or becomes)
        current. In a rotation back, old is the rolled-back user."""
        return old_and_new(ctx.new, opts.users, self._user_of(ctx.old, opts, ctx.ref), ctx.ref)

    @staticmethod
    def _break_glass(target: RabbitMQTarget, user: str) -> str | None:
        """Reset ``user``'s password to a random value nobody keeps; its fingerprint, or None
        when the user does not exist (a rollback before apply created it)."""
        if not target.user_exists(user):
            return None
        grants = target.grants_of(user)
        unknown = generate("password-32")
        target.set_password(user, unknown, grants.tags, algorithm=target.hashing_algorithm(user))
        return unknown.fingerprint

    # steps ---------------------------------------------------------------------------------

    def plan(self, ctx: StepContext) -> None:
        opts = rabbitmq_options(ctx.cls)
        user = self._user_of(ctx.old, opts, ctx.ref)
        number = ctx.old.number if ctx.old is not None else "?"
        with self._target(ctx, opts) as target:
            target.check_admin()
            try:
                target.check_login(user, ctx.value(ctx.old))
            except TargetError as exc:
                raise RotationRefused(
                    f"{ctx.ref}: the current password (version {number}, user {user!r}) does "
                    f"not log in, so the rotation did not start and nothing was changed: {exc}"
                ) from None
            ctx.evidence["login"] = {"user": user, "amqp": str(target.amqp), "auth": "ok"}
            ctx.evidence["idle_user"] = {"user": opts.other(user),
                                         "exists": target.user_exists(opts.other(user))}

    def version_meta(self, ctx: StepContext) -> dict[str, Any]:
        opts = rabbitmq_options(ctx.cls)
        return {"role": opts.other(self._user_of(ctx.old, opts, ctx.ref))}

    def apply(self, ctx: StepContext) -> None:
        opts = rabbitmq_options(ctx.cls)
        old, new = self._users(ctx, opts)
        with self._target(ctx, opts) as target:
            source = target.grants_of(old)
            target.set_password(new, ctx.value(ctx.new), source.tags,
                                algorithm=target.hashing_algorithm(old))
            copied = target.mirror(old, new)
        ctx.evidence["applied"] = {
            "user": new, "password": "salted hash (computed by keyroll)",
            "tags": list(copied.tags), "permissions": len(copied.permissions),
            "topic_permissions": len(copied.topic_permissions),
            "limits": dict(copied.limits), "copied_from": old,
        }

    def test(self, ctx: StepContext) -> None:
        opts = rabbitmq_options(ctx.cls)
        old, new = self._users(ctx, opts)
        with self._target(ctx, opts) as target:
            target.check_login(new, ctx.value(ctx.new))
            differences = target.grants_of(old).diff(target.grants_of(new), old, new)
        if differences:
            raise StepFailed(f"{ctx.ref}: user {new!r} does not have the grants of {old!r}: "
                             + "; ".join(differences))
        ctx.evidence["checked"] = {"user": new, "amqp": str(target.amqp), "auth": "ok",
                                   "grants": f"equal to {old!r} (tags, permissions, topic "
                                             "permissions, limits)"}

    def overlap_done(self, ctx: StepContext, started: datetime) -> Verdict:
        if ctx.incident:
            return Verdict(True, "incident: no overlap (the old user's connections are closed "
                           "after retire)")
        by_time = super().overlap_done(ctx, started)
        if not by_time.done or not ctx.cls.overlap.until_unused:
            return by_time
        opts = rabbitmq_options(ctx.cls)
        old, _ = self._users(ctx, opts)
        with self._target(ctx, opts) as target:
            count = target.connection_count(old)
        return settled(ctx, what=f"user {old!r}", count=count, started=started)

    def retire(self, ctx: StepContext) -> None:
        opts = rabbitmq_options(ctx.cls)
        old, _ = self._users(ctx, opts)
        with self._target(ctx, opts) as target:
            fingerprint = self._break_glass(target, old)
        forget_quiet(ctx)
        ctx.evidence["retired_user"] = {
            "user": old, "action": "password reset to an unstored random value; tags and "
                                   "grants kept" if fingerprint else "user absent",
            "break_glass_fingerprint": fingerprint,
        }

    def revoke(self, ctx: StepContext) -> None:
        opts = rabbitmq_options(ctx.cls)
        old, _ = self._users(ctx, opts)
        with self._target(ctx, opts) as target:
            closed = target.close_connections(old)
        ctx.evidence["revoked"] = {"user": old, "connections_closed": closed}

    def verify_current(self, ctx: StepContext, version: Version) -> dict[str, Any]:
        opts = rabbitmq_options(ctx.cls)
        user = self._user_of(version, opts, ctx.ref)
        with self._target(ctx, opts) as target:
            target.check_login(user, ctx.value(version))
        return {"login": {"user": user, "amqp": str(target.amqp), "auth": "ok"}}

    def rollback(self, ctx: StepContext) -> None:
        if ctx.new is None:
            return  # nothing reached the broker: apply comes after create
        opts = rabbitmq_options(ctx.cls)
        old, new = self._users(ctx, opts)
        forget_quiet(ctx)
        with self._target(ctx, opts) as target:
            fingerprint = self._break_glass(target, new)
        ctx.evidence["reset_user"] = {"user": new, "active_user_untouched": old,
                                      "break_glass_fingerprint": fingerprint}
