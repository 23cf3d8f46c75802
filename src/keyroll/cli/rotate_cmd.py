"""Rotations: ``rotate``, ``advance``, ``rotations``, ``rollback``, ``confirm``, ``approve``.

The engine emits events; `EventPrinter` shows them live, one line each.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer
from rich.table import Table

from keyroll.audit import Journal
from keyroll.cli.context import AppContext, parse_time
from keyroll.cli.output import err, escape, out, print_json
from keyroll.errors import UsageError
from keyroll.model import SecretValue
from keyroll.rotation.engine import ACTIVE, Engine
from keyroll.rotation.events import Event
from keyroll.stores.base import RotationRecord

__all__ = ["EventPrinter", "register"]

_MARK = {
    "step.started": "[cyan]…[/]", "step.finished": "[green]✓[/]", "step.failed": "[red]✗[/]",
    "waiting": "[yellow]⏳[/]", "paused": "[yellow]✋[/]", "rolled-back": "[red]↺[/]",
    "done": "[bold green]✔[/]", "approval": "[yellow]👥[/]", "requested": "•",
    "confirmed": "[green]✓[/]", "hook": "  ↳", "progress": "  ·",
}


class EventPrinter:
    """Prints engine events as they happen (the CLI's observer)."""

    def __init__(self, quiet: bool = False) -> None:
        self.console = err() if quiet else out()

    def __call__(self, event: Event) -> None:
        if event.kind == "step.started":
            return
        mark = _MARK.get(event.kind, "•")
        step = f"[bold]{event.step}[/] " if event.step and event.kind != "hook" else ""
        # the message is plain text (it may hold "[redacted]" or a path with brackets)
        self.console.print(f"{mark} {step}", end="", highlight=False)
        self.console.print(event.message, markup=False, highlight=False)


def _engine(app: AppContext, *, quiet: bool = False) -> Engine:
    return Engine(
        app.store, app.inventory, journal=app.journal, clock=app.clock,
        observers=[EventPrinter(quiet)], workdir=app.inventory_path.parent,
    )


def _finish(record: RotationRecord) -> None:
    """Exit non-zero when the rotation ended in a rollback."""
    if record.state == "rolled-back":
        error = record.body.get("error") or {}
        err().print(f"error: rotation {record.id} rolled back at {error.get('step')}: "
                    f"{escape(str(error.get('message')))}", markup=False)
        raise typer.Exit(1)


def rotate(
    ctx: typer.Context,
    class_name: Annotated[str, typer.Argument(metavar="CLASS")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")] = ...,  # type: ignore[assignment]
    incident: Annotated[bool, typer.Option("--incident", help="Suspected leak: no overlap, "
                                           "retire at once, run revoke hooks.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan, change nothing.")] = False,
    drill: Annotated[bool, typer.Option("--drill", help="Record it as a rehearsal.")] = False,
) -> None:
    """Rotate one secret now, showing every step live."""
    app: AppContext = ctx.obj
    engine = _engine(app)
    if dry_run:
        table = Table(title=f"plan: rotate {class_name} in {env}"
                      + (" (incident)" if incident else ""))
        table.add_column("step")
        table.add_column("what happens")
        for planned in engine.preview(class_name, env, incident=incident):
            table.add_row(planned.step, planned.description)
        out().print(table)
        out().print("dry run: nothing was changed")
        return
    if drill and env not in [e for e, p in app.inventory.environments.items() if p.drill] and (
        app.inventory.policy(env).production
    ):
        raise UsageError(f"--drill is for rehearsal environments; {env} is production")
    record = engine.start(class_name, env, incident=incident, drill=drill)
    record = engine.run(record.id)
    _finish(record)
    if record.state not in ("done",):
        out().print(f"rotation {record.id} is at [bold]{record.state}[/]: "
                    "`keyroll advance` moves it on (cron), `keyroll rotations` lists it")


def advance(
    ctx: typer.Context,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    now: Annotated[str | None, typer.Option(
        "--now", help="Pretend it is this time (ISO 8601), for demos and drills: never applied "
        "to production environments, and the journal keeps the real time.")] = None,
    start_due: Annotated[bool, typer.Option("--start-due/--no-start-due",
                                            help="Start due rotations where auto = true.")] = True,
) -> None:
    """The cron tick: move every rotation whose wait is over; start due ones (auto)."""
    app: AppContext = ctx.obj
    inventory = app.inventory
    environments = set(inventory.environments) if env is None else {env}
    if env is not None:
        inventory.policy(env)
    if now is not None:
        fixed = parse_time(now, "--now")
        production = {e for e in environments if inventory.policy(e).production}
        if env is not None and production:
            raise UsageError(f"--now cannot be used on {env}: it is a production environment")
        environments -= production
        if production:
            err().print(f"--now: skipping production environments ({', '.join(sorted(production))})",
                        markup=False)
        app.clock = lambda: fixed  # the engine's clock; the journal keeps real time
    engine = Engine(
        app.store, inventory, journal=Journal(app.store), clock=app.clock,
        observers=[EventPrinter()], workdir=app.inventory_path.parent,
    )
    report = engine.advance(start_due=start_due, environments=environments)
    console = out()
    console.print(f"advance: {len(report.moved)} moved, {len(report.started)} started, "
                  f"{len(report.waiting)} waiting, {len(report.failed)} failed")
    for what, why in report.failed:
        err().print(f"error: {escape(str(what))}: {escape(str(why))}", markup=False)
    if report.failed:
        raise typer.Exit(1)


def rotations(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include finished ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List rotations in flight (or all)."""
    app: AppContext = ctx.obj
    records = [r for r in app.store.list_rotations() if all_ or r.state in ACTIVE]
    if as_json:
        print_json([{
            "id": r.id, "secret": str(r.ref), "state": r.state, "created_at": r.created_at,
            "updated_at": r.updated_at, "incident": r.body.get("incident"),
            "drill": r.body.get("drill"), "waiting": r.body.get("waiting"),
            "awaiting": r.body.get("awaiting"), "error": r.body.get("error"),
        } for r in records])
        return
    table = Table(title="rotations" + ("" if all_ else " in flight"))
    for column in ("id", "secret", "state", "since", "waiting for"):
        table.add_column(column)
    for r in records:
        waiting = r.body.get("waiting") or r.body.get("awaiting") or (
            "approval" if r.state == "awaiting-approval" else "")
        table.add_row(r.id, str(r.ref), r.state, f"{r.updated_at:%Y-%m-%d %H:%M}", str(waiting))
    out().print(table)


def rollback(
    ctx: typer.Context,
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION")],
) -> None:
    """Undo a rotation before retire: target and labels restored."""
    app: AppContext = ctx.obj
    _engine(app).rollback(rotation_id)


def confirm(
    ctx: typer.Context,
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION")],
    step: Annotated[str, typer.Argument(metavar="STEP")],
) -> None:
    """Confirm a manual step (provider secrets); ``enter`` reads the value from stdin."""
    app: AppContext = ctx.obj
    engine = _engine(app)
    record = engine.get(rotation_id)
    value = None
    if record.body.get("awaiting") == step and engine.manual_step(record, step).takes_value:
        text = (getpass.getpass("new value (not echoed): ") if sys.stdin.isatty()
                else sys.stdin.readline().rstrip("\r\n"))
        value = SecretValue(text)
    engine.confirm(rotation_id, step, value)
    _finish(engine.run(rotation_id))


def approve(
    ctx: typer.Context,
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION")],
) -> None:
    """Approve someone else's rotation (two-person rule), then run it."""
    app: AppContext = ctx.obj
    engine = _engine(app)
    record = engine.approve(rotation_id)
    if record.state == "plan":
        _finish(engine.run(rotation_id))


def register(app: typer.Typer) -> None:
    app.command()(rotate)
    app.command()(advance)
    app.command()(rotations)
    app.command()(rollback)
    app.command()(confirm)
    app.command()(approve)
