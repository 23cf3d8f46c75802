"""``keyroll audit log`` and ``keyroll audit verify``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from keyroll.audit import AuditRecord
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
        str | None, typer.Option("--expect-head", help="A head hash pinned earlier.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document (schema keyroll.audit-verify/v1).")
    ] = False,
) -> None:
    """Check the hash chain: exit 1 and name every edited, deleted, inserted or moved record."""
    context: AppContext = ctx.obj
    report = context.journal.verify(expect_head=expect_head)
    if as_json:
        print_json({"schema": "keyroll.audit-verify/v1", "ok": report.ok, "count": report.count,
                    "head": report.head, "problems": list(report.problems)})
        if not report.ok:
            raise typer.Exit(1)
        return
    if report.ok:
        out().print(f"journal ok: {report.count} records, head {report.head}")
        return
    if context.notifier is not None:
        context.notifier.journal_failed(report)  # sent when the command ends
    console = err()
    console.print(f"journal TAMPERED ({report.count} records):", markup=False)
    for problem in report.problems:
        console.print(f"- {escape(str(problem))}", markup=False)
    raise typer.Exit(1)
