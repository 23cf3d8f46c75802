"""``keyroll inventory check``: validate keyroll.toml."""

from __future__ import annotations

import typer

from keyroll.cli.context import AppContext
from keyroll.cli.output import out
from keyroll.rotation.strategies import strategy_for

__all__ = ["app"]

app = typer.Typer(help="Inspect the inventory (keyroll.toml).", no_args_is_help=True)


@app.command()
def check(ctx: typer.Context) -> None:
    """Validate keyroll.toml and each class's kind options: the first problem in one line
    (with how many more there are), exit 2 when invalid."""
    context: AppContext = ctx.obj
    inventory = context.inventory
    for cls in inventory.classes.values():  # kind-specific options, as a rotation would
        strategy_for(cls.kind).validate(cls)
    secrets = inventory.secrets()
    out().print(
        f"{context.inventory_path}: ok: {len(inventory.classes)} classes, {len(secrets)} secrets "
        f"in {len(inventory.environments)} environments ({', '.join(inventory.environments)})"
    )
