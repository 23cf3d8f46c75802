"""Rotations: ``rotate``, ``advance``, ``rotations``, ``rollback``, ``confirm``, ``approve``.

The engine emits events; `EventPrinter` shows them live, one line each.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from keyroll.cli.context import AppContext, parse_time
from keyroll.cli.output import err, escape, out, print_json
from keyroll.errors import UsageError
from keyroll.model import SecretValue
from keyroll.rotation.engine import Engine
from keyroll.rotation.events import Event, Observer
from keyroll.rotation.record import ACTIVE, Rotation, RotationState

__all__ = ["EventPrinter", "EventStreamer", "register"]

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


class EventStreamer:
    """``rotate --json``: one JSON object per engine event on stdout (NDJSON), schema
    ``keyroll.rotate-event/v1``; the last line is ``keyroll.rotate-result/v1``. Events carry
    fingerprints and redacted evidence only, as the journal does."""

    def __call__(self, event: Event) -> None:
        _line({"schema": "keyroll.rotate-event/v1", "rotation": event.rotation,
               "secret": str(event.ref), "kind": event.kind, "step": event.step,
               "message": event.message, "at": event.at.isoformat(),
               "evidence": dict(event.evidence)})


def _line(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def _engine(app: AppContext, *, quiet: bool = False,
            observer: Callable[[Event], None] | None = None) -> Engine:
    """The engine as every command runs it: events printed (or streamed as JSON), and sent
    where ``[notify]`` says (the notices go out when the command ends)."""
    observers: list[Observer] = [observer or EventPrinter(quiet)]
    if app.notifier is not None:
        observers.append(app.notifier)
    return Engine(
        app.store, app.inventory, journal=app.journal, clock=app.clock,
        observers=observers, workdir=app.inventory_path.parent,
        actor_groups=app.identity[1],
    )


def _finish(record: Rotation) -> None:
    """Exit non-zero when the rotation ended in (or turned into) a rollback."""
    error = record.body.error
    if record.state == RotationState.ROLLED_BACK or (record.reverted and error is not None):
        what = "rolled back" if record.state == RotationState.ROLLED_BACK else (
            "is rolling back (a rotation back, through its overlap)")
        err().print(f"error: rotation {record.id} {what} at "
                    f"{error.step if error else '?'}: {escape(error.message) if error else ''}",
                    markup=False)
        raise typer.Exit(1)


def rotate(
    ctx: typer.Context,
    class_name: Annotated[str, typer.Argument(metavar="CLASS")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")] = ...,  # type: ignore[assignment]
    incident: Annotated[bool, typer.Option("--incident", help="Suspected leak: no overlap, "
                                           "retire at once, run revoke hooks.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan, change nothing.")] = False,
    drill: Annotated[bool, typer.Option("--drill", help="Record it as a rehearsal.")] = False,
    queue: Annotated[bool, typer.Option(
        "--queue", help="Outside the change window: create the rotation anyway; it waits "
        "for the window, and `keyroll advance`/`serve` runs it then.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Stream events as NDJSON (keyroll.rotate-event/v1, then "
        "keyroll.rotate-result/v1), for CI.")] = False,
) -> None:
    """Rotate one secret now, showing every step live."""
    app: AppContext = ctx.obj
    app.guard_clock(env)
    engine = _engine(app, observer=EventStreamer() if as_json else None)
    if dry_run and as_json:
        for planned in engine.preview(class_name, env, incident=incident):
            _line({"schema": "keyroll.rotate-plan/v1", "step": planned.step,
                   "description": planned.description})
        return
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
    record = engine.start(class_name, env, incident=incident, drill=drill, queue=queue)
    record = engine.run(record.id)
    if as_json:
        _line({"schema": "keyroll.rotate-result/v1", "rotation": record.id,
               "secret": f"{env}/{class_name}", "state": str(record.state),
               "waiting": record.state in ACTIVE})
    _finish(record)
    if record.state not in ("done",) and not as_json:
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
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON document (keyroll.advance/v1) instead of lines.")] = False,
) -> None:
    """The cron tick: move every rotation whose wait is over; start due ones (auto)."""
    app: AppContext = ctx.obj
    inventory = app.inventory
    environments = set(inventory.environments) if env is None else {env}
    if env is not None:
        inventory.policy(env)
    if now is not None:
        fixed = parse_time(now, "--now")
        app.clock = lambda: fixed  # the engine's clock; the journal keeps real time
        app.moved_by = "--now"
    moved = app.clock_moved
    if moved:  # the same guard for --now and KEYROLL_NOW: never a production environment
        production = environments & app.production_environments()
        if env is not None and production:
            app.guard_clock(env)
        environments -= production
        if production:
            err().print(f"{moved}: skipping production environments "
                        f"({', '.join(sorted(production))})", markup=False)
    report = _engine(app, quiet=as_json).advance(start_due=start_due, environments=environments)
    if as_json:  # step lines went to stderr (quiet)
        print_json({"schema": "keyroll.advance/v1", "moved": list(report.moved),
                    "started": list(report.started), "waiting": list(report.waiting),
                    "busy": list(report.busy),
                    "failed": [{"rotation": str(what), "error": str(why)}
                               for what, why in report.failed]})
        if report.failed:
            raise typer.Exit(1)
        return
    console = out()
    console.print(f"advance: {len(report.moved)} moved, {len(report.started)} started, "
                  f"{len(report.waiting)} waiting, {len(report.busy)} busy, "
                  f"{len(report.failed)} failed")
    for what in report.busy:
        console.print(f"busy: {what}: another keyroll process is working on it; will retry "
                      "at the next tick", markup=False)
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
    records = [Rotation.parse(r) for r in app.store.list_rotations()]
    records = [r for r in records if all_ or r.state in ACTIVE]
    if as_json:
        print_json([{
            "id": r.id, "secret": str(r.ref), "state": r.state.value,
            "created_at": r.created_at, "updated_at": r.updated_at,
            "incident": r.body.incident, "drill": r.body.drill,
            "direction": r.body.direction.value, "waiting": r.body.waiting,
            "awaiting": r.body.awaiting,
            "error": {"step": r.body.error.step, "message": r.body.error.message,
                      "at": r.body.error.at} if r.body.error else None,
        } for r in records])
        return
    table = Table(title="rotations" + ("" if all_ else " in flight"))
    for column in ("id", "secret", "state", "since", "waiting for"):
        table.add_column(column)
    for r in records:
        waiting = r.body.waiting or r.body.awaiting or (
            "approval" if r.state == RotationState.AWAITING_APPROVAL else "")
        state = r.state.value + (" (back)" if r.reverted and r.active else "")
        table.add_row(r.id, str(r.ref), state, f"{r.updated_at:%Y-%m-%d %H:%M}", str(waiting))
    out().print(table)


def rollback(
    ctx: typer.Context,
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION")],
) -> None:
    """Undo a rotation before retire. Before promote: target and labels restored. After
    promote: a rotation back (the old version current again, the rolled-back one accepted
    through the overlap, then retired by `keyroll advance`)."""
    app: AppContext = ctx.obj
    engine = _engine(app)
    app.guard_clock(engine.get(rotation_id).ref.environment)
    record = engine.rollback(rotation_id)
    if record.state != RotationState.ROLLED_BACK:
        out().print(f"rotation {record.id} is rolling back at [bold]{record.state}[/]: version "
                    f"{record.body.old_version} is current again; version "
                    f"{record.body.new_version} stays accepted until the overlap ends, then "
                    "`keyroll advance` retires it")


def confirm(
    ctx: typer.Context,
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION")],
    step: Annotated[str, typer.Argument(metavar="STEP")],
) -> None:
    """Confirm a manual step (provider secrets); ``enter`` reads the value from stdin."""
    app: AppContext = ctx.obj
    engine = _engine(app)
    record = engine.get(rotation_id)
    app.guard_clock(record.ref.environment)
    value = None
    if record.body.awaiting == step and engine.manual_step(record, step).takes_value:
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
    app.guard_clock(engine.get(rotation_id).ref.environment)
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
