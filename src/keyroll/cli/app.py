"""The ``keyroll`` command: typer app, global options, and one-line errors.

Every `KeyrollError` ends the command with its one-line message on stderr and its exit code
(2 for bad input); click's own usage errors exit 2 as well. Pretty tracebacks are off: they
print local variables, and a local variable may hold a secret. With ``KEYROLL_DEBUG=1`` an
unexpected error prints its traceback, every line of it scrubbed (`debug_traceback`).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from typer.exceptions import TyperException

from keyroll.cli import (
    adopt_cmd,
    audit_cmd,
    calendar_cmd,
    dashboard_cmd,
    escrow_cmd,
    init_cmd,
    inventory_cmd,
    notify_cmd,
    reencrypt_cmd,
    report_cmd,
    rotate_cmd,
    run_cmd,
    scan_cmd,
    secrets_cmd,
    serve_cmd,
    status_cmd,
    store_cmd,
)
from keyroll.cli.context import AppContext
from keyroll.cli.output import err, escape
from keyroll.errors import KeyrollError
from keyroll.model import SecretValue
from keyroll.rotation.deploy import SENSITIVE_ENV
from keyroll.runtime.redaction import Redactor
from keyroll.scrub import dsn_secret_parts, scrub

__all__ = ["ENV_VAR", "app", "debug_traceback", "main", "run"]

#: The default of every required ``--env`` (as kubectl's context namespace, ``VAULT_FORMAT``).
ENV_VAR = "KEYROLL_ENV"

app = typer.Typer(
    name="keyroll",
    help="Rotate secrets without downtime, prove it, and know before one is due.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion [bash|zsh|fish]
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        try:
            text = version("keyroll")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            text = "unknown"
        typer.echo(f"keyroll {text}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", envvar="KEYROLL_CONFIG",
                     help="keyroll.toml to use (default: search upwards)."),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", envvar="KEYROLL_STORE",
                     help="Store URL, overriding [store] url."),
    ] = None,
    _show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True,
                           help="Print keyroll's version and exit.")
    ] = False,
) -> None:
    ctx.obj = AppContext(config=config, store_url=store)
    ctx.call_on_close(ctx.obj.close)


init_cmd.register(app)
status_cmd.register(app)
calendar_cmd.register(app)
secrets_cmd.register(app)
rotate_cmd.register(app)
notify_cmd.register(app)
store_cmd.register(app)
adopt_cmd.register(app)
reencrypt_cmd.register(app)
dashboard_cmd.register(app)
serve_cmd.register(app)
scan_cmd.register(app)
run_cmd.register(app)
app.add_typer(report_cmd.app, name="report")
app.add_typer(inventory_cmd.app, name="inventory")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(escrow_cmd.app, name="escrow")


def _env_default(command: Any) -> Any:
    """Give every *required* ``--env`` the default `ENV_VAR`. Optional ``--env`` filters
    (status, advance, notify, audit log) keep meaning "every environment" when it is set, so
    a cron ``keyroll advance`` never narrows to one by accident."""
    for param in command.params:
        if param.name == "env" and param.required and param.envvar is None:
            param.envvar = ENV_VAR
            param.show_envvar = True
    for sub in getattr(command, "commands", {}).values():
        _env_default(sub)
    return command


def run(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    try:
        command = _env_default(typer.main.get_command(app))
        result = command(args=argv, prog_name="keyroll", standalone_mode=False)
    except TyperException as exc:  # click's usage errors (typer vendors click)
        err().print(f"error: {escape(exc.format_message())}", markup=False)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # typer's --show-completion / --install-completion exit so
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except typer.Abort:
        err().print("aborted", markup=False)
        return 1
    except KeyrollError as exc:
        err().print(f"error: {escape(str(exc))}", markup=False)
        return exc.exit_code
    except OSError as exc:
        where = f" {escape(str(exc.filename))}" if exc.filename else ""
        err().print(f"error: cannot access{where}: {exc.strerror or exc.__class__.__name__}",
                    markup=False)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001  (a bug, or a library error no adapter translated)
        if os.environ.get("KEYROLL_DEBUG"):
            sys.stderr.write(debug_traceback(exc))
            return 1
        # its text may quote a value (a driver echoing a statement): show only the type
        err().print(
            f"error: unexpected {exc.__class__.__name__} (message withheld: it may quote a "
            "secret); rerun with KEYROLL_DEBUG=1 for the traceback, and please report it",
            markup=False,
        )
        return 1
    return result if isinstance(result, int) else 0


def debug_traceback(exc: BaseException, environ: Mapping[str, str] | None = None) -> str:
    """``exc``'s traceback (chained ones included) for ``KEYROLL_DEBUG=1``, every line scrubbed.

    A library's message may quote what it choked on: urllib quotes the bracketed part of a
    URL (``postgresql://u:pw@[x]@host`` gives ``'x' does not appear to be an IPv4 or IPv6
    address``), libpq the whole URI. Each line loses URL and conninfo passwords, every piece of
    the password of each DSN in the environment, and keyroll's own credentials, masked in all
    the spellings the redactor knows.
    """
    env = os.environ if environ is None else environ
    secrets: list[str] = []
    for value in env.values():
        if "://" in value or "assword" in value:
            secrets += dsn_secret_parts(value)
    own = [SecretValue(env[name]) for name in SENSITIVE_ENV if env.get(name)]
    redactor = Redactor(values=own)
    lines = traceback.format_exception(exc)
    return "".join(
        redactor.redact(scrub(line, secrets, first_line=False)) + "\n"
        for chunk in lines for line in chunk.rstrip("\n").split("\n")
    )


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
