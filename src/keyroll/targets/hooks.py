"""Run the inventory's hooks: commands (with a timeout) and HTTP checks.

Commands run without a shell unless the hook says ``shell = true``, in the inventory's folder,
in their own process group (killed whole on timeout), with a small environment: `BASE_ENV`
(PATH, HOME, locale, proxies, the docker/kubectl settings), the rotation's ``KEYROLL_*``
context and the names the hook lists in ``pass_env``, and nothing else: keyroll's own
environment holds the master key and admin credentials. A hook that needs the new values gets
them on stdin (``stdin_dotenv``), never on argv or in its environment, where ``ps`` and
``/proc`` would show them. Output is passed through the caller's redactor, then truncated,
before it becomes audit evidence.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from keyroll.errors import HookFailed
from keyroll.inventory import Hook

__all__ = ["BASE_ENV", "HookResult", "hook_environment", "run_hook"]

#: Variables every command hook inherits (when set): what deploy tools need to run at all.
BASE_ENV = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "KUBECONFIG", "DOCKER_HOST", "DOCKER_CONTEXT",
    "DOCKER_CONFIG", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME",
)


def hook_environment(hook: Hook, context: Mapping[str, str],
                     environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a command hook runs with: `BASE_ENV`, locale, ``pass_env``, context."""
    source = os.environ if environ is None else environ
    wanted = set(BASE_ENV) | set(hook.pass_env)
    env = {k: v for k, v in source.items() if k in wanted or k.startswith("LC_")}
    env.update(context)
    return env

_MAX_OUTPUT = 2000


@dataclass(frozen=True, slots=True)
class HookResult:
    """What a hook did, as evidence (already redacted)."""

    label: str
    ok: bool
    detail: str
    output: str
    seconds: float

    def evidence(self) -> dict[str, object]:
        return {
            "hook": self.label, "ok": self.ok, "detail": self.detail, "output": self.output,
            "seconds": round(self.seconds, 3),
        }


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_OUTPUT else "…" + text[-_MAX_OUTPUT:]


def _run_command(
    hook: Hook, cwd: Path, env: Mapping[str, str], stdin: str | None
) -> tuple[bool, str, str]:
    argv: list[str] | str = hook.run if hook.shell and isinstance(hook.run, str) else hook.argv
    timeout = hook.timeout.total_seconds()
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=hook_environment(hook, env), shell=hook.shell,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
    except OSError as exc:
        return False, f"cannot start: {exc.strerror or exc.__class__.__name__}", ""
    try:
        output, _ = proc.communicate(input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return False, f"timed out after {timeout:g}s (killed)", output or ""
    if proc.returncode != 0:
        return False, f"exit code {proc.returncode}", output or ""
    return True, "exit code 0", output or ""


def _run_http(hook: Hook) -> tuple[bool, str, str]:
    assert hook.http is not None
    request = urllib.request.Request(hook.http, method="GET")  # noqa: S310  (http(s) checked)
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout.total_seconds()) as reply:  # noqa: S310
            status, body = reply.status, reply.read(_MAX_OUTPUT).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(_MAX_OUTPUT).decode("utf-8", "replace")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"GET failed: {reason}", ""
    ok = status == hook.status
    return ok, f"HTTP {status} (expected {hook.status})", body


def run_hook(
    hook: Hook,
    *,
    cwd: Path,
    env: Mapping[str, str],
    redact: Callable[[str], str],
    stdin: str | None = None,
    write_dotenv: Callable[[Path], None] | None = None,
    check: bool = True,
) -> HookResult:
    """Run one hook and return its redacted result.

    Args:
        hook: from the inventory.
        cwd: folder commands run in and relative paths resolve against.
        env: extra environment (rotation id, step, fingerprints: never values).
        redact: masks secrets in the output before it is kept.
        stdin: the dotenv text for ``stdin_dotenv`` hooks.
        write_dotenv: writes the environment's rendered .env to a path (``write_dotenv``).
        check: raise `HookFailed` when the hook fails.

    Raises:
        HookFailed: the hook failed and ``check`` is set (message names the hook and why).
    """
    started = time.monotonic()
    if hook.write_dotenv is not None:
        if write_dotenv is None:
            raise HookFailed(f"hook {hook.label!r}: nothing to write here")
        target = cwd / hook.write_dotenv
        write_dotenv(target)
        ok, detail, output = True, f"wrote {target} (mode 0600)", ""
    elif hook.http is not None:
        ok, detail, output = _run_http(hook)
    else:
        ok, detail, output = _run_command(hook, cwd, env, stdin if hook.stdin_dotenv else None)
    # redact the whole output first: a cut could split a value and hide it from the matcher
    result = HookResult(hook.label, ok, detail, _tail(redact(output)), time.monotonic() - started)
    if check and not ok:
        raise HookFailed(f"hook {hook.label!r} failed: {detail}")
    return result
