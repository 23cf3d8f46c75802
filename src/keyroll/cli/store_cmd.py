"""``keyroll migrate-store``: copy a whole store to another backend, verified, source untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keyroll.audit import Journal
from keyroll.cli.context import clock_from_env
from keyroll.cli.output import out, print_json
from keyroll.migrate import migrate_store
from keyroll.stores import open_store

__all__ = ["register"]


def migrate(
    source: Annotated[str, typer.Option("--from", help="Store URL to copy from (read only).")],
    target: Annotated[str, typer.Option("--to", help="Store URL to copy to (must be empty).")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Copy every version, label, rotation, audit record and bookkeeping key; verify by
    fingerprint. Relative sqlite: paths are taken from the current folder."""
    base = Path.cwd()
    with open_store(source, base=base, create=False) as src, open_store(target, base=base) as dst:
        report = migrate_store(src, dst)
        Journal(dst, clock=clock_from_env()).append(
            "store.migrate",
            evidence={"from": src.url, "to": dst.url, "secrets": report.secrets,
                      "versions": report.versions, "audit_entries": report.audit_entries,
                      "verified_values": report.verified_values},
        )
    if as_json:
        print_json({"from": report.source, "to": report.target, "secrets": report.secrets,
                    "versions": report.versions, "destroyed_versions": report.destroyed_versions,
                    "labels": report.labels, "rotations": report.rotations,
                    "audit_entries": report.audit_entries, "meta_keys": report.meta_keys,
                    "verified_values": report.verified_values})
        return
    out().print(
        f"copied {report.secrets} secrets ({report.versions} versions, "
        f"{report.destroyed_versions} destroyed), {report.labels} labels, {report.rotations} "
        f"rotations, {report.audit_entries} audit records, {report.meta_keys} bookkeeping keys\n"
        f"verified {report.verified_values} values by fingerprint; {report.source} unchanged"
    )


def register(app: typer.Typer) -> None:
    app.command("migrate-store")(migrate)
