"""Redis ACL passwords rotated without a refused login, in one of two modes.

``dual-password`` (default): one ACL user holds the old and the new password during the
overlap (Redis keeps several per user).

============ ==================================================================================
plan         AUTH as the user with the current password (refuse otherwise: nothing changed);
             prove the users can be persisted (``ACL SAVE`` / ``CONFIG REWRITE``), or, where
             the server keeps them only in memory, refuse in a production environment (warn
             elsewhere)
apply        ``ACL SETUSER user #<sha256(new)>`` (the old password stays)
test         AUTH with the new password on a fresh connection
overlap      the deadline (connections of one user cannot be told apart by password)
retire       ``ACL SETUSER user !<sha256(old)>``
incident     no overlap; retire, then close the user's connections (clients reconnect with the
             new password)
rollback     the new password is removed; the old one was never touched
============ ==================================================================================

``alternating-users``: two users with the same permissions (``<user>_a``/``<user>_b`` or
``users``), like PostgreSQL's alternating roles; the version's ``meta["role"]`` names the
active one. apply sets the idle user's only password and enables it; the overlap also waits
until ``CLIENT LIST`` shows no connection of the old user for ``overlap.settle``; retire
disables the old user (incident: and kills its connections); rollback disables the idle one.
The idle user gets ``rules`` from the options, or else the active user's own rules.

Every change is persisted, so a restart cannot bring a retired password back: ``ACL SAVE``
when the server keeps users in an ACL file, ``CONFIG REWRITE`` when it was started from a
redis.conf (the ``user`` lines are rewritten in it). A server with neither (``redis-server
--requirepass …`` in a Compose ``command:``) forgets every change at its next restart: the
plan step refuses to rotate it in an environment marked ``production`` and warns elsewhere
(`unpersisted_message` says what to configure). Passwords travel as SHA-256 hashes only.

Options (``[classes.<name>].options``)::

    admin_url_env   env var: redis://ADMIN:PASSWORD@HOST:PORT (rediss:// for TLS) (required)
    mode            dual-password (default) | alternating-users
    user            the ACL user (dual-password) or the base name of the pair (required)
    users           alternating-users: the two user names (default <user>_a, <user>_b)
    rules           alternating-users: key/channel/command rules, e.g. ["~app:*", "+@all"]
    app_url         the URL apps read, with {role} and {password} (render only)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from keyroll.errors import RotationRefused, StepFailed, TargetError
from keyroll.inventory import SecretClass
from keyroll.model import Kind, SecretValue, Version
from keyroll.render import check_template
from keyroll.rotation.strategies._alternating import account_of, old_and_new, other
from keyroll.rotation.strategies._options import ENV_VAR, option_error
from keyroll.rotation.strategies._settle import forget_quiet, settled
from keyroll.rotation.strategies.base import StepContext, Strategy, Verdict
from keyroll.targets.redis import Persistence, RedisTarget

__all__ = [
    "ALTERNATING_USERS",
    "DUAL_PASSWORD",
    "RedisAclOptions",
    "RedisAclStrategy",
    "acl_options",
    "redis_target",
    "unpersisted_message",
]

DUAL_PASSWORD = "dual-password"  # noqa: S105  (a mode name, not a password)
ALTERNATING_USERS = "alternating-users"
_KNOWN = ("admin_url_env", "mode", "user", "users", "rules", "app_url", "app_dsn")


@dataclass(frozen=True, slots=True)
class RedisAclOptions:
    """A ``redis-acl`` class's options, checked (see the module docstring for each)."""

    admin_url_env: str
    mode: str
    user: str
    users: tuple[str, str]
    rules: tuple[str, ...] | None

    def other(self, user: str) -> str:
        """The alternating user that is not ``user``."""
        return other(self.users, user)


def _user_name(cls: SecretClass, name: str, value: object) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value) \
            or "\x00" in value:
        raise option_error(cls, name, "user names must be non-empty, without spaces")
    return value


def acl_options(cls: SecretClass) -> RedisAclOptions:
    """The class's options, checked.

    Raises:
        UsageError: one line naming the class and the field.
    """
    opts = cls.options
    unknown = sorted(set(opts) - set(_KNOWN))
    if unknown:
        raise option_error(cls, unknown[0], f"unknown option (known: {', '.join(_KNOWN)})")
    env = opts.get("admin_url_env")
    if not isinstance(env, str) or not ENV_VAR.match(env):
        raise option_error(cls, "admin_url_env", "required: the name of the env var holding "
                   "redis://ADMIN:PASSWORD@HOST:PORT (never the URL itself)")
    mode = opts.get("mode", DUAL_PASSWORD)
    if mode not in (DUAL_PASSWORD, ALTERNATING_USERS):
        raise option_error(cls, "mode", f"{mode!r}: use {DUAL_PASSWORD} or {ALTERNATING_USERS}")
    user = _user_name(cls, "user", opts.get("user"))
    users_opt = opts.get("users")
    if users_opt is None:
        users = (f"{user}_a", f"{user}_b")
    elif isinstance(users_opt, list) and len(users_opt) == 2:
        users = (_user_name(cls, "users", users_opt[0]), _user_name(cls, "users", users_opt[1]))
    else:
        raise option_error(cls, "users", 'give exactly two user names, e.g. ["app_a", "app_b"]')
    if users[0] == users[1]:
        raise option_error(cls, "users", "the two users must differ")
    rules_opt = opts.get("rules")
    rules: tuple[str, ...] | None = None
    if rules_opt is not None:
        if not isinstance(rules_opt, list) or not all(isinstance(r, str) and r
                                                      for r in rules_opt):
            raise option_error(cls, "rules", 'a list of ACL rules, e.g. ["~app:*", "+@all"]')
        rules = tuple(rules_opt)
    if mode == DUAL_PASSWORD and (users_opt is not None or rules is not None):
        raise option_error(cls, "users" if users_opt is not None else "rules",
                   f"only for mode {ALTERNATING_USERS}")
    for name in ("app_url", "app_dsn"):
        template = opts.get(name)
        problem = check_template(template) if template is not None else None
        if problem is not None:
            raise option_error(cls, name, problem)
    return RedisAclOptions(env, mode, user, users, rules)


def redis_target(url: str, *, what: str = "the Redis admin URL") -> RedisTarget:
    """A `RedisTarget` from ``redis://[USER[:PASSWORD]@]HOST[:PORT]`` (``rediss://``: TLS).

    A URL with a password and no user authenticates as ``default`` (``requirepass``).

    Raises:
        RotationRefused: the URL is malformed (its text, which may hold a password, is not
            shown).
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        raise RotationRefused(f"{what} must be redis://USER:PASSWORD@HOST:PORT (its text is "
                              "not shown)") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise RotationRefused(f"{what} must be redis://USER:PASSWORD@HOST:PORT (its text is "
                              "not shown)")
    password = SecretValue(unquote(parts.password)) if parts.password is not None else None
    return RedisTarget(parts.hostname, port, admin_user=unquote(parts.username or "default"),
                       admin_password=password, tls=parts.scheme == "rediss")


def unpersisted_message(where: str) -> str:
    """What to configure when a Redis server keeps its users only in memory."""
    return (f"Redis at {where} keeps its users only in memory (no aclfile, no config file: "
            "e.g. `redis-server --requirepass …`), so a restart would bring the old password "
            "back: add `aclfile /data/users.acl` to a redis.conf the server starts from (or "
            "start it from a redis.conf, which CONFIG REWRITE keeps), then rotate again")


class RedisAclStrategy(Strategy):
    """Redis ACL users: a second password on one user, or two alternating users."""

    kind = Kind.REDIS_ACL

    def validate(self, cls: SecretClass) -> None:
        acl_options(cls)

    # helpers -------------------------------------------------------------------------------

    @staticmethod
    def _target(ctx: StepContext, opts: RedisAclOptions) -> RedisTarget:
        url = os.environ.get(opts.admin_url_env)
        if not url:
            raise RotationRefused(f"{ctx.ref}: env var {opts.admin_url_env} "
                                  "(options.admin_url_env) is not set: export the Redis admin "
                                  "URL where keyroll runs")
        return redis_target(url, what=f"{ctx.ref}: env var {opts.admin_url_env}")

    @staticmethod
    def _user_of(version: Version | None, opts: RedisAclOptions, ref: object) -> str:
        if opts.mode == DUAL_PASSWORD:
            return opts.user
        return account_of(version, opts.users, ref)

    def _users(self, ctx: StepContext, opts: RedisAclOptions) -> tuple[str, str]:
        old = self._user_of(ctx.old, opts, ctx.ref)
        if opts.mode == DUAL_PASSWORD:
            return old, old
        return old_and_new(ctx.new, opts.users, old, ctx.ref)

    # steps ---------------------------------------------------------------------------------

    def plan(self, ctx: StepContext) -> None:
        opts = acl_options(ctx.cls)
        target = self._target(ctx, opts)
        user = self._user_of(ctx.old, opts, ctx.ref)
        number = ctx.old.number if ctx.old is not None else "?"
        try:
            target.check_login(user, ctx.value(ctx.old))
        except TargetError as exc:
            raise RotationRefused(
                f"{ctx.ref}: the current password (version {number}, user {user!r}) does not "
                f"log in, so the rotation did not start and nothing was changed: {exc}"
            ) from None
        ctx.evidence["login"] = {"user": user, "mode": opts.mode, "auth": "ok"}
        self._check_persistence(ctx, target)
        if opts.mode == ALTERNATING_USERS:
            idle = opts.other(user)
            rules = list(opts.rules) if opts.rules is not None else target.permissions_of(user)
            target.ensure_users([idle], rules)
            ctx.evidence["idle_user"] = {
                "user": idle, "rules": "options.rules" if opts.rules is not None
                else f"copied from {user!r}",
            }

    @staticmethod
    def _check_persistence(ctx: StepContext, target: RedisTarget) -> None:
        """Before anything changes: a save that fails (read-only file) fails here; a server
        that cannot persist is refused in production and warned about elsewhere."""
        try:
            mode = target.persist()
        except TargetError as exc:
            raise RotationRefused(f"{ctx.ref}: the users cannot be saved, so the rotation did "
                                  f"not start and nothing was changed: {exc}") from None
        if mode is Persistence.NONE:
            message = unpersisted_message(target.where)
            if ctx.policy.production:
                raise RotationRefused(f"{ctx.ref}: {message} (environment "
                                      f"{ctx.ref.environment!r} is production: refused)")
            ctx.emit(f"warning: {message}")
            ctx.evidence["persistence"] = {"mode": mode.value, "warning": message}
            return
        ctx.evidence["persistence"] = {"mode": mode.value, "saved_with": mode.command}

    def version_meta(self, ctx: StepContext) -> dict[str, Any]:
        opts = acl_options(ctx.cls)
        user = self._user_of(ctx.old, opts, ctx.ref)
        return {"role": user if opts.mode == DUAL_PASSWORD else opts.other(user)}

    def apply(self, ctx: StepContext) -> None:
        opts = acl_options(ctx.cls)
        target = self._target(ctx, opts)
        _, user = self._users(ctx, opts)
        password = ctx.value(ctx.new)
        if opts.mode == DUAL_PASSWORD:
            target.add_password(user, password)
        else:
            target.set_password(user, password)
        ctx.evidence["applied"] = {"user": user, "mode": opts.mode, "form": "sha256 hash",
                                   "persisted": target.persist().value}

    def test(self, ctx: StepContext) -> None:
        opts = acl_options(ctx.cls)
        target = self._target(ctx, opts)
        _, user = self._users(ctx, opts)
        target.check_login(user, ctx.value(ctx.new))
        ctx.evidence["checked"] = {"user": user, "auth": "ok", "fresh_connection": True}

    def overlap_done(self, ctx: StepContext, started: datetime) -> Verdict:
        if ctx.incident:
            return Verdict(True, "incident: no overlap (the user's connections are closed after retire)")
        by_time = super().overlap_done(ctx, started)
        opts = acl_options(ctx.cls)
        if not by_time.done or opts.mode == DUAL_PASSWORD or not ctx.cls.overlap.until_unused:
            return by_time
        old, _ = self._users(ctx, opts)
        count = self._target(ctx, opts).connection_count(old)
        return settled(ctx, what=f"user {old!r}", count=count, started=started)

    def retire(self, ctx: StepContext) -> None:
        opts = acl_options(ctx.cls)
        target = self._target(ctx, opts)
        old, new = self._users(ctx, opts)
        if opts.mode == DUAL_PASSWORD:
            if not target.has_password(new, ctx.value(ctx.new)):
                raise StepFailed(f"{ctx.ref}: user {new!r} does not hold the current password; "
                                 "refusing to remove the old one (it would lock clients out)")
            if ctx.old is not None and not ctx.old.destroyed:
                target.remove_password(old, ctx.value(ctx.old))
            what = "old password removed"
        else:
            target.disable_user(old)
            what = "user disabled (no password, off)"
        forget_quiet(ctx)
        ctx.evidence["retired_user"] = {"user": old, "action": what,
                                        "persisted": target.persist().value}

    def revoke(self, ctx: StepContext) -> None:
        opts = acl_options(ctx.cls)
        old, _ = self._users(ctx, opts)
        ctx.evidence["revoked"] = {
            "user": old, "connections_closed": self._target(ctx, opts).kill_connections(old)}

    def verify_current(self, ctx: StepContext, version: Version) -> dict[str, Any]:
        opts = acl_options(ctx.cls)
        user = self._user_of(version, opts, ctx.ref)
        self._target(ctx, opts).check_login(user, ctx.value(version))
        return {"login": {"user": user, "auth": "ok"}}

    def rollback(self, ctx: StepContext) -> None:
        if ctx.new is None:
            return
        opts = acl_options(ctx.cls)
        old, user = self._users(ctx, opts)
        forget_quiet(ctx)
        target = self._target(ctx, opts)
        if opts.mode == DUAL_PASSWORD:
            target.remove_password(user, ctx.value(ctx.new))
        elif target.user_exists(user):
            target.disable_user(user)
        ctx.evidence["reset"] = {"user": user, "active_user_untouched": old}
