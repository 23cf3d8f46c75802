"""``keyroll status``: every secret's version, fingerprint, age, due date and state."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from keyroll.cli.context import AppContext
from keyroll.cli.output import out, print_json
from keyroll.status import State, statuses

__all__ = ["register"]

_STYLE = {State.OK: "green", State.DUE: "yellow", State.OVERDUE: "bold red", State.MISSING: "dim"}


class FailOn(StrEnum):
    due = "due"
    overdue = "overdue"


def status(
    ctx: typer.Context,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 when any secret is due (or overdue), 3 when any is overdue: for CI.",
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also list secrets never created "
                                       "(otherwise only counted).")] = False,
) -> None:
    """Show every secret: version, fingerprint, age, due date, days left, state."""
    app: AppContext = ctx.obj
    if env is not None:
        app.inventory.policy(env)
    now = app.clock()
    every = statuses(app.store, app.inventory, now, environment=env, now_for=app.now_for)
    rows = every if all_ else [r for r in every if r.state is not State.MISSING]
    hidden = len(every) - len(rows)
    if as_json:
        print_json({"now": now.isoformat(), "never_created": hidden,
                    "secrets": [r.to_json(app.now_for(r.ref.environment)) for r in every]})
    else:
        table = Table(title=f"{app.inventory.project}: secrets at {now:%Y-%m-%d %H:%M} UTC")
        for column in ("class", "env", "kind", "tier", "ver", "fingerprint", "age", "due",
                       "days left", "state"):
            table.add_column(column, justify="right" if column in ("ver", "days left") else "left")
        for row in rows:
            age = row.age_at(app.now_for(row.ref.environment))
            state = row.state.value + (f" ({row.rotation_state})" if row.rotation_state else "")
            table.add_row(
                row.cls.name, row.ref.environment, row.cls.kind.value, row.cls.tier.value,
                str(row.version or "-"), row.fingerprint or "-",
                f"{age.days}d" if age is not None else "-",
                f"{row.due_at:%Y-%m-%d}" if row.due_at else "-",
                str(row.days_left) if row.days_left is not None else "-",
                f"[{_STYLE[row.state]}]{state}[/]",
            )
        out().print(table)
        if hidden:
            out().print(f"{hidden} secret(s) of the inventory were never created: "
                        "`keyroll status --all` lists them", markup=False, highlight=False)
    rows = every
    if fail_on is not None:
        overdue = any(r.state is State.OVERDUE for r in rows)
        due = any(r.state is State.DUE for r in rows)
        if overdue:
            raise typer.Exit(3)
        if fail_on is FailOn.due and due:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(status)
