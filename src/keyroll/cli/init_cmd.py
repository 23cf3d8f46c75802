"""``keyroll init``: an example inventory, the local store and its 0600 master key."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer

from keyroll.audit import Journal
from keyroll.cli.context import clock_from_env
from keyroll.cli.output import out
from keyroll.errors import UsageError
from keyroll.files import TEMP_PREFIX
from keyroll.inventory import DEFAULT_FILE, Inventory, load_inventory
from keyroll.stores import open_store, sqlite_path
from keyroll.stores.masterkey import ENV_VAR, create_key_file

__all__ = ["MINIMAL", "register"]

#: What ``keyroll init --minimal`` writes: one JWT signing key of one app.
MINIMAL = """\
# keyroll inventory: one JWT signing key for one app (`keyroll init --minimal`).
# Add a [classes.NAME] table per secret; `keyroll init` without --minimal writes a full example.
project = "{project}"

[environments.dev]

[environments.prod]
production = true

[classes.jwt]
kind = "jwt-signing"
description = "Signs the app's access tokens"
env_vars = ["{var}"]
layout = "{layout}"          # variable names: see docs/frameworks.md, "Variable layouts"
cadence_days = 90
tier = "high"
blast_radius = "every signed-in session"
owner = "you"
environments = ["dev", "prod"]
overlap = {{ token_ttl = "15m", margin = "1h" }}
# deliver it: `keyroll run --env dev -- CMD`, `keyroll export --env dev -o .env`, or
# hooks.on_promote = [{{ write_dotenv = ".env" }}]
"""

#: The current-key variable ``--minimal`` names for each layout.
_MINIMAL_VAR = {"suffix": "JWT_SECRET", "seed-004": "JWT_SECRET",
                "seed-003": "JWT_SECRET_KEY_CURRENT", "seed-001": "SECRET_KEY"}

_IGNORED = (".keyroll/", ".env", ".env*", "*.key", "*.pem", "secrets/", f"{TEMP_PREFIX}*")


def _export_targets(inventory: Inventory) -> list[str]:
    """Every file the inventory's hooks write values to (``write_dotenv``), as .gitignore
    entries anchored at the project folder."""
    targets = [hook.write_dotenv for cls in inventory.classes.values()
               for hook in (*cls.hooks.on_promote, *cls.hooks.verify, *cls.hooks.revoke)
               if hook.write_dotenv]
    return ["/" + t.removeprefix("./") for t in dict.fromkeys(targets) if not t.startswith("/")]


def _ensure_gitignored(folder: Path, extra: Sequence[str] = ()) -> list[str]:
    path = folder / ".gitignore"
    lines = path.read_text().splitlines() if path.exists() else []
    missing = [entry for entry in (*_IGNORED, *extra)
               if entry not in lines and entry.rstrip("/") not in lines]
    if missing:
        with path.open("a") as handle:
            if lines and lines[-1].strip():
                handle.write("\n")
            handle.write("# keyroll: local store, master key, rendered env files, key files and temp files\n")
            handle.writelines(f"{entry}\n" for entry in missing)
    return missing


def _store_url(ctx: typer.Context, default: str) -> str:
    """The store every other command would open: ``--store``, ``KEYROLL_STORE``, the inventory."""
    override = getattr(ctx.obj, "store_url", None)
    return str(override or os.environ.get("KEYROLL_STORE") or default)


def _store_missing(url: str, directory: Path) -> bool:
    """True when the inventory's local store file is absent or empty (init may create it)."""
    if not url.startswith("sqlite:"):
        return False
    db = sqlite_path(url, directory)
    return not db.exists() or db.stat().st_size == 0


def init(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Project folder.")] = Path("."),
    minimal: Annotated[
        bool, typer.Option("--minimal", help="Write a one-class JWT inventory for a single app.")
    ] = False,
    layout: Annotated[
        str, typer.Option("--layout", help="With --minimal: suffix, seed-004, seed-003 or seed-001.")
    ] = "suffix",
) -> None:
    """Write an example keyroll.toml, create the local store and its master key (0600).

    With an existing keyroll.toml whose local store is missing or empty, create only the store.
    """
    if layout not in _MINIMAL_VAR:
        raise UsageError(f"unknown layout {layout!r}: use one of {', '.join(_MINIMAL_VAR)}")
    if layout != "suffix" and not minimal:
        raise UsageError("--layout goes with --minimal (the full example names its own variables)")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    inventory_path = directory / DEFAULT_FILE
    console = out()
    if inventory_path.exists():
        inventory = load_inventory(inventory_path)
        if not _store_missing(_store_url(ctx, inventory.store.url), directory):
            raise UsageError(
                f"{inventory_path} exists already; keyroll init never overwrites it "
                "(check it with `keyroll inventory check`)"
            )
        console.print(f"kept {inventory_path}; its local store is missing or empty: creating it")
    else:
        if minimal:
            project = "".join(c if c.isalnum() or c in "-_" else "-" for c in directory.name) or "app"
            example = MINIMAL.format(project=project, var=_MINIMAL_VAR[layout], layout=layout)
        else:
            example = files("keyroll").joinpath("example_inventory.toml").read_text(encoding="utf-8")
        inventory_path.write_text(example, encoding="utf-8")
        inventory = load_inventory(inventory_path)
        console.print(f"wrote {inventory_path} ({len(inventory.classes)} secret classes)")
    url = _store_url(ctx, inventory.store.url)
    if url.startswith("sqlite:"):
        db = sqlite_path(url, directory)
        key_file = db.parent / "master.key"
        if not os.environ.get(ENV_VAR) and not key_file.exists():
            create_key_file(key_file)
            console.print(f"created master key {key_file} (mode 0600): back it up offline")
    with open_store(url, base=directory) as store:
        Journal(store, clock=clock_from_env()).append(
            "store.init", evidence={"store": store.url, "classes": len(inventory.classes)}
        )
        console.print(f"store ready: {store.url}")
    added = _ensure_gitignored(directory, _export_targets(inventory))
    if added:
        console.print(f"added {', '.join(added)} to .gitignore")
    first = "jwt" if minimal else "CLASS"
    console.print(f"next: `keyroll import --env dev --file .env` or `keyroll generate {first} --env dev`")


def register(app: typer.Typer) -> None:
    app.command()(init)
