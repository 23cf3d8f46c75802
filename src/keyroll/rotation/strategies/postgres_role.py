"""PostgreSQL passwords rotated by alternating two login roles (seed 004 §5), with PgBouncer.

PostgreSQL keeps one password per role, so a password cannot be changed under running clients
without failing their next login. A ``NOLOGIN`` group role holds the privileges; two ``LOGIN``
roles inherit them; the store's value is the password of the *active* one, and the version's
``meta["role"]`` names it (``render`` builds ``DATABASE_URL`` from ``options.app_dsn``). Each
rotation gives the *idle* role a fresh password:

============ ==================================================================================
plan         log in with the current credential, directly and through PgBouncer (refuse
             otherwise: nothing is changed), create what is missing of the layout (both login
             roles act as the group: ``SET role``), give the group whatever a login role
             owns, and take the verified ``pg_dump -Fc`` backup when ``backup_dir`` is set
             (seed 000 §3.1)
apply        a fresh SCRAM verifier on the idle role; PgBouncer's auth_file gets it, RELOAD
test         log in as the idle role (directly and through PgBouncer), check that it acts as
             the group, run the probe, and compare its effective privileges with the active
             role's (every table, column, sequence, function, type, schema, database and
             membership): any difference fails the step, the diff in the evidence
overlap      the deadline, then no session of the old role for ``overlap.settle``
             (``pg_stat_activity``; behind PgBouncer: its clients of the old role plus the
             sessions that are not PgBouncer's pooled server connections)
retire       PgBouncer forgets the old role first, then PostgreSQL resets it (``break-glass``:
             random unstored password; ``nologin``; ``drop``), then its pooled server
             sessions are ended
incident     no overlap; retire as above, then every backend of the old role is terminated
rollback     the idle role is reset and leaves PgBouncer's auth_file; the active role is never
             touched
============ ==================================================================================

Admin credentials come from environment variables named in the options, never from the
inventory. Options (``[classes.<name>].options``)::

    admin_dsn_env           env var: conninfo/URL of a role that manages the app's roles,
                            connected to the app's database (required)
    admin_password_env      env var: the admin password, if not in that DSN
    group_role              the NOLOGIN role holding the privileges (required)
    login_roles             the two login roles (default <group_role>_a, <group_role>_b)
    probe_table             table the new role must be able to SELECT from (schema.table)
    retire                  break-glass (default) | nologin | drop
    backup_dir              folder for the preflight pg_dump (relative to keyroll.toml)
    pg_dump                 path of pg_dump (default: PATH)
    app_dsn                 the DSN apps read, with {role} and {password} (render only)
    pgbouncer_auth_file     PgBouncer's auth_file (userlist.txt), relative to keyroll.toml
    pgbouncer_admin_url_env env var: postgresql://ADMIN:PASSWORD@HOST:PORT/pgbouncer
    pgbouncer_dbname        database name clients use through PgBouncer (default: the
                            admin DSN's)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from keyroll.errors import RoleMissing, RotationRefused, StepFailed, TargetError, UsageError
from keyroll.inventory import SecretClass
from keyroll.model import Kind, SecretValue, Version
from keyroll.render import check_template
from keyroll.rotation.strategies._alternating import account_of, old_and_new
from keyroll.rotation.strategies._options import env_name_option, option_error, text_option
from keyroll.rotation.strategies._settle import forget_quiet, settled
from keyroll.rotation.strategies.base import StepContext, Strategy, Verdict
from keyroll.targets.pgbouncer import ADMIN_URL_SHAPE, PgBouncerTarget, parse_admin_url
from keyroll.targets.postgres import (
    AdoptResult,
    PostgresTarget,
    RetireMode,
    RoleLayout,
    backup,
    identifier_problem,
)
from keyroll.targets.postgres import dbname as target_dbname

__all__ = ["PostgresRoleOptions", "PostgresRoleStrategy", "adopt_role", "role_options"]

_KNOWN = (
    "admin_dsn_env", "admin_password_env", "group_role", "login_roles", "probe_table", "retire",
    "backup_dir", "pg_dump", "app_dsn", "pgbouncer_auth_file", "pgbouncer_admin_url_env",
    "pgbouncer_dbname",
)


@dataclass(frozen=True, slots=True)
class PostgresRoleOptions:
    """A ``postgres-role`` class's options, checked (see the module docstring for each)."""

    admin_dsn_env: str
    admin_password_env: str | None
    layout: RoleLayout
    probe_table: str | None
    retire: RetireMode
    backup_dir: str | None
    pg_dump: str | None
    pgbouncer_auth_file: str | None
    pgbouncer_admin_url_env: str | None
    pgbouncer_dbname: str | None


def _identifier(cls: SecretClass, name: str, value: object) -> str:
    """``value`` as a role name, by the target's identifier rule (`identifier_problem`)."""
    problem = identifier_problem(value)
    if problem is not None:
        raise option_error(cls, name, f"role name {problem}")
    assert isinstance(value, str)
    return value


def role_options(cls: SecretClass) -> PostgresRoleOptions:
    """The class's options, checked.

    Raises:
        UsageError: one line naming the class and the field.
    """
    unknown = sorted(set(cls.options) - set(_KNOWN))
    if unknown:
        raise option_error(cls, unknown[0], f"unknown option (known: {', '.join(_KNOWN)})")
    admin_env = env_name_option(cls, "admin_dsn_env", required=True)
    assert admin_env is not None
    group = _identifier(cls, "group_role", text_option(cls, "group_role", required=True))
    logins = cls.options.get("login_roles")
    if logins is None:
        pair = (f"{group}_a", f"{group}_b")
    elif isinstance(logins, list) and len(logins) == 2:
        pair = (_identifier(cls, "login_roles", logins[0]),
                _identifier(cls, "login_roles", logins[1]))
    else:
        raise option_error(cls, "login_roles", "give exactly two role names, e.g. "
                   '["goodgo_app_a", "goodgo_app_b"]')
    for name in pair:
        _identifier(cls, "login_roles", name)
    if len({group, *pair}) != 3:
        raise option_error(cls, "login_roles", "the group role and the two login roles must differ")
    retire = text_option(cls, "retire") or RetireMode.BREAK_GLASS.value
    try:
        mode = RetireMode(retire)
    except ValueError:
        raise option_error(cls, "retire", f"{retire!r}: use one of "
                   f"{', '.join(m.value for m in RetireMode)}") from None
    probe = text_option(cls, "probe_table")
    if probe is not None and probe.count(".") > 1:
        raise option_error(cls, "probe_table", "give 'table' or 'schema.table'")
    auth_file = text_option(cls, "pgbouncer_auth_file")
    bouncer_env = env_name_option(cls, "pgbouncer_admin_url_env")
    if (auth_file is None) != (bouncer_env is None):
        raise option_error(cls, "pgbouncer_auth_file" if auth_file is None else "pgbouncer_admin_url_env",
                   "PgBouncer needs both pgbouncer_auth_file and pgbouncer_admin_url_env")
    template = text_option(cls, "app_dsn")
    problem = check_template(template) if template is not None else None
    if problem is not None:
        raise option_error(cls, "app_dsn", problem)
    return PostgresRoleOptions(
        admin_dsn_env=admin_env,
        admin_password_env=env_name_option(cls, "admin_password_env"),
        layout=RoleLayout(group, pair),
        probe_table=probe,
        retire=mode,
        backup_dir=text_option(cls, "backup_dir"),
        pg_dump=text_option(cls, "pg_dump"),
        pgbouncer_auth_file=auth_file,
        pgbouncer_admin_url_env=bouncer_env,
        pgbouncer_dbname=text_option(cls, "pgbouncer_dbname"),
    )


# connections (from env vars, at each step) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Targets:
    pg: PostgresTarget
    admin_dsn: str
    admin_password: SecretValue | None
    bouncer: PgBouncerTarget | None
    bouncer_dbname: str


def _env(environ: Mapping[str, str], var: str, what: str, ref: object) -> str:
    value = environ.get(var)
    if not value:
        raise RotationRefused(f"{ref}: env var {var} ({what}) is not set: export it where "
                              "keyroll runs (it is read from the environment, never the inventory)")
    return value


def _admin(opts: PostgresRoleOptions, environ: Mapping[str, str], ref: object
           ) -> tuple[PostgresTarget, str, SecretValue | None]:
    dsn = _env(environ, opts.admin_dsn_env, "options.admin_dsn_env", ref)
    password = None
    if opts.admin_password_env is not None:
        password = SecretValue(_env(environ, opts.admin_password_env,
                                    "options.admin_password_env", ref))
    return PostgresTarget(dsn, password=password), dsn, password


def _bouncer(opts: PostgresRoleOptions, environ: Mapping[str, str], workdir: Path,
             ref: object) -> PgBouncerTarget | None:
    if opts.pgbouncer_auth_file is None or opts.pgbouncer_admin_url_env is None:
        return None
    var = opts.pgbouncer_admin_url_env
    url = _env(environ, var, "options.pgbouncer_admin_url_env", ref)
    admin = parse_admin_url(url)
    if admin is None:
        raise RotationRefused(f"{ref}: env var {var} must be {ADMIN_URL_SHAPE} (its text is not "
                              "shown)")
    host, port, user, password = admin
    auth_file = Path(opts.pgbouncer_auth_file)
    return PgBouncerTarget(
        auth_file if auth_file.is_absolute() else workdir / auth_file,
        host=host, port=port, admin_user=user, admin_password=password,
    )


def _targets(ctx: StepContext, opts: PostgresRoleOptions) -> _Targets:
    pg, dsn, password = _admin(opts, os.environ, ctx.ref)
    bouncer = _bouncer(opts, os.environ, ctx.workdir, ctx.ref)
    dbname = opts.pgbouncer_dbname or (
        target_dbname(dsn, "read the admin DSN") if bouncer is not None else "")
    return _Targets(pg, dsn, password, bouncer, dbname)


def _role_of(version: Version | None, opts: PostgresRoleOptions, ref: object) -> str:
    """The login role a version's password belongs to (``meta["role"]``; else the first)."""
    return account_of(version, opts.layout.logins, ref, noun="role",
                      setting="options.login_roles", hint="bring it into the alternation with "
                      "`keyroll adopt`, or fix login_roles")


# the strategy ------------------------------------------------------------------------------


class PostgresRoleStrategy(Strategy):
    """Alternating login roles under a group role, with PgBouncer's auth_file kept in step."""

    kind = Kind.POSTGRES_ROLE

    def validate(self, cls: SecretClass) -> None:
        role_options(cls)

    def _roles(self, ctx: StepContext, opts: PostgresRoleOptions) -> tuple[str, str]:
        """(old, new): the active role and the idle one that receives the new password."""
        return old_and_new(ctx.new, opts.layout.logins, _role_of(ctx.old, opts, ctx.ref),
                           ctx.ref, noun="role")

    def plan(self, ctx: StepContext) -> None:
        opts = role_options(ctx.cls)
        targets = _targets(ctx, opts)
        role = _role_of(ctx.old, opts, ctx.ref)
        password = ctx.value(ctx.old)
        targets.pg.check_admin()
        number = ctx.old.number if ctx.old is not None else "?"
        try:
            targets.pg.check_login(targets.admin_dsn, role, password,
                                   probe_table=opts.probe_table)
            if targets.bouncer is not None:
                targets.bouncer.check_login(targets.bouncer_dbname, role, password)
        except TargetError as exc:
            raise RotationRefused(
                f"{ctx.ref}: the current password (version {number}, role {role!r}) does not "
                f"log in, so the rotation did not start and nothing was changed: {exc}"
            ) from None
        layout = targets.pg.ensure_layout(opts.layout.group, opts.layout.logins)
        reclaimed, warnings = targets.pg.reclaim(layout)
        ctx.evidence["ownership"] = {"creates_as": layout.group, "reclaimed": reclaimed,
                                     "warnings": warnings}
        for warning in warnings:
            ctx.emit(f"warning: {warning}")
        ctx.evidence["login"] = {
            "role": role, "direct": "ok", "probe_table": opts.probe_table,
            "pgbouncer": "ok" if targets.bouncer is not None else "not configured",
        }
        ctx.evidence["layout"] = {"group": layout.group, "logins": list(layout.logins)}
        if opts.backup_dir is not None:
            folder = Path(opts.backup_dir)
            folder = folder if folder.is_absolute() else ctx.workdir / folder
            path = folder / f"{ctx.ref.environment}-{ctx.ref.name}-{ctx.rotation}.dump"
            ctx.emit(f"pg_dump -Fc to {path}…")
            result = backup(targets.admin_dsn, path, password=targets.admin_password,
                            pg_dump=opts.pg_dump)
            ctx.state["backup"] = {"path": str(result.path), "sha256": result.sha256}
            ctx.evidence["backup"] = {
                "path": str(result.path), "sha256": result.sha256, "size": result.size,
                "entries": result.entries, "verified": "pg_restore --list",
            }

    def version_meta(self, ctx: StepContext) -> dict[str, Any]:
        opts = role_options(ctx.cls)
        return {"role": opts.layout.other(_role_of(ctx.old, opts, ctx.ref))}

    def apply(self, ctx: StepContext) -> None:
        opts = role_options(ctx.cls)
        targets = _targets(ctx, opts)
        _, role = self._roles(ctx, opts)
        verifier = targets.pg.set_password(role, ctx.value(ctx.new))
        if targets.bouncer is not None:
            targets.bouncer.publish({role: verifier})
        ctx.state["applied_role"] = role
        ctx.evidence["applied"] = {
            "role": role, "password": "SCRAM-SHA-256 verifier (computed by keyroll)",
            "pgbouncer": "auth_file written, RELOAD" if targets.bouncer else "not configured",
        }

    def test(self, ctx: StepContext) -> None:
        opts = role_options(ctx.cls)
        targets = _targets(ctx, opts)
        old, role = self._roles(ctx, opts)
        password = ctx.value(ctx.new)
        acting = targets.pg.check_login(targets.admin_dsn, role, password,
                                        probe_table=opts.probe_table)
        if targets.bouncer is not None:
            targets.bouncer.check_login(targets.bouncer_dbname, role, password)
        ctx.evidence["checked"] = {
            "role": role, "direct": "ok", "probe_table": opts.probe_table,
            "acts_as": acting,
            "pgbouncer": "ok" if targets.bouncer is not None else "not configured",
        }
        if acting != opts.layout.group:
            raise StepFailed(
                f"{ctx.ref}: role {role!r} logs in acting as {acting!r}, not as the group "
                f"{opts.layout.group!r}: what it creates would be out of reach of {old!r}; "
                f"set it with ALTER ROLE … SET role = {opts.layout.group!r} (the plan step "
                "does) and check that nothing resets it")
        diff = targets.pg.privilege_diff(
            old, role, exclude=[opts.layout.group, *opts.layout.logins])
        ctx.evidence["privileges"] = {"compared_with": old, **diff.to_json()}
        if not diff.same:
            raise StepFailed(
                f"{ctx.ref}: role {role!r} does not hold the same privileges as the active "
                f"role {old!r} ({diff.summary(role)}): grant them to the group "
                f"{opts.layout.group!r}, not to a login role, then rotate again")

    def overlap_done(self, ctx: StepContext, started: datetime) -> Verdict:
        if ctx.incident:
            return Verdict(True, "incident: no overlap (the old role's sessions are ended at "
                           "retire)")
        by_time = super().overlap_done(ctx, started)
        if not by_time.done or not ctx.cls.overlap.until_unused:
            return by_time
        opts = role_options(ctx.cls)
        targets = _targets(ctx, opts)
        old, _ = self._roles(ctx, opts)
        if targets.bouncer is None:
            return settled(ctx, what=f"role {old!r}", count=targets.pg.session_count(old),
                           started=started)
        # Behind PgBouncer, pg_stat_activity also lists the idle server connections PgBouncer
        # keeps pooled: count PgBouncer's clients, plus the sessions PgBouncer does not own
        # (apps or jobs connecting directly). Server PIDs are read after the session list, so
        # a pooled connection can only be counted as direct (a longer wait), never missed.
        sessions = targets.pg.session_pids(old)
        pooled = targets.bouncer.server_pids(old)
        direct = [pid for pid in sessions if pid not in pooled]
        clients = targets.bouncer.client_count(old)
        verdict = settled(ctx, what=f"role {old!r}", count=clients + len(direct),
                          started=started)
        evidence = {**verdict.evidence, "pgbouncer_clients": clients, "direct_sessions":
                    len(direct), "pooled_server_connections": len(sessions) - len(direct)}
        return Verdict(verdict.done, verdict.reason, evidence)

    def retire(self, ctx: StepContext) -> None:
        opts = role_options(ctx.cls)
        targets = _targets(ctx, opts)
        old, _ = self._roles(ctx, opts)
        # PgBouncer first: it checks clients against its own auth_file and would keep letting
        # the old password in over pooled server connections.
        if targets.bouncer is not None:
            targets.bouncer.publish({}, remove=[old])
        end_sessions = targets.bouncer is not None or ctx.incident
        if opts.retire is RetireMode.DROP:
            # no new logins, end the sessions while they still carry the role's name, then drop
            _retire_if_present(targets.pg, old, RetireMode.NOLOGIN)
            terminated = targets.pg.terminate_sessions(old) if end_sessions else 0
            result = targets.pg.retire(old, RetireMode.DROP, reassign_to=opts.layout.group)
        else:
            result = targets.pg.retire(old, opts.retire)
            terminated = targets.pg.terminate_sessions(old) if end_sessions else 0
        forget_quiet(ctx)
        ctx.evidence["retired_role"] = {
            "role": old, "mode": result.mode.value,
            "break_glass_fingerprint": result.break_glass_fingerprint,
            "sessions_terminated": terminated,
            "pgbouncer": "removed from auth_file, RELOAD" if targets.bouncer else "not configured",
        }

    def revoke(self, ctx: StepContext) -> None:
        opts = role_options(ctx.cls)
        targets = _targets(ctx, opts)
        old, _ = self._roles(ctx, opts)
        if opts.retire is RetireMode.DROP:
            ctx.evidence["terminated"] = {"role": old, "sessions": "ended before the drop"}
            return
        ctx.evidence["terminated"] = {"role": old,
                                      "sessions": targets.pg.terminate_sessions(old)}

    def verify_current(self, ctx: StepContext, version: Version) -> dict[str, Any]:
        opts = role_options(ctx.cls)
        targets = _targets(ctx, opts)
        role = _role_of(version, opts, ctx.ref)
        password = ctx.value(version)
        targets.pg.check_login(targets.admin_dsn, role, password, probe_table=opts.probe_table)
        if targets.bouncer is not None:
            targets.bouncer.check_login(targets.bouncer_dbname, role, password)
        return {"login": {"role": role, "direct": "ok",
                          "pgbouncer": "ok" if targets.bouncer is not None else "not configured"}}

    def rollback(self, ctx: StepContext) -> None:
        if ctx.new is None:
            return  # nothing reached the target: apply comes after create
        opts = role_options(ctx.cls)
        old, role = self._roles(ctx, opts)
        forget_quiet(ctx)
        targets = _targets(ctx, opts)
        if targets.bouncer is not None:
            targets.bouncer.publish({}, remove=[role])
        mode = RetireMode.NOLOGIN if opts.retire is RetireMode.DROP else opts.retire
        _retire_if_present(targets.pg, role, mode)
        ctx.evidence["reset_role"] = {"role": role, "active_role_untouched": old}


def _retire_if_present(pg: PostgresTarget, role: str, mode: RetireMode) -> None:
    """`PostgresTarget.retire`, but a role that is already gone counts as retired (a rerun after
    a crash in ``drop`` mode; a rollback before the layout existed)."""
    with contextlib.suppress(RoleMissing):
        pg.retire(role, mode)


def adopt_role(
    cls: SecretClass, *, role: str | None = None, environ: Mapping[str, str] | None = None
) -> AdoptResult:
    """``keyroll adopt``: bring the single role apps use today into the class's alternation.

    The role keeps its name, password and sessions; its grants move to ``group_role``; the
    other login role is created ``NOLOGIN`` (the first rotation gives it a password).
    Privileges are compared before and after, and the whole change is one transaction.

    Args:
        cls: a ``postgres-role`` class.
        role: the existing role; default: the first of ``login_roles``.
        environ: where the admin DSN env var is read (default ``os.environ``).

    Raises:
        UsageError: the class is not ``postgres-role``, or ``role`` is not a login role of it.
        RotationRefused: the admin DSN env var is not set.
        TargetError: the database refused (nothing was changed).
    """
    if cls.kind is not Kind.POSTGRES_ROLE:
        raise UsageError(f"class {cls.name!r} is {cls.kind.value}: adopt works on postgres-role "
                         "classes")
    opts = role_options(cls)
    chosen = role or opts.layout.logins[0]
    if chosen not in opts.layout.logins:
        raise UsageError(f"--role {chosen!r} is not one of class {cls.name!r}'s "
                         f"options.login_roles {list(opts.layout.logins)!r}: set login_roles "
                         "to the role apps use today and the name of its alternate")
    pg, _, _ = _admin(opts, os.environ if environ is None else environ, cls.name)
    return pg.adopt(chosen, group=opts.layout.group, alternate=opts.layout.other(chosen))
