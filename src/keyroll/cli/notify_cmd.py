"""``keyroll notify``: reminders for secrets that are due or overdue (idempotent per day)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from keyroll.cli.context import AppContext
from keyroll.cli.output import out, print_json
from keyroll.notify import send_reminders

__all__ = ["register"]


def notify(
    ctx: typer.Context,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON document (keyroll.notify/v1) instead of lines.")] = False,
) -> None:
    """Send one reminder per due/overdue secret to the webhook and/or SMTP (once a day)."""
    app: AppContext = ctx.obj
    if env is not None:
        app.inventory.policy(env)
    now = app.clock()
    report = send_reminders(app.store, app.inventory, now, os.environ, environment=env)
    app.journal.append("notify.sent", evidence={"sent": list(report.sent),
                                                "channels": list(report.channels)})
    if as_json:
        print_json({"schema": "keyroll.notify/v1", "date": now.date().isoformat(),
                    "environment": env, "channels": list(report.channels),
                    "sent": list(report.sent), "already_sent": list(report.already_sent)})
        return
    out().print(f"reminders: {len(report.sent)} sent via {', '.join(report.channels)}, "
                f"{len(report.already_sent)} already sent today")
    for ref in report.sent:
        out().print(f"  sent: {ref}")


def register(app: typer.Typer) -> None:
    app.command()(notify)
