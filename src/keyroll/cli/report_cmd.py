"""``keyroll report checklist`` and ``keyroll report drill``: markdown from the journal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keyroll.cli.context import AppContext
from keyroll.cli.output import out
from keyroll.reports import checklist as make_checklist
from keyroll.reports import drill_report

__all__ = ["app"]

app = typer.Typer(help="Rotation checklists and drill reports (markdown).", no_args_is_help=True)


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        out().print(text, markup=False, highlight=False)
    else:
        output.write_text(text, encoding="utf-8")
        out().print(f"wrote {output}")


@app.command()
def checklist(
    ctx: typer.Context,
    class_name: Annotated[str, typer.Argument(metavar="CLASS")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")] = ...,  # type: ignore[assignment]
    rotation: Annotated[str | None, typer.Option("--rotation", help="A specific rotation.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
) -> None:
    """The rotation checklist (seed 004 §7), filled in from the journal."""
    context: AppContext = ctx.obj
    _emit(make_checklist(context.store, context.inventory, context.journal, class_name, env,
                         rotation), output)


@app.command()
def drill(
    ctx: typer.Context,
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
) -> None:
    """The drill report (seed 004 §8) of one rotation: timeline, fingerprints, evidence."""
    context: AppContext = ctx.obj
    _emit(drill_report(context.store, context.inventory, context.journal, rotation_id), output)
