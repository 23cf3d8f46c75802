"""``keyroll escrow list|restore|approve|purge``: keys sealed before retire, for backups.

Every command shows kid, fingerprint and dates only. ``restore`` needs the escrow private key
(a PEM file the operator brings; keyroll never stores it) and, in an environment whose policy
asks for two people, an approval: the first ``restore`` records a request, another person
runs ``approve``, then ``restore`` runs again. Each step is journaled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from keyroll import escrow
from keyroll.cli import exitcodes
from keyroll.cli.context import AppContext
from keyroll.cli.output import err, escape, out, print_json
from keyroll.errors import NotFound, UsageError
from keyroll.model import utcnow

__all__ = ["app"]

app = typer.Typer(help="Keys sealed to the escrow public key before retire destroyed them.",
                  no_args_is_help=True)

_Env = Annotated[str, typer.Option("--env", "-e", help="Environment.")]
_Version = Annotated[int, typer.Option("--version", min=1, help="The destroyed version.")]


@app.command("list")
def list_(
    ctx: typer.Context,
    class_name: Annotated[str | None, typer.Argument(metavar="[CLASS]")] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """List escrow records (kid, fingerprint, recipient, expiry; never a value)."""
    context: AppContext = ctx.obj
    if class_name is not None:
        context.inventory.get_class(class_name)
    now = utcnow()
    records = [r for r in escrow.list_records(context.store)
               if (env is None or r.environment == env)
               and (class_name is None or r.name == class_name)]
    docs = []
    for record in records:
        restored = escrow.find_restored(context.store, record.ref, record.version)
        docs.append({**record.public_view(), "expired": record.expired(now),
                     "restored_as": None if restored is None else restored.number})
    if as_json:
        print_json(docs)
        return
    table = Table(title="escrow")
    for column in ("secret", "version", "kid", "fingerprint", "recipient", "sealed",
                   "expires", "restored as"):
        table.add_column(column)
    for doc in docs:
        table.add_row(escape(str(doc["secret"])), str(doc["version"]), str(doc["kid"]),
                      str(doc["fingerprint"]), str(doc["recipient"]),
                      str(doc["sealed_at"])[:19], str(doc["expires_at"])[:19]
                      + (" (expired)" if doc["expired"] else ""),
                      "-" if doc["restored_as"] is None else str(doc["restored_as"]))
    out().print(table)


@app.command()
def restore(
    ctx: typer.Context,
    class_name: Annotated[str, typer.Argument(metavar="CLASS")],
    env: _Env = ...,  # type: ignore[assignment]
    version: _Version = ...,  # type: ignore[assignment]
    private_key: Annotated[Path | None, typer.Option(
        "--private-key", help="PEM file of the escrow private key (X25519 or RSA); - reads "
        "it from stdin (a pipe from a vault or a hardware token's tool).")] = None,
    passphrase_env: Annotated[str | None, typer.Option(
        "--passphrase-env", help="Env var holding the private key's passphrase.")] = None,
) -> None:
    """Bring a destroyed key back as decrypt-only (accepted, never used to encrypt).

    Two-person where the environment's policy says ``approvals >= 2``: the first run records
    the request; after another person's ``keyroll escrow approve`` it restores.
    """
    context: AppContext = ctx.obj
    context.guard_clock(env)
    _, ref = context.inventory.resolve(class_name, env)
    policy = context.inventory.policy(env)
    now = utcnow()
    actor = context.journal.actor
    if escrow.get_record(context.store, ref, version) is None:
        raise NotFound(f"no escrow record for version {version} of {ref}: `keyroll escrow "
                       "list` shows what is escrowed")
    if policy.approvals > 1:
        request = escrow.request_restore(context.store, ref, version, actor=actor, now=now)
        if not request.approved(policy.approvals):
            context.journal.append("escrow.restore-requested", ref=ref, version=version,
                                   evidence={"requested_by": request.requested_by,
                                             "approvals_required": policy.approvals},
                                   outcome="waiting")
            err().print(
                f"waiting: restoring version {version} of {ref} needs {policy.approvals} "
                f"people: request recorded for {request.requested_by}; another person runs "
                f"`keyroll escrow approve {class_name} --env {env} --version {version}`, then "
                f"run this again (exit {exitcodes.WAITING})", markup=False)
            raise typer.Exit(exitcodes.WAITING)
    if private_key is None:
        raise UsageError("--private-key FILE is required: the escrow private key's PEM")
    passphrase = None
    if passphrase_env is not None:
        text = os.environ.get(passphrase_env)
        if not text:
            raise UsageError(f"--passphrase-env: {escape(passphrase_env)} is not set")
        passphrase = text.encode()
    pem = context.read_input(private_key, "--private-key")
    restored, record, approval = escrow.restore_version(
        context.store, ref, version, pem, actor=actor, now=now,
        approvals_required=policy.approvals, passphrase=passphrase)
    evidence = {**record.public_view(), "restored_as": restored.number, "decrypt_only": True}
    if approval is not None:
        evidence["requested_by"] = approval.requested_by
        evidence["approved_by"] = list(approval.approvals)
    context.journal.append("escrow.restore", ref=ref, version=restored.number,
                           fingerprints=[record.fingerprint], evidence=evidence)
    out().print(f"restored version {version} of {escape(str(ref))} (kid {record.kid_hex}, "
                f"fingerprint {record.fingerprint}) as decrypt-only version {restored.number}: "
                "key sources accept it; run `keyroll reencrypt` on the restored data",
                markup=False)


@app.command()
def approve(
    ctx: typer.Context,
    class_name: Annotated[str, typer.Argument(metavar="CLASS")],
    env: _Env = ...,  # type: ignore[assignment]
    version: _Version = ...,  # type: ignore[assignment]
) -> None:
    """Approve someone else's escrow restore request (two-person rule)."""
    context: AppContext = ctx.obj
    context.guard_clock(env)
    _, ref = context.inventory.resolve(class_name, env)
    request = escrow.approve_restore(context.store, ref, version, actor=context.journal.actor,
                                     now=utcnow())
    context.journal.append("escrow.restore-approved", ref=ref, version=version,
                           evidence={"requested_by": request.requested_by,
                                     "approved_by": list(request.approvals)})
    out().print(f"approved the restore of version {version} of {escape(str(ref))}; "
                f"{escape(request.requested_by)} can run `keyroll escrow restore` now",
                markup=False)


@app.command()
def purge(ctx: typer.Context) -> None:
    """Delete escrow records past their expiry (retire also does this after sealing)."""
    context: AppContext = ctx.obj
    gone = escrow.purge_expired(context.store, utcnow())
    for record in gone:
        context.journal.append("escrow.purge", ref=record.ref, version=record.version,
                               fingerprints=[record.fingerprint],
                               evidence=record.public_view())
    out().print(f"purged {len(gone)} expired escrow record(s)", markup=False)
