"""``keyroll adopt``: bring the single database role apps use today into the alternation.

Seed 004 §5 starts from one role (``goodgo_app``) that every app logs in as. Rotating it
without downtime needs a group role that holds the grants and a second login role; ``adopt``
builds that around the existing role in one transaction, without changing its password or
ending its sessions, and proves it by comparing the role's effective privileges before and
after (and the alternate's with the same set).
"""

from __future__ import annotations

from typing import Annotated

import typer

from keyroll.cli.context import AppContext
from keyroll.cli.output import err, escape, out, print_json
from keyroll.model import Label
from keyroll.rotation.strategies.postgres_role import adopt_role, role_options

__all__ = ["register"]


def adopt(
    ctx: typer.Context,
    class_name: Annotated[str, typer.Argument(metavar="CLASS", help="A postgres-role class.")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")] = ...,  # type: ignore[assignment]
    role: Annotated[
        str | None,
        typer.Option("--role", help="The role apps log in as today (default: the first of "
                     "options.login_roles)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Turn an existing login role into the class's alternating pair under its group role.

    Memberships, grants, owned objects, default privileges and policies move to
    options.group_role; the other login role is created NOLOGIN (the first rotation gives it a
    password) with copies of the role's settings; both act as the group role from their next
    login, so what they create belongs to it. The role keeps its password and its sessions.
    What cannot move is refused by name; privileges are compared before and after; on any
    refusal or difference nothing changes.
    """
    app: AppContext = ctx.obj
    cls, ref = app.inventory.resolve(class_name, env)
    result = adopt_role(cls, role=role)
    layout = result.layout
    adopted = role or role_options(cls).layout.logins[0]
    evidence = {
        "group": layout.group, "logins": list(layout.logins), "role": adopted,
        "moved_grants": result.moved_grants, "owned_objects": result.owned_objects,
        "default_privileges": result.default_privileges, "policies": result.policies,
        "settings_copied": result.settings_copied, "creates_as": layout.group,
        "moved": list(result.moved), "privileges_verified": result.privileges_verified,
        "already_adopted": result.already_adopted, "warnings": list(result.warnings),
    }
    app.journal.append("target.adopt", ref=ref, evidence=evidence)
    labels = app.store.get_labels(ref)
    current_role = None
    if Label.CURRENT in labels:
        current_role = app.store.get_version(ref, labels[Label.CURRENT]).meta.get("role")
    if as_json:
        print_json({**evidence, "secret": str(ref), "store_current_role": current_role})
        return
    console = out()
    if result.already_adopted:
        console.print(f"{ref}: role {adopted!r} is already in group {layout.group!r} with "
                      f"{layout.other(adopted)!r}; nothing changed "
                      f"({result.privileges_verified} privileges verified)", markup=False)
    else:
        console.print(
            f"{ref}: role {adopted!r} adopted: group {layout.group!r} now holds its "
            f"{result.moved_grants} grant(s), owns its {result.owned_objects} object(s), "
            f"has its {result.default_privileges} default-privilege entr(ies) and "
            f"{result.policies} polic(ies); alternate {layout.other(adopted)!r} created "
            f"NOLOGIN with {result.settings_copied} copied setting(s); both create objects "
            f"as {layout.group!r}; {result.privileges_verified} "
            "privileges verified identical for both login roles", markup=False)
        for line in result.moved:
            console.print(f"  moved: {escape(line)}", markup=False)
    for warning in result.warnings:
        err().print(f"warning: {warning}", markup=False)
    if Label.CURRENT not in labels:
        console.print(
            f"next: store the password apps use today: `keyroll import {cls.name} --env {env}` "
            f"and paste their DSN (postgresql://{adopted}:…@…) on stdin", markup=False)
    elif current_role not in (None, adopted):
        err().print(f"warning: the store's current version of {ref} belongs to role "
                    f"{current_role!r}, not {adopted!r}", markup=False)


def register(app: typer.Typer) -> None:
    app.command()(adopt)
