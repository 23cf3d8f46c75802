"""``keyroll calendar``: what is due when, per environment, with owners (table, JSON, .ics)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from keyroll.calendar import calendar, to_ics
from keyroll.cli.context import AppContext
from keyroll.cli.output import out, print_json
from keyroll.files import write_private

__all__ = ["register"]


def calendar_command(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", min=1, max=3650, help="How far ahead.")] = 90,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    ics: Annotated[Path | None, typer.Option("--ics", help="Also write an iCalendar file.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """What is due when: every secret due in the next --days, per environment, with owners."""
    app: AppContext = ctx.obj
    if env is not None:
        app.inventory.policy(env)
    now = app.clock()
    entries = calendar(app.store, app.inventory, now, days=days, environment=env,
                       now_for=app.now_for)
    if ics is not None:
        write_private(ics, to_ics(entries, app.inventory.project, now))
    if as_json:
        print_json({"now": now.isoformat(), "days": days,
                    "entries": [e.to_json() for e in entries]})
        return
    table = Table(title=f"{app.inventory.project}: due in the next {days} days "
                  f"(from {now:%Y-%m-%d})")
    for column in ("due", "days left", "env", "class", "owner", "tier", "state", "rotation"):
        table.add_column(column)
    for e in entries:
        table.add_row(f"{e.due_at:%Y-%m-%d}", str(e.days_left), e.environment, e.name, e.owner,
                      e.tier, e.state, e.rotation or "-")
    out().print(table)
    if ics is not None:
        out().print(f"wrote {len(entries)} event(s) to {ics}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("calendar")(calendar_command)
