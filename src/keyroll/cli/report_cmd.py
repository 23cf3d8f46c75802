"""``keyroll report checklist`` and ``keyroll report drill``: markdown (or JSON) from the
journal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from keyroll.cli.context import STDIN, AppContext
from keyroll.cli.output import escape, out
from keyroll.reports import checklist_data, drill_data

__all__ = ["app"]

app = typer.Typer(help="Rotation checklists and drill reports (markdown).", no_args_is_help=True)

_Output = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write to a file (- or none: stdout).")]


def _emit(text: str, output: Path | None) -> None:
    if output is None or str(output) == STDIN:
        out().print(text, markup=False, highlight=False)
    else:
        output.write_text(text, encoding="utf-8")
        out().print(f"wrote {escape(str(output))}", markup=False)


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, default=str)


@app.command()
def checklist(
    ctx: typer.Context,
    class_name: Annotated[str, typer.Argument(metavar="CLASS")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")] = ...,  # type: ignore[assignment]
    rotation: Annotated[str | None, typer.Option("--rotation", help="A specific rotation.")] = None,
    output: _Output = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON document (keyroll.report-checklist/v1).")] = False,
) -> None:
    """The rotation checklist (seed 004 §7), filled in from the journal."""
    context: AppContext = ctx.obj
    data = checklist_data(context.store, context.inventory, context.journal, class_name, env,
                          rotation)
    _emit(_json(data.to_json()) if as_json else data.markdown(), output)


@app.command()
def drill(
    ctx: typer.Context,
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION")],
    output: _Output = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON document (keyroll.report-drill/v1).")] = False,
) -> None:
    """The drill report (seed 004 §8) of one rotation: timeline, fingerprints, evidence."""
    context: AppContext = ctx.obj
    data = drill_data(context.store, context.inventory, context.journal, rotation_id)
    _emit(_json(data.to_json()) if as_json else data.markdown(), output)
