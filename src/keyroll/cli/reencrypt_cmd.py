"""``keyroll reencrypt``: rewrite an encryption-key class's columns under its current key.

The work is `keyroll.reencrypt.Reencryptor`; this module draws the progress bar (rows/s,
ETA) on stderr when it is a terminal, prints the summary (a table, or ``--json``), records the
run in the journal (counts and row keys, never a value) and exits 1 when a row could not be
rewritten or rows remain.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from keyroll.cli.context import AppContext
from keyroll.cli.output import err, out, print_json
from keyroll.reencrypt import Progress as JobProgress
from keyroll.reencrypt import Reencryptor, ReencryptReport, cipher_for_class
from keyroll.reencrypt.throttle import ThrottlePolicy

__all__ = ["reencrypt", "register"]

_SHOWN_KEYS = 20


class _RowsPerSecond(ProgressColumn):
    """rows/s of a task (rich's own speed column speaks bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- rows/s" if speed is None else f"{speed:,.0f} rows/s")


class _Bar:
    """The CLI's progress observer: one bar per column."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            _RowsPerSecond(), TimeRemainingColumn(), console=err(), transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, update: JobProgress) -> None:
        task = self.tasks.get(update.column)
        if task is None:
            task = self.tasks[update.column] = self.progress.add_task(update.column,
                                                                      total=update.total)
        self.progress.update(task, completed=update.done, total=update.total,
                             description=f"{update.column} (pass {update.passes})"
                             + _throttle_text(update))


def _throttle_text(update: JobProgress) -> str:
    """The throttle's state for the bar: probe p99 against its target, batch, pause."""
    if update.throttled is not None:
        return f" throttled: {update.throttled}"
    if update.target_p99_ms is None:
        return ""
    p99 = "--" if update.probe_p99_ms is None else f"{update.probe_p99_ms:.2f}"
    return (f" p99 {p99}/{update.target_p99_ms:.2f} ms, batch {update.batch_size}, "
            f"pause {update.pause_ms:.0f} ms")


def _print_throttle(report: ReencryptReport) -> None:
    for var, t in report.throttle.items():
        if t["target_p99_ms"] is None:
            probe = "no latency probe on this database"
        else:
            probe = (f"probe p99 {t['probe_p99_ms']} ms (baseline {t['baseline_p99_ms']} ms, "
                     f"target {t['target_p99_ms']} ms)")
        lag = ("no replicas" if not t["replicas"] else
               f"{t['replicas']} replica(s), max lag {t['max_lag_s']} s (limit "
               f"{t['max_lag_allowed_s']:g} s)")
        out().print(f"throttle ({var}): {probe}; slowed {t['backoffs']} times, held "
                    f"{t['holds']} times ({t['held_seconds']} s), paused "
                    f"{t['paused_seconds']} s; final batch {t['final_batch']}; {lag}; "
                    f"CPU priority {report.priority}", markup=False)


def _needed_keys(report: ReencryptReport, class_name: str, env: str) -> None:
    """Say which key (kid, version, fingerprint) rows need that no retained key is."""
    for c in report.columns:
        for m in c.missing_keys:
            head = f"{c.label}: {m['rows']} rows are under kid {m['kid']}, which no retained key is"
            if m["version"] is None:
                tail = (f"; no version of {report.secret} had that kid (data of another "
                        "environment or class?)")
            elif not m["destroyed"]:
                tail = (f": version {m['version']} (fingerprint {m['fingerprint']}) is in the "
                        "store but not retained (no label)")
            elif m["escrowed_until"]:
                tail = (f": version {m['version']} (fingerprint {m['fingerprint']}) was "
                        f"destroyed and is escrowed until {m['escrowed_until'][:10]}: run "
                        f"`keyroll escrow restore {class_name} --env {env} --version "
                        f"{m['version']} --private-key FILE`")
            else:
                tail = (f": version {m['version']} (fingerprint {m['fingerprint']}) was "
                        "destroyed without escrow; these rows cannot be decrypted")
            err().print(f"error: {head}{tail}", markup=False)


def _print(report: ReencryptReport) -> None:
    console = out()
    title = (f"{report.secret}: rows per key (current {report.current_kid})" if report.dry_run
             else f"{report.secret}: re-encrypted under {report.current_kid}")
    table = Table(title=title)
    if report.dry_run:
        for name in ("column", "form", "rows per kid", "to rewrite"):
            table.add_column(name)
        for c in report.columns:
            census = ", ".join(
                f"{kid}{' (current)' if kid == report.current_kid else ''}: {n}"
                for kid, n in sorted(c.census.items()))
            table.add_row(c.label, c.form, census or "empty", str(c.remaining))
        console.print(table)
        console.print("dry run: nothing was changed")
        return
    for name in ("column", "rewritten", "app wrote first", "failed", "remaining", "passes",
                 "rows/s", "longest batch"):
        table.add_column(name)
    for c in report.columns:
        table.add_row(c.label, str(c.rewritten), str(c.conflicts), str(c.failed),
                      str(c.remaining), str(c.passes), f"{c.rows_per_second:,.0f}",
                      f"{c.longest_batch_ms:.0f} ms")
    console.print(table)
    _print_throttle(report)
    for c in report.columns:
        if c.resumed_after is not None:
            console.print(f"{c.label}: resumed after row key {c.resumed_after}")
    for c in report.columns:
        if c.failed:
            shown = ", ".join(c.failed_keys[:_SHOWN_KEYS])
            more = f" and {c.failed - _SHOWN_KEYS} more" if c.failed > _SHOWN_KEYS else ""
            err().print(f"error: {c.label}: {c.failed} rows no retained key opens (row keys: "
                        f"{shown}{more}); they were left as they are", markup=False)
        elif c.remaining:
            err().print(f"error: {c.label}: {c.remaining} rows are still not under the current "
                        "key (written under an old key while the job ran?): run it again",
                        markup=False)


def reencrypt(
    ctx: typer.Context,
    class_name: Annotated[str, typer.Argument(metavar="CLASS")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")] = ...,  # type: ignore[assignment]
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count rows per key id; change "
                                          "nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000,
                                            help="Rows per batch (one transaction each).")] = 1000,
    pause_ms: Annotated[int, typer.Option("--pause-ms", min=0, max=60_000,
                                          help="Sleep between batches, to spare a busy "
                                          "database (with the throttle: the least).")] = 0,
    max_p99_ms: Annotated[float | None, typer.Option(
        "--max-p99-ms", help="Keep the latency probe's p99 under this (ms); default: "
        "--max-slowdown times the baseline it measures first.")] = None,
    max_slowdown: Annotated[float, typer.Option(
        "--max-slowdown", help="Keep the probe's p99 within this multiple of its "
        "baseline.")] = 1.5,
    max_lag: Annotated[float, typer.Option(
        "--max-lag", help="Hold while a replica lags more than this (seconds).")] = 5.0,
    max_waiting: Annotated[int, typer.Option(
        "--max-waiting", help="Hold while more sessions than this wait on locks.")] = 5,
    no_throttle: Annotated[bool, typer.Option(
        "--no-throttle", help="Run at --batch-size and --pause-ms, whatever the database "
        "feels.")] = False,
    priority: Annotated[str | None, typer.Option(
        "--priority", help="The job's own CPU priority: idle (the default with the "
        "throttle: any other process first), low (nice 19) or normal (the default with "
        "--no-throttle).")] = None,
) -> None:
    """Rewrite every row of the class's columns under its current key (resumable, online)."""
    app: AppContext = ctx.obj
    cls, ref = app.inventory.resolve(class_name, env)
    cipher = cipher_for_class(app.store, ref, cls)
    bar = _Bar() if (sys.stderr.isatty() and not as_json and not dry_run) else None
    throttle = ThrottlePolicy(enabled=not no_throttle, max_p99_ms=max_p99_ms,
                              max_slowdown=max_slowdown, max_lag=max_lag,
                              max_waiting=max_waiting)
    if priority is None:
        priority = "normal" if no_throttle else "idle"
    job = Reencryptor(cipher, store=app.store, ref=ref, batch_size=batch_size,
                      pause=pause_ms / 1000, progress=bar, throttle=throttle, priority=priority)
    if bar is not None:
        with bar.progress:
            report = job.run(cls.columns, dry_run=dry_run)
    else:
        report = job.run(cls.columns, dry_run=dry_run)
    summary = report.to_json()
    evidence = {**summary, "columns": [
        {**c, "failed_keys": c["failed_keys"][:_SHOWN_KEYS]} for c in summary["columns"]]}
    app.journal.append("reencrypt.dry-run" if dry_run else "reencrypt.run", ref=ref,
                       evidence=evidence, outcome="ok" if report.ok else "failed")
    if as_json:
        print_json(summary)
    else:
        _print(report)
    _needed_keys(report, class_name, env)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``reencrypt`` to the app."""
    app.command("reencrypt")(reencrypt)
