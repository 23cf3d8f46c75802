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

from keyroll.cli import exitcodes
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


def _failed(record: Rotation) -> bool:
    """The rotation ended in (or turned into) a rollback because something failed."""
    return record.state == RotationState.ROLLED_BACK or (
        record.reverted and record.body.error is not None)


def _waiting_for(record: Rotation) -> str | None:
    """What a rotation in flight waits for (None once it ended)."""
    if record.state not in ACTIVE:
        return None
    if record.state == RotationState.AWAITING_APPROVAL:
        return "approval"
    if record.state == RotationState.AWAITING_CONFIRMATION:
        return f"confirmation of {record.body.awaiting}"
    if record.state == RotationState.OVERLAP:
        return record.body.waiting or "the overlap's end"
    return f"its {record.state} step"


def _fields(record: Rotation) -> dict[str, Any]:
    """The rotation part of every ``--json`` document of a rotation command."""
    error = record.body.error
    return {"rotation": record.id, "secret": str(record.ref), "state": str(record.state),
            "direction": record.body.direction.value, "waiting": record.state in ACTIVE,
            "waiting_for": _waiting_for(record),
            "error": None if error is None else {"step": error.step, "message": error.message,
                                                 "at": error.at.isoformat()}}


def _exit_code(record: Rotation) -> int:
    if _failed(record):
        return exitcodes.FAILED
    return exitcodes.WAITING if record.state in ACTIVE else exitcodes.OK


def _finish(record: Rotation) -> None:
    """End the command by how the rotation stands: exit 1 when it ended in (or turned into)
    a rollback, `exitcodes.WAITING` while it is parked (overlap, manual step, approval)."""
    error = record.body.error
    if _failed(record):
        what = "rolled back" if record.state == RotationState.ROLLED_BACK else (
            "is rolling back (a rotation back, through its overlap)")
        err().print(f"error: rotation {record.id} {what} at "
                    f"{error.step if error else '?'}: {escape(error.message) if error else ''}",
                    markup=False)
    code = _exit_code(record)
    if code != exitcodes.OK:
        raise typer.Exit(code)


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
        _line({"schema": "keyroll.rotate-result/v1", **_fields(record)})
    elif record.state in ACTIVE:
        out().print(f"rotation {record.id} waits at {record.state} (for "
                    f"{escape(_waiting_for(record) or '')}; exit {exitcodes.WAITING}): "
                    "`keyroll advance` moves it on (cron), `keyroll rotations` lists it",
                    markup=False)
    _finish(record)


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
    engine = _engine(app, quiet=as_json)
    report = engine.advance(start_due=start_due, environments=environments)
    touched = dict.fromkeys((*report.moved, *report.started, *report.waiting))
    in_flight = [rid for rid in touched if engine.get(rid).state in ACTIVE]
    # advance is the scheduler's tick: a rotation left in flight is its normal outcome, so
    # only a failure is non-zero (cron and systemd treat any other code as a failed run)
    code = exitcodes.FAILED if report.failed else exitcodes.OK
    if as_json:  # step lines went to stderr (quiet)
        print_json({"schema": "keyroll.advance/v1", "moved": list(report.moved),
                    "started": list(report.started), "waiting": list(report.waiting),
                    "busy": list(report.busy), "in_flight": in_flight,
                    "failed": [{"rotation": str(what), "error": str(why)}
                               for what, why in report.failed]})
    else:
        console = out()
        console.print(f"advance: {len(report.moved)} moved, {len(report.started)} started, "
                      f"{len(report.waiting)} waiting, {len(report.busy)} busy, "
                      f"{len(report.failed)} failed"
                      + (f"; {len(in_flight)} still in flight"
                         if in_flight and not report.failed else ""))
        for what in report.busy:
            console.print(f"busy: {what}: another keyroll process is working on it; will "
                          "retry at the next tick", markup=False)
        for what, why in report.failed:
            err().print(f"error: {escape(str(what))}: {escape(str(why))}", markup=False)
    if code != exitcodes.OK:
        raise typer.Exit(code)


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


_JSON = "One JSON document ({schema}) instead of lines; step lines go to stderr."


def rollback(
    ctx: typer.Context,
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION")],
    as_json: Annotated[bool, typer.Option(
        "--json", help=_JSON.format(schema="keyroll.rollback/v1"))] = False,
) -> None:
    """Undo a rotation before retire. Before promote: target and labels restored. After
    promote: a rotation back (the old version current again, the rolled-back one accepted
    through the overlap, then retired by `keyroll advance`; exit 75 while it waits)."""
    app: AppContext = ctx.obj
    engine = _engine(app, quiet=as_json)
    app.guard_clock(engine.get(rotation_id).ref.environment)
    record = engine.rollback(rotation_id)
    body = record.body
    if as_json:
        print_json({"schema": "keyroll.rollback/v1", **_fields(record),
                    "current_version": body.old_version,
                    "retiring_version": body.new_version if record.reverted else None})
    elif record.state != RotationState.ROLLED_BACK:
        out().print(f"rotation {record.id} is rolling back at {record.state}: version "
                    f"{body.old_version} is current again; version {body.new_version} stays "
                    "accepted until the overlap ends, then `keyroll advance` retires it "
                    f"(exit {exitcodes.WAITING})", markup=False)
    if record.state in ACTIVE:  # asked for, so not a failure: done, or rotating back
        raise typer.Exit(exitcodes.WAITING)


def confirm(
    ctx: typer.Context,
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION")],
    step: Annotated[str, typer.Argument(metavar="STEP")],
    as_json: Annotated[bool, typer.Option(
        "--json", help=_JSON.format(schema="keyroll.confirm/v1"))] = False,
) -> None:
    """Confirm a manual step (provider secrets); ``enter`` reads the value from stdin (one
    line; never echoed). Exit 75 when the rotation waits again (the next manual step, its
    overlap)."""
    app: AppContext = ctx.obj
    engine = _engine(app, quiet=as_json)
    record = engine.get(rotation_id)
    app.guard_clock(record.ref.environment)
    value = None
    if record.body.awaiting == step and engine.manual_step(record, step).takes_value:
        app.claim_stdin(f"confirm {step}")
        text = (getpass.getpass("new value (not echoed): ") if sys.stdin.isatty()
                else sys.stdin.readline().rstrip("\r\n"))
        value = SecretValue(text)
    engine.confirm(rotation_id, step, value)
    record = engine.run(rotation_id)
    if as_json:
        print_json({"schema": "keyroll.confirm/v1", **_fields(record), "confirmed": step,
                    "by": app.actor})
    _finish(record)


def approve(
    ctx: typer.Context,
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION")],
    as_json: Annotated[bool, typer.Option(
        "--json", help=_JSON.format(schema="keyroll.approve/v1"))] = False,
) -> None:
    """Approve someone else's rotation (two-person rule), then run it. Exit 75 while it
    waits (more approvals needed, its overlap, a manual step)."""
    app: AppContext = ctx.obj
    engine = _engine(app, quiet=as_json)
    app.guard_clock(engine.get(rotation_id).ref.environment)
    record = engine.approve(rotation_id)
    if record.state == RotationState.PLAN:
        record = engine.run(rotation_id)
    if as_json:
        print_json({"schema": "keyroll.approve/v1", **_fields(record), "approved_by": app.actor,
                    "approvals": list(record.body.approvals),
                    "approvals_required": record.body.approvals_required})
    _finish(record)


def register(app: typer.Typer) -> None:
    app.command()(rotate)
    app.command()(advance)
    app.command()(rotations)
    app.command()(rollback)
    app.command()(confirm)
    app.command()(approve)
