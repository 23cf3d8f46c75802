"""``keyroll inventory check``: validate keyroll.toml."""

from __future__ import annotations

from typing import Annotated

import typer

from keyroll.cli.context import AppContext
from keyroll.cli.output import err, out, print_json
from keyroll.issued import local_provider_credentials
from keyroll.rotation.strategies import strategy_for

__all__ = ["app"]

app = typer.Typer(help="Inspect the inventory (keyroll.toml).", no_args_is_help=True)


@app.command()
def check(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document (schema keyroll.inventory-check/v1).")
    ] = False,
) -> None:
    """Validate keyroll.toml and each class's kind options: the first problem in one line
    (with how many more there are), exit 2 when invalid. Warns (exit 0) about classes that
    generate locally a credential a provider issues."""
    context: AppContext = ctx.obj
    inventory = context.inventory
    for cls in inventory.classes.values():  # kind-specific options, as a rotation would
        strategy_for(cls.kind).validate(cls)
    secrets = inventory.secrets()
    warnings = local_provider_credentials(inventory)
    if as_json:  # an invalid inventory is still the one-line error on stderr, exit 2
        print_json({
            "schema": "keyroll.inventory-check/v1", "ok": True, "file": str(context.inventory_path),
            "environments": list(inventory.environments),
            "classes": [{"name": c.name, "kind": c.kind.value, "layout": c.layout,
                         "env_vars": list(c.env_vars), "environments": list(c.environments)}
                        for c in inventory.classes.values()],
            "secrets": len(secrets), "warnings": warnings,
        })
        return
    for warning in warnings:
        err().print(f"warning: {warning}", markup=False, highlight=False)
    out().print(
        f"{context.inventory_path}: ok: {len(inventory.classes)} classes, {len(secrets)} secrets "
        f"in {len(inventory.environments)} environments ({', '.join(inventory.environments)})"
    )
