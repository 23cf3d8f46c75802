"""``keyroll run --env E -- CMD …``: run a command with an environment's secrets in its
environment (as ``doppler run`` / ``infisical run`` do).

The child gets every variable ``keyroll export`` would write (current values, and during an
overlap the previous and staged keys in each class's layout, with their kids), on top of this
process's environment, minus keyroll's own credentials (the master key, OpenBao tokens): the
app needs its secrets, not the keys to all of them. Nothing is printed; the run is journalled
(``secret.run``: environment, program name, variable names). The exit code is the child's
(128 + N when a signal N ended it; 127 when the program does not exist).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from keyroll.cli.context import AppContext
from keyroll.cli.output import err, escape
from keyroll.errors import UsageError
from keyroll.render import collect
from keyroll.rotation.deploy import SENSITIVE_ENV

__all__ = ["register", "run_command"]


def run_command(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")] = ...,  # type: ignore[assignment]
) -> None:
    """Run CMD with the environment's secrets as env vars; exit with its exit code."""
    app: AppContext = ctx.obj
    if not command:
        raise UsageError("nothing to run: keyroll run --env dev -- CMD [ARGS…]")
    entries = collect(app.store, app.inventory, env)
    child_env = {k: v for k, v in os.environ.items() if k not in SENSITIVE_ENV}
    child_env.update({e.name: e.value.reveal() for e in entries})
    app.journal.append(
        "secret.run", evidence={"environment": env, "program": Path(command[0]).name,
                                "variables": [e.name for e in entries]},
    )
    try:
        proc = subprocess.Popen(command, env=child_env)
    except FileNotFoundError:
        err().print(f"error: command not found: {escape(command[0])}", markup=False)
        raise typer.Exit(127) from None
    except PermissionError:
        err().print(f"error: cannot execute {escape(command[0])}: permission denied", markup=False)
        raise typer.Exit(126) from None
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: proc.send_signal(signum))
    try:
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the child too (same process group):
            code = proc.wait()     # let it finish; a second Ctrl-C leaves it (exit 130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(128 - code if code < 0 else code)


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    )(run_command)
