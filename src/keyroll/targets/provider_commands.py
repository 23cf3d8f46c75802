"""The commands through which a provider issues, lists, tests and revokes credentials
(``issued-key`` classes: ``issue = { run = … }`` and its siblings in keyroll.toml).

A command runs like an inventory hook (`keyroll.targets.hooks`): without a shell unless it says
``shell = true``, in the inventory's folder, in its own process group killed whole on timeout,
with `BASE_ENV`, the rotation's ``KEYROLL_*`` context and the variables it names in
``pass_env`` (the provider's admin token) and nothing else. What is sensitive never goes on
argv: the key id arrives as ``KEYROLL_KEY_ID`` in the environment, a value on stdin.

Its stdout is read in full but never kept: `parse_issued` turns it into the new value (a bare
line, or a JSON object with the value and the key id), `parse_time` into a last-use time,
`parse_ids` into key ids. Its stderr is returned for evidence only after the caller's redactor
masked it. Outputs larger than `MAX_OUTPUT` are refused, not truncated: a cut value is a wrong
value.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from keyroll._compat import UTC
from keyroll.durations import parse_duration
from keyroll.errors import TargetError, UsageError
from keyroll.model import SecretValue
from keyroll.targets.hooks import BASE_ENV

__all__ = [
    "MAX_OUTPUT",
    "CommandResult",
    "ProviderCommand",
    "parse_ids",
    "parse_issued",
    "parse_time",
    "run_command",
    "withhold_tokens",
]

#: The most a provider command may print on stdout (64 KiB): more is refused, never cut.
MAX_OUTPUT = 64 * 1024
_STDERR_KEPT = 500
_ENV_VAR_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_FIELDS = ("run", "shell", "pass_env", "timeout", "stdin_value")


@dataclass(frozen=True, slots=True)
class ProviderCommand:
    """One of ``issue``, ``revoke``, ``test``, ``last_used``, ``list``, checked.

    Attributes:
        what: the option's name (for messages).
        argv: the command (a shell line when ``shell``).
        shell: run through ``/bin/sh -c``.
        pass_env: variables passed on (the provider's admin token; masked in output).
        timeout: killed after this long.
        stdin_value: ``revoke`` only: the old value on stdin (providers that revoke by value).
    """

    what: str
    argv: tuple[str, ...]
    shell: bool = False
    pass_env: tuple[str, ...] = ()
    timeout: timedelta = timedelta(seconds=60)
    stdin_value: bool = False

    @classmethod
    def parse(cls, where: str, what: str, raw: object) -> ProviderCommand:
        """``{ run = "…" | […], shell, pass_env, timeout }`` from keyroll.toml.

        Raises:
            UsageError: one line naming ``where`` (``class 'x': options.issue``) and the fix.
        """
        hint = f"{where}: write it as {{ run = [\"cmd\", \"arg\"] }} (or run = \"cmd arg\")"
        if not isinstance(raw, dict):
            raise UsageError(hint)
        unknown = sorted(set(raw) - set(_FIELDS))
        if unknown:
            raise UsageError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(_FIELDS)})")
        run = raw.get("run")
        shell = raw.get("shell", False)
        if not isinstance(shell, bool):
            raise UsageError(f"{where}.shell: true or false")
        if isinstance(run, str) and run.strip():
            import shlex

            argv = (run,) if shell else tuple(shlex.split(run))
        elif isinstance(run, list) and run and all(isinstance(a, str) for a in run):
            if shell:
                raise UsageError(f"{where}: shell = true takes run as one string")
            argv = tuple(run)
        else:
            raise UsageError(hint)
        pass_env = raw.get("pass_env", [])
        if not isinstance(pass_env, list) or not all(
                isinstance(n, str) and n and set(n) <= _ENV_VAR_CHARS for n in pass_env):
            raise UsageError(f"{where}.pass_env: a list of env var names (A-Z, 0-9, _)")
        try:
            timeout = parse_duration(raw.get("timeout", "60s"))
        except ValueError as exc:
            raise UsageError(f"{where}.timeout: {exc}") from None
        if not timedelta(0) < timeout <= timedelta(hours=1):
            raise UsageError(f"{where}.timeout: between 1s and 1h")
        stdin_value = raw.get("stdin_value", False)
        if not isinstance(stdin_value, bool):
            raise UsageError(f"{where}.stdin_value: true or false")
        return cls(what, argv, shell, tuple(pass_env), timeout, stdin_value)

    @property
    def label(self) -> str:
        """How messages name it: the option and the program, never its arguments."""
        program = Path(self.argv[0].split()[0] if self.shell else self.argv[0]).name
        return f"{self.what} ({program})"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a provider command did. ``stdout`` is raw: parse it, never keep or show it."""

    code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0


def _read_bounded(handle: Any) -> tuple[str, bool]:
    handle.seek(0)
    data = handle.read(MAX_OUTPUT + 1)
    return data.decode("utf-8", "replace"), len(data) > MAX_OUTPUT


def run_command(
    command: ProviderCommand,
    *,
    cwd: Path,
    context: Mapping[str, str],
    stdin: str | None = None,
    redact: Callable[[str], str],
) -> CommandResult:
    """Run ``command``; return its exit code, raw stdout and redacted stderr.

    Output goes to unlinked temporary files (no pipe to fill, nothing on disk once closed), so
    a command that prints megabytes neither blocks nor fills memory.

    Raises:
        TargetError: it could not start, timed out, or printed more than `MAX_OUTPUT` (the
            message names the command, never its output).
    """
    wanted = set(BASE_ENV) | set(command.pass_env)
    env = {k: v for k, v in os.environ.items() if k in wanted or k.startswith("LC_")}
    env.update(context)
    argv: list[str] | str = command.argv[0] if command.shell else list(command.argv)
    timeout = command.timeout.total_seconds()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, shell=command.shell,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True,
            )
        except OSError as exc:
            raise TargetError(f"{command.label}: cannot start: "
                              f"{exc.strerror or exc.__class__.__name__}") from None
        # a timer kills the group on timeout, so the wait blocks instead of polling
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            if proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.write(stdin.encode() if stdin is not None else b"")
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            proc.wait()
        finally:
            timer.cancel()
        if expired.is_set():
            raise TargetError(f"{command.label}: timed out after {timeout:g}s (killed)")
        stdout, too_big = _read_bounded(out)
        stderr, _ = _read_bounded(err)
    kept = redact(redact(stderr).strip()[-_STDERR_KEPT:]) if stderr else ""
    if too_big:
        raise TargetError(f"{command.label}: printed more than {MAX_OUTPUT} bytes on stdout; "
                          "refused (a provider command prints one value or one JSON object)")
    return CommandResult(proc.returncode, stdout, kept)


_TOKEN = re.compile(r"\S{12,}")


def withhold_tokens(text: str) -> str:
    """``text`` with every run of 12+ non-space characters that holds both a letter and a digit
    replaced by ``[withheld]``: the stderr of an ``issue`` that failed may hold the value it
    was about to print, which keyroll does not know and so cannot mask exactly."""

    def hide(match: re.Match[str]) -> str:
        token = match.group(0)
        if any(c.isalpha() for c in token) and any(c.isdigit() for c in token):
            return "[withheld]"
        return token

    return _TOKEN.sub(hide, text)


def _field(document: Mapping[str, Any], path: str) -> object:
    """``a.b.c`` in nested objects (None when any part is missing)."""
    node: object = document
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def parse_issued(stdout: str, *, value_field: str, id_field: str,
                 what: str) -> tuple[SecretValue, str | None]:
    """The new value and its key id from an ``issue`` command's stdout.

    Either one line (the value; no key id), or a JSON object whose ``value_field`` holds the
    value and ``id_field`` the key id (dotted paths for nested objects:
    ``api_key.value``).

    Raises:
        TargetError: empty, several lines, JSON that is not an object, a missing or non-text
            field, or a key id equal to the value. The message never quotes the output.
    """
    text = stdout.strip()
    if not text:
        raise TargetError(f"{what} printed nothing on stdout: expected the new value or a JSON "
                          "object with it")
    if text.startswith(("{", "[")):
        try:
            document = json.loads(text)
        except ValueError:
            raise TargetError(f"{what} printed something that starts like JSON but is not "
                              "JSON (its text is not shown)") from None
        if not isinstance(document, dict):
            raise TargetError(f"{what} printed JSON that is not an object")
        value = _field(document, value_field)
        if not isinstance(value, str) or not value:
            raise TargetError(f"{what} printed JSON without a text field {value_field!r} "
                              "(options.value_field)")
        key_id = _field(document, id_field)
        if key_id is not None and not isinstance(key_id, str | int):
            raise TargetError(f"{what} printed JSON whose {id_field!r} is not text "
                              "(options.id_field)")
        key = str(key_id) if key_id is not None else None
        if key is not None and (not key or key == value or len(key) > 200 or "\n" in key):
            raise TargetError(f"{what} printed a key id that is empty, too long or equal to "
                              "the value: a key id must be the provider's public identifier")
        return SecretValue(value), key
    if "\n" in text:
        raise TargetError(f"{what} printed several lines: print the value alone on one line, "
                          "or a JSON object with the value and the key id")
    return SecretValue(text), None


def parse_time(stdout: str, *, what: str) -> datetime | None:
    """A last-use time: ISO 8601 (``Z`` or an offset; naive means UTC) or a Unix timestamp;
    empty, ``never``, ``null`` or ``none`` mean never used.

    Raises:
        TargetError: anything else (the text is not shown: it is a provider's output).
    """
    text = stdout.strip().strip('"')
    if text.lower() in ("", "never", "null", "none"):
        return None
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise TargetError(f"{what} printed something that is not an ISO 8601 time, a Unix "
                          "timestamp or 'never'") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_ids(stdout: str, *, id_field: str, what: str) -> set[str]:
    """Key ids from a ``list`` command: one per line, or a JSON array of strings or of objects
    with ``id_field``.

    Raises:
        TargetError: JSON that is neither, or more than 1000 ids.
    """
    text = stdout.strip()
    if text.startswith(("[", "{")):
        try:
            document = json.loads(text)
        except ValueError:
            raise TargetError(f"{what} printed something that starts like JSON but is not "
                              "JSON") from None
        if isinstance(document, dict):
            document = _field(document, "data") if "data" in document else [document]
        if not isinstance(document, list):
            raise TargetError(f"{what} printed JSON that is not a list of key ids")
        ids = set()
        for item in document:
            key = _field(item, id_field) if isinstance(item, Mapping) else item
            if not isinstance(key, str | int) or not str(key):
                raise TargetError(f"{what} printed a list entry without {id_field!r}")
            ids.add(str(key))
    else:
        ids = {line.strip() for line in text.splitlines() if line.strip()}
    if len(ids) > 1000:
        raise TargetError(f"{what} printed more than 1000 key ids")
    return ids
