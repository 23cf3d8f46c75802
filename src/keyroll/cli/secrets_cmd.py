"""Values in and out: ``import``, ``generate``, ``export``, ``get``.

Values travel from a file or stdin (never argv, never echoed) into the store, and out only
into a 0600 file (``export``) or, with ``get --reveal``, to stdout: the one command that prints
a value, says so on stderr and records it in the journal.
"""

from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from keyroll import dotenv
from keyroll.cli.context import STDIN, AppContext
from keyroll.cli.output import err, escape, out, print_json
from keyroll.errors import UsageError
from keyroll.files import check_target, git_ignores, git_tracks
from keyroll.generate import generate as make_value
from keyroll.inventory import SecretClass
from keyroll.issued import KEY_ID, id_var_of
from keyroll.jwk import ASYMMETRIC_ALGORITHMS
from keyroll.model import Kind, Label, SecretRef, SecretValue
from keyroll.render import (
    FORMATS,
    check_k8s_name,
    collect,
    owned_vars,
    render,
    split_dsn,
    write_dotenv,
    write_private,
)
from keyroll.rotation.deploy import jwks_text, write_jwks

__all__ = ["parse_dotenv", "register"]


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse ``KEY=value`` lines (``export`` prefix, quotes, comments) like docker compose."""
    return dotenv.parse(text)


@dataclass(frozen=True)
class _Import:
    """One value to import, checked: what will happen, before anything is written."""

    cls: SecretClass
    ref: SecretRef
    value: SecretValue
    meta: dict[str, str]
    unchanged: bool


def _check_length(cls: SecretClass, ref: SecretRef, value: SecretValue, *, allow_short: bool,
                  verb: str) -> None:
    """Refuse a value shorter than the class's ``min_length`` unless ``allow_short``.

    A short value is weak and, worse, hard to mask: the redactor can only match it as a whole
    token. The message says how long it must be, never how long it is.
    """
    if len(value) < cls.min_length and not allow_short:
        raise UsageError(
            f"{ref}: the value is shorter than the minimum of {cls.min_length} characters of "
            f"class {cls.name!r}; use a longer one (or lower min_length in the inventory, or "
            f"pass --allow-short); nothing was {verb}"
        )


_ALLOW_SHORT_HELP = "Accept a value shorter than the class's min_length (still masked)."


def _check_bundle(ref: SecretRef, value: SecretValue) -> tuple[SecretValue, dict[str, str]]:
    """A TLS bundle to import: chain then key, the key the leaf's; its dates for ``status``."""
    from keyroll.tlscert import Bundle, BundleError, certificate_meta

    try:
        bundle = Bundle.parse(value)
        matches = bundle.key_matches()
    except (BundleError, ValueError) as exc:
        raise UsageError(f"{ref}: not a certificate bundle ({exc}): pipe the chain, then the "
                         "private key, as PEM; nothing was imported") from None
    if not matches:
        raise UsageError(f"{ref}: the private key is not the certificate's; nothing was "
                         "imported")
    meta = certificate_meta(bundle)
    normal = Bundle.compose(bundle.chain_pem, bundle.key)
    return normal, {k: v for k, v in meta.items() if isinstance(v, str)}


def _check_import(
    app: AppContext, cls: SecretClass, ref: SecretRef, value: SecretValue, source: str,
    *, allow_short: bool = False,
) -> _Import:
    """Validate one imported value (nothing is written). Raises `UsageError` with the fix."""
    meta: dict[str, str] = {"source": source}
    if cls.kind in (Kind.POSTGRES_ROLE, Kind.REDIS_ACL, Kind.MYSQL_USER,
                    Kind.RABBITMQ_USER):
        parts = split_dsn(value.reveal())
        if parts is not None:
            user, password = parts
            value = SecretValue(password)
            if user:
                meta["role"] = user
    if len(value) == 0:
        raise UsageError(f"{ref}: the value is empty; nothing was imported")
    if cls.kind is Kind.TLS_CERTIFICATE:
        value, certificate = _check_bundle(ref, value)
        meta.update(certificate)
    _check_length(cls, ref, value, allow_short=allow_short, verb="imported")
    if allow_short and len(value) < cls.min_length:
        meta["short"] = "allowed"
    labels = app.store.get_labels(ref)
    if Label.CURRENT in labels:
        current = app.store.get_version(ref, labels[Label.CURRENT])
        if current.fingerprint == value.fingerprint:
            return _Import(cls, ref, value, meta, unchanged=True)
        raise UsageError(
            f"{ref} already has a current version ({current.fingerprint}); change it with "
            f"`keyroll rotate {ref.name} --env {ref.environment}`, not import; nothing was imported"
        )
    return _Import(cls, ref, value, meta, unchanged=False)


def _apply_import(app: AppContext, item: _Import) -> str:
    if item.unchanged:
        return "unchanged"
    version = app.store.put_version(item.ref, item.value, created_at=app.now_for(item.ref.environment),
                                    meta=item.meta)
    app.store.set_labels(item.ref, expected={Label.CURRENT: None},
                         new={Label.CURRENT: version.number})
    app.journal.append(
        "secret.import", ref=item.ref, version=version.number,
        fingerprints=[version.fingerprint], evidence={"source": item.meta["source"]},
    )
    return f"imported as version {version.number} ({version.fingerprint})"


def _read_text(app: AppContext, file: Path) -> str:
    try:
        return app.read_input(file, "--file").decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{escape(str(file))} is not UTF-8 text; convert it (a .env file is "
                         "text)") from None


def import_(
    ctx: typer.Context,
    class_name: Annotated[
        str | None, typer.Argument(metavar="[CLASS]", help="Import one value for this class.")
    ] = None,
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")] = ...,  # type: ignore[assignment]
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help=".env file to read ('-' for stdin)."),
    ] = None,
    allow_short: Annotated[bool, typer.Option("--allow-short", help=_ALLOW_SHORT_HELP)] = False,
) -> None:
    """Bring existing values under keyroll: from a .env file, or one value from stdin (no echo)."""
    app: AppContext = ctx.obj
    inventory = app.inventory
    inventory.policy(env)
    console = out()
    if class_name is not None:
        if file is not None:
            raise UsageError("give either CLASS (one value on stdin) or --file, not both")
        cls, ref = inventory.resolve(class_name, env)
        paired = id_var_of(cls)
        if paired is not None:
            raise UsageError(f"{ref} is a key pair ({', '.join(cls.env_vars)}): import it with "
                             "--file from a .env that holds both variables; nothing was imported")
        app.claim_stdin(f"import {class_name} (its value)")
        if cls.kind is Kind.TLS_CERTIFICATE:  # a PEM bundle: many lines
            if sys.stdin.isatty():
                raise UsageError(f"{ref}: pipe the PEM bundle (chain, then key) on stdin: "
                                 f"cat fullchain.pem privkey.pem | keyroll import {ref.name} "
                                 f"--env {env}")
            text = sys.stdin.read()
        elif sys.stdin.isatty():
            text = getpass.getpass(f"value for {ref} (not echoed): ")
        else:
            text = sys.stdin.readline().rstrip("\r\n")
        item = _check_import(app, cls, ref, SecretValue(text), "stdin", allow_short=allow_short)
        console.print(f"{ref}: {_apply_import(app, item)}")
        return
    if file is None:
        raise UsageError("nothing to import: pass --file .env (or '-' for stdin), or a CLASS")
    pairs = parse_dotenv(_read_text(app, file))
    source = "stdin" if str(file) == "-" else f"file:{file.name}"
    skipped: list[str] = []
    checked: list[tuple[str, _Import]] = []
    key_ids: dict[SecretRef, str] = {}
    for var, raw in pairs.items():  # check everything first: a bad line imports nothing
        owner = inventory.class_for_env_var(var, env)
        if owner is None:
            skipped.append(var)
            continue
        ref = SecretRef(env, owner.name)
        if var == id_var_of(owner):  # a key pair's id: kept as the version's key id
            if not raw.strip():
                raise UsageError(f"{var} is empty; nothing was imported")
            key_ids[ref] = raw.strip()
            continue
        item = _check_import(app, owner, ref, SecretValue(raw), source, allow_short=allow_short)
        twin = next((other for _, other in checked if other.ref == ref), None)
        if twin is not None:
            if twin.value != item.value:
                raise UsageError(f"{var} and another variable of {ref} differ; one class holds "
                                 "one value: fix the file; nothing was imported")
            continue
        checked.append((var, item))
    for var, item in checked:  # a pair comes in whole, or not at all
        id_var = id_var_of(item.cls)
        if id_var is not None:
            if item.ref not in key_ids:
                raise UsageError(f"{item.ref}: the file holds {var} but not {id_var}; a key "
                                 "pair is imported together; nothing was imported")
            item.meta[KEY_ID] = key_ids.pop(item.ref)
    if key_ids:
        ref = sorted(key_ids)[0]
        id_var = id_var_of(inventory.get_class(ref.name))
        raise UsageError(f"{ref}: the file holds {id_var} but not its secret; a key pair is "
                         "imported together; nothing was imported")
    for var, item in checked:
        console.print(f"{var} → {item.ref}: {_apply_import(app, item)}")
    if skipped:
        err().print(
            f"not in the inventory for {env}, skipped: {', '.join(sorted(skipped))}", markup=False
        )


def generate(
    ctx: typer.Context,
    class_name: Annotated[str, typer.Argument(metavar="CLASS")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")] = ...,  # type: ignore[assignment]
    allow_short: Annotated[bool, typer.Option("--allow-short", help=_ALLOW_SHORT_HELP)] = False,
) -> None:
    """Create the first version of a secret with its class's generator."""
    app: AppContext = ctx.obj
    cls, ref = app.inventory.resolve(class_name, env)
    if cls.generator is None:
        raise UsageError(
            f"{ref} is {cls.kind.value}: its value comes from the provider; enter it with "
            f"`keyroll import {ref.name} --env {env}`"
        )
    if app.store.get_labels(ref).get(Label.CURRENT) is not None:
        raise UsageError(
            f"{ref} already has a current version; use `keyroll rotate {ref.name} --env {env}`"
        )
    value = make_value(cls.generator, prefix=cls.prefix)
    _check_length(cls, ref, value, allow_short=allow_short, verb="generated")
    meta = {"generator": cls.generator.value}
    if cls.kind is Kind.JWT_SIGNING:  # the algorithm travels with the key, as rotations store it
        meta["alg"] = str(cls.options.get("algorithm", "HS256"))
    version = app.store.put_version(ref, value, created_at=app.now_for(ref.environment),
                                    meta=meta)
    app.store.set_labels(ref, expected={Label.CURRENT: None}, new={Label.CURRENT: version.number})
    app.journal.append(
        "secret.generate", ref=ref, version=version.number, fingerprints=[version.fingerprint],
        evidence={"generator": cls.generator.value},
    )
    out().print(f"{ref}: version {version.number} ({version.fingerprint}, kid {version.kid_hex})")


def _export_jwks(app: AppContext, env: str, output: Path, class_name: str | None) -> None:
    """The public keys of one asymmetric JWT class, as a JWKS (public: ``-o -`` prints it)."""
    app.inventory.policy(env)
    if class_name is None:
        published = [c.name for c, _ in app.inventory.secrets(env)
                     if c.kind is Kind.JWT_SIGNING
                     and str(c.options.get("algorithm", "HS256")) in ASYMMETRIC_ALGORITHMS]
        if len(published) != 1:
            raise UsageError(
                "--format jwks publishes one class's keys: pass --class "
                f"({', '.join(published) or f'no asymmetric jwt-signing class in {env}'})"
            )
        class_name = published[0]
    cls, ref = app.inventory.resolve(class_name, env)
    if str(output) == "-":
        text, kids = jwks_text(app.store, cls, ref)
        sys.stdout.write(text)
    else:
        kids = write_jwks(app.store, cls, ref, output)
    app.journal.append("secret.export", ref=ref, evidence={
        "environment": env, "file": str(output), "format": "jwks", "kids": kids})
    if str(output) != "-":
        out().print(f"wrote the JWKS of {ref} to {output}: kids {', '.join(kids)} (public keys only)")


def export(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")] = ...,  # type: ignore[assignment]
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (mode 0600).")] = ...,  # type: ignore[assignment]
    fmt: Annotated[
        str, typer.Option("--format", help=f"One of: {', '.join(FORMATS)}, jwks.")
    ] = "dotenv",
    name: Annotated[str, typer.Option("--name", help="Secret name (k8s format).")] = "app-secrets",
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Secret namespace (k8s format).")
    ] = None,
    class_name: Annotated[
        str | None, typer.Option("--class", help="jwks: the asymmetric JWT class to publish.")
    ] = None,
) -> None:
    """Write an environment's current (and overlap-previous) values to a 0600 file (an existing
    .env keeps its other lines: only keyroll's variables change); with
    ``--format jwks``, a class's public keys (``-o -`` prints them: nothing secret in them)."""
    app: AppContext = ctx.obj
    if fmt == "jwks":
        _export_jwks(app, env, output, class_name)
        return
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}, jwks")
    if str(output) == STDIN:
        raise UsageError("-o - would print secret values: export writes them only to a 0600 "
                         "file (pass a path), or give them to a command with `keyroll run "
                         f"--env {env} -- CMD`; nothing was written")
    if fmt == "k8s":
        check_k8s_name(name)
        if namespace is not None:
            check_k8s_name(namespace)
    check_target(output)
    entries = collect(app.store, app.inventory, env)
    if fmt == "dotenv":  # an existing .env keeps every line that is not keyroll's
        write_dotenv(output, entries, owned_vars(app.inventory, env))
    else:
        write_private(output, render(entries, fmt, name=name, namespace=namespace))
    if git_tracks(output):
        err().print(
            f"warning: {output} is tracked by git: `git rm --cached` it and add it to "
            ".gitignore, or the next commit publishes its secrets",
            markup=False,
        )
    elif not git_ignores(output):
        err().print(
            f"warning: {output} is inside a git work tree and not ignored: add it to .gitignore "
            "before a commit publishes its secrets",
            markup=False,
        )
    app.journal.append(
        "secret.export", evidence={"environment": env, "file": str(output), "format": fmt,
                                   "variables": [e.name for e in entries]},
    )
    out().print(f"wrote {len(entries)} variables to {output} (mode 0600)")


def get(
    ctx: typer.Context,
    class_name: Annotated[str, typer.Argument(metavar="CLASS")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")] = ...,  # type: ignore[assignment]
    label: Annotated[Label, typer.Option("--label", help="Which label.")] = Label.CURRENT,
    version: Annotated[int | None, typer.Option("--version", help="A version number.")] = None,
    reveal: Annotated[bool, typer.Option("--reveal", help="Print the value itself.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Metadata as JSON.")] = False,
) -> None:
    """Show a version's metadata; with --reveal, print its value (audited)."""
    app: AppContext = ctx.obj
    _cls, ref = app.inventory.resolve(class_name, env)
    if version is None:
        meta, value = app.store.read(ref, label)
    else:
        meta, value = app.store.get_version(ref, version), app.store.read_value(ref, version)
    labels = [lab.value for lab, num in app.store.get_labels(ref).items() if num == meta.number]
    if reveal:
        app.journal.append(
            "secret.reveal", ref=ref, version=meta.number, fingerprints=[meta.fingerprint]
        )
        err().print(
            f"printing the value of {ref} version {meta.number} ({meta.fingerprint}); "
            "this was recorded in the audit journal",
            markup=False,
        )
        sys.stdout.write(value.reveal() + "\n")
        return
    doc = {
        "secret": str(ref), "version": meta.number, "kid": meta.kid_hex,
        "fingerprint": meta.fingerprint, "created_at": meta.created_at.isoformat(),
        "labels": labels, "destroyed": meta.destroyed,
    }
    if as_json:
        print_json(doc)
        return
    table = Table(show_header=False)
    for key, val in doc.items():
        table.add_row(key, ", ".join(val) if isinstance(val, list) else str(val))
    out().print(table)


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command()(generate)
    app.command()(export)
    app.command()(get)
