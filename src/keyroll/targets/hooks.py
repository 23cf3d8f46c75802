"""Run the inventory's hooks: commands (with a timeout) and HTTP checks.

HTTP checks (`http_check`) send the hook's method, headers and body, expect a status and,
optionally, a value at a JSON path of the reply, and retry every ``interval`` until they pass
or ``until`` has passed (a bounded number of attempts). Header values named by
``headers_env`` and the caller's ``secret_headers`` (a signed token) are secrets: they are
masked in the detail and the output, and never part of the hook's label.

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

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyroll.errors import HookFailed
from keyroll.inventory import Hook

__all__ = ["BASE_ENV", "HookResult", "hook_environment", "http_check", "json_path", "run_hook"]

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
    #: what kind of check ran (``http``, ``jwt_request``, ``rollout_status``, ``rollout``…),
    #: read by the checklist; empty for commands and writes
    check: str = ""

    def evidence(self) -> dict[str, object]:
        found: dict[str, object] = {
            "hook": self.label, "ok": self.ok, "detail": self.detail, "output": self.output,
            "seconds": round(self.seconds, 3),
        }
        if self.check:
            found["check"] = self.check
        return found


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


_MAX_ATTEMPTS = 1000
_MISSING = object()
_TOKEN = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")


def json_path(document: Any, path: str) -> Any:
    """The value at ``path`` (``$.a.b[0].c``: names and list indexes) in ``document``, or a
    private sentinel when there is none (never raises)."""
    rest = path.removeprefix("$")
    node = document
    position = 0
    while position < len(rest):
        match = _TOKEN.match(rest, position)
        if match is None:
            return _MISSING
        name, index = match.groups()
        if name is not None:
            if not isinstance(node, dict) or name not in node:
                return _MISSING
            node = node[name]
        else:
            if not isinstance(node, list) or int(index) >= len(node):
                return _MISSING
            node = node[int(index)]
        position = match.end()
    return node


def _attempt(hook: Hook, url: str, method: str, headers: Mapping[str, str],
             data: bytes | None, timeout: float) -> tuple[bool, str, str]:
    request = urllib.request.Request(url, data=data, method=method,  # noqa: S310  (http(s) checked)
                                     headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            status, raw = reply.status, reply.read(1 << 20)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(1 << 20)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{method} failed: {reason}", ""
    body = raw.decode("utf-8", "replace")
    if status != hook.status:
        return False, f"HTTP {status} (expected {hook.status})", body
    if hook.expect_json is None:
        return True, f"HTTP {status} (expected {hook.status})", body
    try:
        found = json_path(json.loads(body), hook.expect_json.path)
    except ValueError:
        return False, f"HTTP {status}, but the reply is not JSON", body
    if found is _MISSING:
        return False, f"HTTP {status}, but the reply has no {hook.expect_json.path}", body
    if found != hook.expect_json.value:
        shown = json.dumps(found)[:80]
        return False, (f"HTTP {status}, but {hook.expect_json.path} is {shown} (expected "
                       f"{json.dumps(hook.expect_json.value)[:80]})"), body
    return True, f"HTTP {status}, {hook.expect_json.path} = {json.dumps(found)[:80]}", body


def http_check(
    hook: Hook,
    *,
    url: str | None = None,
    method: str | None = None,
    secret_headers: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    redact: Callable[[str], str] = lambda text: text,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[bool, str, str]:
    """Run an HTTP check until it passes or its deadline passes.

    Args:
        hook: the check (``http`` hook or the request part of a ``jwt_request``).
        url, method: override the hook's (a ``jwt_request`` names its own).
        secret_headers: headers whose values are secrets (a signed token): sent, masked.
        environ: where ``headers_env`` values come from (default ``os.environ``).
        redact: masks store secrets in the reply.
        sleep, clock: how the retries wait (tests pass their own).

    Returns:
        (ok, detail, reply body): masked, the detail naming the attempts it took.
    """
    target = url or hook.http
    assert target is not None
    verb = method or hook.method
    source = os.environ if environ is None else environ
    headers = dict(hook.headers)
    secrets = [v for v in (secret_headers or {}).values() if v]
    for name, var in hook.headers_env.items():
        value = source.get(var)
        if not value:
            return False, f"env var {var} (headers_env.{name}) is not set", ""
        headers[name] = value
        secrets.append(value)
    headers.update(secret_headers or {})
    data: bytes | None = None
    if hook.json_body is not None:
        data = json.dumps(hook.json_body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif hook.body is not None:
        data = hook.body.encode()

    def mask(text: str) -> str:
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "[masked]")
        return redact(text)

    deadline = clock() + hook.deadline.total_seconds()
    interval = max(hook.interval.total_seconds(), 0.01)
    attempts = 0
    ok, detail, body = False, "not run", ""
    for attempts in range(1, _MAX_ATTEMPTS + 1):
        left = deadline - clock()
        timeout = hook.timeout.total_seconds() if attempts == 1 else max(
            0.1, min(hook.timeout.total_seconds(), left))
        ok, detail, body = _attempt(hook, target, verb, headers, data, timeout)
        if ok or clock() + interval > deadline:
            break
        sleep(interval)
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    if not ok and hook.until is not None:
        tried += f", deadline {hook.deadline.total_seconds():g}s passed"
    return ok, mask(detail + tried), mask(body)


def run_hook(
    hook: Hook,
    *,
    cwd: Path,
    env: Mapping[str, str],
    redact: Callable[[str], str],
    stdin: str | None = None,
    write_dotenv: Callable[[Path], None] | None = None,
    check: bool = True,
    sleep: Callable[[float], None] = time.sleep,
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
        sleep: how an HTTP check waits between attempts.

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
        ok, detail, output = http_check(hook, redact=redact, sleep=sleep)
    else:
        ok, detail, output = _run_command(hook, cwd, env, stdin if hook.stdin_dotenv else None)
    # redact the whole output first: a cut could split a value and hide it from the matcher
    result = HookResult(hook.label, ok, detail, _tail(redact(output)), time.monotonic() - started,
                        "http" if hook.http is not None else "")
    if check and not ok:
        raise HookFailed(f"hook {hook.label!r} failed: {detail}")
    return result
