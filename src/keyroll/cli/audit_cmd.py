"""``keyroll audit log``, ``keyroll audit verify [--full]`` and ``keyroll audit migrate``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from keyroll.audit import AuditRecord
from keyroll.audit_check import JournalCheck, check_full, check_recent, last_full_check
from keyroll.cli.context import AppContext
from keyroll.cli.output import err, escape, out, print_json

__all__ = ["app"]

app = typer.Typer(help="Read and verify the audit journal.", no_args_is_help=True)


@app.command("log")
def log(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Last N records (0: all).")] = 50,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    secret: Annotated[str | None, typer.Option("--secret", help="Only this class.")] = None,
    rotation: Annotated[str | None, typer.Option("--rotation", help="Only this rotation.")] = None,
) -> None:
    """Show journal records: who did what, when, to which secret (fingerprints only)."""
    context: AppContext = ctx.obj
    records = [
        r for r in context.journal.records()
        if (env is None or r.environment == env)
        and (secret is None or r.secret == secret)
        and (rotation is None or r.rotation == rotation)
    ]
    if limit > 0:
        records = records[-limit:]
    if as_json:
        print_json([_doc(r) for r in records])
        return
    table = Table(title="audit journal")
    for column in ("seq", "time (UTC)", "actor", "action", "secret", "ver", "fingerprints",
                   "outcome"):
        table.add_column(column)
    for r in records:
        table.add_row(
            str(r.seq), f"{r.time:%Y-%m-%d %H:%M:%S}", r.actor, r.action,
            f"{r.environment}/{r.secret}" if r.secret else (r.environment or "-"),
            str(r.version or "-"), " ".join(r.fingerprints) or "-", r.outcome,
        )
    out().print(table)


def _doc(record: AuditRecord) -> dict[str, object]:
    doc: dict[str, object] = json.loads(record.to_json())
    return doc


@app.command()
def verify(
    ctx: typer.Context,
    expect_head: Annotated[
        str | None, typer.Option("--expect-head", help="A head hash pinned earlier (implies "
                                 "--full).")
    ] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Walk the whole chain and record the result (default: only the records "
        "after the verified-head checkpoint).")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document (schema keyroll.audit-verify/v1).")
    ] = False,
) -> None:
    """Check the hash chain: exit 1 and name every edited, deleted, inserted or moved record.

    Without --full only the records after the verified-head checkpoint are read (the
    checkpoint then moves to the head); --full walks every record, records when and what it
    found (the dashboard shows it) and re-anchors the checkpoint.
    """
    context: AppContext = ctx.obj
    journal = context.journal
    if expect_head is not None:
        report = journal.verify(expect_head=expect_head)
        check = JournalCheck(report, "full", 0, report.count, last_full_check(journal.store),
                             None)
    elif full:
        check = check_full(journal)
    else:
        check = check_recent(journal, advance=True)
    report = check.report
    if as_json:
        print_json({"schema": "keyroll.audit-verify/v1", "ok": report.ok, "count": report.count,
                    "head": report.head, "problems": list(report.problems),
                    "mode": check.mode, "since": check.since, "walked": check.walked,
                    "last_full_check": check.last_full.to_json() if check.last_full else None,
                    "layout": journal.store.audit_layout()})
        if not report.ok:
            raise typer.Exit(1)
        return
    if report.ok:
        how = (f"checked records {check.since + 1}-{report.count} after the verified head"
               if check.mode == "incremental" else "whole chain checked")
        last = check.last_full
        when = ("no full check recorded yet: run `keyroll audit verify --full`" if last is None
                else f"last full check {last.at:%Y-%m-%d %H:%M:%S} UTC: "
                     + ("passed" if last.ok else "FAILED"))
        out().print(f"journal ok: {report.count} records, head {report.head} ({how}; {when})",
                    markup=False)
        layout = journal.store.audit_layout()
        if layout != "current":
            err().print(f"note: the journal is kept as {layout}", markup=False)
        return
    if context.notifier is not None:
        context.notifier.journal_failed(report)  # sent when the command ends
    console = err()
    console.print(f"journal TAMPERED ({report.count} records):", markup=False)
    for problem in report.problems:
        console.print(f"- {escape(str(problem))}", markup=False)
    raise typer.Exit(1)


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Move the journal to the store's current layout (OpenBao: pages of 100 records instead
    of one document per record), verified, then run a full check. Safe to rerun; stop every
    older keyroll that writes to this store first (they refuse the moved journal)."""
    context: AppContext = ctx.obj
    store = context.store
    moved = store.audit_migrate()
    check = check_full(context.journal)
    if moved:
        out().print(f"journal migrated: {moved} records moved to the current layout", markup=False)
    else:
        out().print("journal already in the current layout: nothing to move", markup=False)
    if not check.ok:
        err().print(f"journal TAMPERED: {escape(check.report.problems[0])}", markup=False)
        raise typer.Exit(1)
    out().print(f"full check passed: {check.report.count} records, head {check.report.head}",
                markup=False)
