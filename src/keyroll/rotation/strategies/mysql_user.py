"""MySQL and MariaDB passwords rotated without a refused login, in one of two modes.

``dual-password`` (MySQL ≥ 8.0.14): one account holds the old and the new password during the
overlap (``RETAIN CURRENT PASSWORD``), and retire drops the old one (``DISCARD OLD PASSWORD``).
``alternating-users`` (MariaDB, older MySQL): two login accounts with the same privileges
(``'app_a'@'%'`` / ``'app_b'@'%'``), like PostgreSQL's alternating roles; the version's
``meta["role"]`` names the active user. ``auto`` (default) picks dual passwords where the
server supports them and says in the plan output and evidence why it did not (MariaDB has no
dual passwords in any release: `keyroll.targets.mysql.server`).

============ ==================================================================================
plan         detect the server; log in with the current credential as exactly that account
             (refuse otherwise: nothing changed); alternating: create the idle account, locked
apply        alternating: mirror the active account's grants (``SHOW GRANTS``: global, database,
             table, column, routine, proxy, roles, default role; TLS requirement and limits)
             onto the idle one, then give it the new password and unlock it.
             dual: ``RETAIN CURRENT PASSWORD`` (skipped when the new password already logs in)
test         log in with the new password; compare the privileges its own session reports
             (``SHOW GRANTS FOR CURRENT_USER()``) with the active account's: any difference
             fails the step, with the diff
overlap      the deadline; alternating: then no session of the old user
             (``information_schema.PROCESSLIST``) for ``overlap.settle``, or ``overlap.max``
retire       alternating: the old account gets a random unstored password and ``ACCOUNT LOCK``
             (``retire = "break-glass"``: password only; ``"drop"``: ``DROP USER``).
             dual: ``DISCARD OLD PASSWORD`` (on a rotation back: the kept password is made
             primary again first)
incident     no overlap; retire, then ``KILL CONNECTION`` for every session of the old user
rollback     alternating: the idle account is locked again (the active one is never touched);
             dual: the old password becomes the only one again
============ ==================================================================================

Admin credentials come from environment variables named in the options, never from the
inventory. Options (``[classes.<name>].options``)::

    admin_url_env       env var: mysql://ADMIN:PASSWORD@HOST:PORT[/DB][?unix_socket=…&ssl_ca=…]
                        (required); application logins go to the same server
    admin_password_env  env var: the admin password, if not in that URL
    mode                auto (default) | dual-password | alternating-users
    user                the account (dual-password) or the base name of the pair (required)
    users               alternating-users: the two user names (default <user>_a, <user>_b)
    host                the accounts' host part (default "%"): 'app_a'@'%' and
                        'app_a'@'localhost' are different accounts, so it is always explicit
    database            the database application logins open (default: the admin URL's)
    probe_table         table the new login must be able to SELECT from (db.table)
    retire              alternating-users: lock (default) | break-glass | drop
    app_dsn / app_url   the URL apps read, with {role} and {password} (render only)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keyroll.errors import RotationRefused, StepFailed, TargetError
from keyroll.inventory import SecretClass
from keyroll.model import Kind, SecretValue, Version
from keyroll.render import check_template
from keyroll.rotation.strategies._alternating import account_of, old_and_new, other
from keyroll.rotation.strategies._options import env_name_option, option_error, text_option
from keyroll.rotation.strategies._settle import forget_quiet, settled
from keyroll.rotation.strategies.base import StepContext, Strategy, Verdict
from keyroll.targets.mysql import (
    Account,
    MySQLTarget,
    RetireMode,
    ServerInfo,
    account_problem,
    parse_url,
)

__all__ = ["ALTERNATING_USERS", "AUTO", "DUAL_PASSWORD", "MySQLUserOptions", "MySQLUserStrategy",
           "resolve_mode", "user_options"]

AUTO = "auto"
DUAL_PASSWORD = "dual-password"  # noqa: S105  (a mode name, not a password)
ALTERNATING_USERS = "alternating-users"
_MODES = (AUTO, DUAL_PASSWORD, ALTERNATING_USERS)
_KNOWN = ("admin_url_env", "admin_password_env", "mode", "user", "users", "host", "database",
          "probe_table", "retire", "app_dsn", "app_url")


@dataclass(frozen=True, slots=True)
class MySQLUserOptions:
    """A ``mysql-user`` class's options, checked (see the module docstring for each)."""

    admin_url_env: str
    admin_password_env: str | None
    mode: str
    user: str
    users: tuple[str, str]
    host: str
    database: str | None
    probe_table: str | None
    retire: RetireMode

    def account(self, user: str) -> Account:
        return Account(user, self.host)

    def other(self, user: str) -> str:
        """The alternating user that is not ``user``."""
        return other(self.users, user)


def _name(cls: SecretClass, option: str, value: object, host: str) -> str:
    problem = account_problem(value, host)
    if problem is not None:
        raise option_error(cls, option, problem)
    assert isinstance(value, str)
    return value


def user_options(cls: SecretClass) -> MySQLUserOptions:
    """The class's options, checked.

    Raises:
        UsageError: one line naming the class and the field.
    """
    opts = cls.options
    unknown = sorted(set(opts) - set(_KNOWN))
    if unknown:
        raise option_error(cls, unknown[0], f"unknown option (known: {', '.join(_KNOWN)})")
    admin_env = env_name_option(cls, "admin_url_env", required=True)
    assert admin_env is not None
    mode = opts.get("mode", AUTO)
    if mode not in _MODES:
        raise option_error(cls, "mode", f"{mode!r}: use one of {', '.join(_MODES)}")
    host = text_option(cls, "host") or "%"
    problem = account_problem("x", host)
    if problem is not None:
        raise option_error(cls, "host", problem)
    user = _name(cls, "user", opts.get("user"), host)
    users_opt = opts.get("users")
    if users_opt is None:
        users = (f"{user}_a", f"{user}_b")
    elif isinstance(users_opt, list) and len(users_opt) == 2:
        users = (_name(cls, "users", users_opt[0], host), _name(cls, "users", users_opt[1], host))
    else:
        raise option_error(cls, "users", 'give exactly two user names, e.g. ["app_a", "app_b"]')
    for name in users:
        _name(cls, "users", name, host)  # the default <user>_a may be too long
    if users[0] == users[1]:
        raise option_error(cls, "users", "the two users must differ in their names (sessions "
                           "are counted per user name, so two host parts of one name cannot "
                           "alternate)")
    if mode == DUAL_PASSWORD and users_opt is not None:
        raise option_error(cls, "users", f"only for mode {ALTERNATING_USERS} or {AUTO}")
    retire = text_option(cls, "retire") or RetireMode.LOCK.value
    try:
        retire_mode = RetireMode(retire)
    except ValueError:
        raise option_error(cls, "retire", f"{retire!r}: use one of "
                           f"{', '.join(m.value for m in RetireMode)}") from None
    probe = text_option(cls, "probe_table")
    if probe is not None and (probe.count(".") > 1 or "`" in probe):
        raise option_error(cls, "probe_table", "give 'table' or 'database.table'")
    for name in ("app_url", "app_dsn"):
        template = opts.get(name)
        problem = check_template(template) if template is not None else None
        if problem is not None:
            raise option_error(cls, name, problem)
    return MySQLUserOptions(
        admin_url_env=admin_env,
        admin_password_env=env_name_option(cls, "admin_password_env"),
        mode=str(mode), user=user, users=users, host=host,
        database=text_option(cls, "database"), probe_table=probe, retire=retire_mode,
    )


def resolve_mode(requested: str, server: ServerInfo) -> str:
    """The mode a rotation runs in on ``server``.

    Raises:
        RotationRefused: ``dual-password`` was asked for and the server has none.
    """
    if requested == AUTO:
        return DUAL_PASSWORD if server.dual_password else ALTERNATING_USERS
    if requested == DUAL_PASSWORD and not server.dual_password:
        raise RotationRefused(f"options.mode = {DUAL_PASSWORD!r}, but {server.dual_password_note()}"
                              f"; use mode = {AUTO!r} or {ALTERNATING_USERS!r}; nothing was "
                              "changed")
    return requested


def _target(ctx: StepContext, opts: MySQLUserOptions) -> MySQLTarget:
    url = os.environ.get(opts.admin_url_env)
    if not url:
        raise RotationRefused(f"{ctx.ref}: env var {opts.admin_url_env} (options.admin_url_env) "
                              "is not set: export it where keyroll runs (it is read from the "
                              "environment, never the inventory)")
    try:
        admin = parse_url(url, f"{ctx.ref}: env var {opts.admin_url_env}")
    except TargetError as exc:
        raise RotationRefused(str(exc)) from None
    if opts.admin_password_env is not None:
        password = os.environ.get(opts.admin_password_env)
        if not password:
            raise RotationRefused(f"{ctx.ref}: env var {opts.admin_password_env} "
                                  "(options.admin_password_env) is not set")
        admin = type(admin)(admin.host, admin.port, admin.user, SecretValue(password),
                            admin.database, admin.unix_socket, admin.ssl_ca)
    return MySQLTarget(admin, database=opts.database)


class MySQLUserStrategy(Strategy):
    """MySQL/MariaDB accounts: dual passwords on one account, or two alternating accounts."""

    kind = Kind.MYSQL_USER

    def validate(self, cls: SecretClass) -> None:
        user_options(cls)

    # helpers -------------------------------------------------------------------------------

    @staticmethod
    def _mode(ctx: StepContext, opts: MySQLUserOptions, target: MySQLTarget) -> str:
        """The mode plan chose (kept in the record), or the same decision made again."""
        chosen = ctx.state.get("mode")
        if chosen in (DUAL_PASSWORD, ALTERNATING_USERS):
            return str(chosen)
        return resolve_mode(opts.mode, target.server_info())

    @staticmethod
    def _user_of(version: Version | None, opts: MySQLUserOptions, mode: str,
                 ref: object) -> str:
        named = version.meta.get("role") if version is not None else None
        if mode == DUAL_PASSWORD:
            user = str(named) if named else opts.user
            if user != opts.user:
                raise RotationRefused(f"{ref}: the current password belongs to user {user!r}, "
                                      f"not options.user {opts.user!r} (mode {DUAL_PASSWORD}): "
                                      "set options.mode to match how the account is used")
            return user
        return account_of(version, opts.users, ref, hint="set users (or mode) to the "
                          "accounts the application uses")

    def _users(self, ctx: StepContext, opts: MySQLUserOptions, mode: str) -> tuple[str, str]:
        """(old, new): the user that retires and the one that stays (swapped on a way back)."""
        old = self._user_of(ctx.old, opts, mode, ctx.ref)
        if mode == DUAL_PASSWORD:
            return old, old
        return old_and_new(ctx.new, opts.users, old, ctx.ref)

    @staticmethod
    def _back(ctx: StepContext) -> bool:
        """A rotation back (the engine says so: `StepContext.back`)."""
        return ctx.back

    # steps ---------------------------------------------------------------------------------

    def plan(self, ctx: StepContext) -> None:
        opts = user_options(ctx.cls)
        target = _target(ctx, opts)
        server = target.server_info()
        ctx.emit(server.dual_password_note())
        mode = resolve_mode(opts.mode, server)
        ctx.state["mode"] = mode
        ctx.evidence["server"] = {**server.as_evidence(), "mode_requested": opts.mode,
                                  "mode": mode}
        target.check_admin()
        user = self._user_of(ctx.old, opts, mode, ctx.ref)
        account = opts.account(user)
        number = ctx.old.number if ctx.old is not None else "?"
        try:
            target.check_login(account, ctx.value(ctx.old), probe_table=opts.probe_table)
        except TargetError as exc:
            raise RotationRefused(
                f"{ctx.ref}: the current password (version {number}, account {account}) does "
                f"not log in, so the rotation did not start and nothing was changed: {exc}"
            ) from None
        ctx.evidence["login"] = {"account": str(account), "probe_table": opts.probe_table,
                                 "matched": account.current_user}
        if mode == ALTERNATING_USERS:
            idle = opts.account(opts.other(user))
            created = target.ensure_locked(idle)
            ctx.evidence["idle_account"] = {"account": str(idle),
                                            "created": created, "locked_until_apply": created}

    def version_meta(self, ctx: StepContext) -> dict[str, Any]:
        opts = user_options(ctx.cls)
        mode = self._mode(ctx, opts, _target(ctx, opts))
        user = self._user_of(ctx.old, opts, mode, ctx.ref)
        return {"role": user if mode == DUAL_PASSWORD else opts.other(user), "mode": mode}

    def apply(self, ctx: StepContext) -> None:
        opts = user_options(ctx.cls)
        target = _target(ctx, opts)
        mode = self._mode(ctx, opts, target)
        old, new = self._users(ctx, opts, mode)
        account = opts.account(new)
        password = ctx.value(ctx.new)
        if mode == DUAL_PASSWORD:
            # a rerun after a crash must not RETAIN again: the new password would become the
            # secondary one and the old password (still current for the apps) would be lost
            already = target.logs_in(account, password)
            if not already:
                target.add_secondary_password(account, password)
            ctx.evidence["applied"] = {"account": str(account), "mode": mode,
                                       "statement": "RETAIN CURRENT PASSWORD",
                                       "already_applied": already}
            return
        mirrored = target.mirror_grants(opts.account(old), account)
        # a rerun after a crash finds the account open with the new password: setting it
        # again would trip a password-reuse policy (MySQL's password_history)
        already = target.logs_in(account, password)
        if not already:
            target.set_password(account, password, unlock=True)
        ctx.evidence["applied"] = {
            "account": str(account), "mode": mode, "grants_from": str(opts.account(old)),
            "grants_changed": mirrored.changed, "statements": mirrored.statements,
            "grant_lines": list(mirrored.lines[:40]),
            "password": "mysql_native_password hash computed by keyroll"
            if target.server_info().is_mariadb else "IDENTIFIED BY (rewritten out of MySQL's logs)",
            "unlocked": True, "already_applied": already,
        }

    def test(self, ctx: StepContext) -> None:
        opts = user_options(ctx.cls)
        target = _target(ctx, opts)
        mode = self._mode(ctx, opts, target)
        old, new = self._users(ctx, opts, mode)
        account = opts.account(new)
        login = target.check_login(account, ctx.value(ctx.new), probe_table=opts.probe_table)
        checked: dict[str, Any] = {"account": str(account), "login": "ok", "fresh_connection":
                                   True, "probe_table": opts.probe_table}
        if mode == ALTERNATING_USERS:
            report = target.compare_privileges(opts.account(old), login)
            checked["privileges"] = {
                "compared_with": str(opts.account(old)), "grant_lines": report.lines,
                "from": "the new login's own session (SHOW GRANTS FOR CURRENT_USER())",
                "result": report.describe(),
            }
            if not report.identical:
                ctx.evidence["checked"] = checked
                raise StepFailed(f"{ctx.ref}: {account} does not hold the privileges of "
                                 f"{opts.account(old)}: {report.describe()}")
        ctx.evidence["checked"] = checked

    def overlap_done(self, ctx: StepContext, started: datetime) -> Verdict:
        if ctx.incident:
            return Verdict(True, "incident: no overlap (the old user's sessions are ended at "
                           "retire)")
        by_time = super().overlap_done(ctx, started)
        if not by_time.done or not ctx.cls.overlap.until_unused:
            return by_time
        opts = user_options(ctx.cls)
        target = _target(ctx, opts)
        mode = self._mode(ctx, opts, target)
        if mode == DUAL_PASSWORD:
            return by_time  # one account: its sessions cannot be told apart by password
        old, _ = self._users(ctx, opts, mode)
        count = len(target.session_ids(opts.account(old)))
        return settled(ctx, what=f"user {old!r}", count=count, started=started)

    def retire(self, ctx: StepContext) -> None:
        opts = user_options(ctx.cls)
        target = _target(ctx, opts)
        mode = self._mode(ctx, opts, target)
        old, new = self._users(ctx, opts, mode)
        if mode == DUAL_PASSWORD:
            account = opts.account(new)
            keep = ctx.value(ctx.new)
            if self._back(ctx):
                # the rolled-back password is primary: make the kept one the only one
                if ctx.old is not None and not ctx.old.destroyed and \
                        target.logs_in(account, ctx.value(ctx.old)):
                    target.restore_primary(account, keep)
                action = "kept password made primary again, old one discarded"
            else:
                if not target.logs_in(account, keep):
                    raise StepFailed(f"{ctx.ref}: {account} does not accept the current "
                                     "password; refusing to discard the old one (it would lock "
                                     "clients out)")
                target.discard_old_password(account)
                action = "DISCARD OLD PASSWORD"
            forget_quiet(ctx)
            ctx.evidence["retired_account"] = {"account": str(account), "mode": mode,
                                               "action": action}
            return
        result = target.lock(opts.account(old), opts.retire)
        forget_quiet(ctx)
        ctx.evidence["retired_account"] = {
            "account": str(result.account), "mode": mode, "retire": result.mode.value,
            "break_glass_fingerprint": result.break_glass_fingerprint,
        }

    def revoke(self, ctx: StepContext) -> None:
        opts = user_options(ctx.cls)
        target = _target(ctx, opts)
        mode = self._mode(ctx, opts, target)
        old, _ = self._users(ctx, opts, mode)
        account = opts.account(old)
        ctx.evidence["revoked"] = {"account": str(account),
                                   "sessions_killed": target.kill_sessions(account)}

    def verify_current(self, ctx: StepContext, version: Version) -> dict[str, Any]:
        opts = user_options(ctx.cls)
        target = _target(ctx, opts)
        mode = self._mode(ctx, opts, target)
        account = opts.account(self._user_of(version, opts, mode, ctx.ref))
        target.check_login(account, ctx.value(version), probe_table=opts.probe_table)
        return {"login": {"account": str(account), "ok": True}}

    def rollback(self, ctx: StepContext) -> None:
        if ctx.new is None:
            return  # nothing reached the server: apply comes after create
        opts = user_options(ctx.cls)
        target = _target(ctx, opts)
        mode = self._mode(ctx, opts, target)
        old, new = self._users(ctx, opts, mode)
        forget_quiet(ctx)
        if mode == DUAL_PASSWORD:
            account = opts.account(old)
            # only if the new password got in: otherwise apply never ran (or this already did)
            if target.logs_in(account, ctx.value(ctx.new)):
                target.restore_primary(account, ctx.value(ctx.old))
            ctx.evidence["reset"] = {"account": str(account), "password": "old one only"}
            return
        target.lock(opts.account(new), RetireMode.LOCK)
        ctx.evidence["reset"] = {"account": str(opts.account(new)), "locked": True,
                                 "active_account_untouched": str(opts.account(old))}
