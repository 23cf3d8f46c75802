"""A *fake* credential provider's CLI, for the ``issued-key`` tests (no real provider can run
here): it issues, lists, tests and revokes keys kept in a JSON state file, enforces a
max-keys quota like Stripe's, OpenAI's or AWS's, records every revocation, and can misbehave
on request (``mode`` in the state file) so the tests see what a broken or hostile provider
does.

    python tests/fake_provider.py STATE issue        prints {"key_id": …, "value": …}
    python tests/fake_provider.py STATE revoke       revokes $KEYROLL_KEY_ID (or the stdin value)
    python tests/fake_provider.py STATE list         prints the live key ids, one per line
    python tests/fake_provider.py STATE last-used    prints $KEYROLL_KEY_ID's last use (ISO)
    python tests/fake_provider.py STATE test         exit 0 when the stdin value is a live key

Modes for ``issue``: ``json`` (default), ``bare`` (the value alone), ``empty``, ``nonjson``,
``huge`` (1 MiB), ``array`` (JSON, not an object), ``echo`` (also writes the value to stderr,
then fails), ``quota-message`` (fails with the quota message), ``kill-parent`` (issues, then
SIGKILLs the process that ran it before it can store the value: a crash in the worst place).
Every value holds ``$``, ``"`` and ``\\``.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["create_state", "live_keys", "read_state", "record_use", "set_mode"]


def create_state(path: Path, *, max_keys: int = 2, mode: str = "json") -> Path:
    path.write_text(json.dumps({"max_keys": max_keys, "mode": mode, "keys": {},
                                "revoked": [], "issued": 0}))
    return path


@contextmanager
def _locked(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        state: dict[str, Any] = json.load(handle)
        yield state
        handle.seek(0)
        handle.truncate()
        json.dump(state, handle)
        handle.flush()
        os.fsync(handle.fileno())


def read_state(path: Path) -> dict[str, Any]:
    with _locked(path) as state:
        return state


def live_keys(path: Path) -> dict[str, str]:
    """key id → value of every key the provider accepts now."""
    return {k: v["value"] for k, v in read_state(path)["keys"].items()}


def set_mode(path: Path, mode: str) -> None:
    with _locked(path) as state:
        state["mode"] = mode


def issue_key(path: Path) -> tuple[str, str]:
    """Issue a key directly (a test's seed), within the quota."""
    with _locked(path) as state:
        return _new_key(state)


def record_use(path: Path, key_id: str, at: datetime) -> None:
    """An app authenticated with ``key_id`` at ``at`` (what ``last-used`` reports)."""
    with _locked(path) as state:
        state["keys"][key_id]["last_used"] = at.isoformat()


class _Quota(Exception):
    pass


def _new_key(state: dict[str, Any]) -> tuple[str, str]:
    if len(state["keys"]) >= state["max_keys"]:
        raise _Quota
    state["issued"] += 1
    key_id = f"key_{state['issued']:04d}_{secrets.token_hex(3)}"
    value = f"sk_fake_{secrets.token_hex(12)}$\"\\{secrets.token_hex(2)}"
    state["keys"][key_id] = {"value": value, "created": datetime.now(UTC).isoformat(),
                             "last_used": None}
    return key_id, value


def _find(state: dict[str, Any], value: str) -> str | None:
    return next((k for k, v in state["keys"].items() if v["value"] == value), None)


def main(argv: list[str]) -> int:
    path, action = Path(argv[1]), argv[2]
    if action == "issue":
        with _locked(path) as state:
            mode = state["mode"]
            if mode == "quota-message":
                print(f"error: quota exceeded: at most {state['max_keys']} keys", file=sys.stderr)
                return 4
            try:
                key_id, value = _new_key(state)
            except _Quota:
                print(f"error: quota exceeded: at most {state['max_keys']} keys", file=sys.stderr)
                return 4
        if mode == "kill-parent":
            os.kill(os.getppid(), signal.SIGKILL)
            return 0
        out = {"json": json.dumps({"key_id": key_id, "value": value, "object": "key"}),
               "bare": value, "empty": "", "nonjson": "{" + value, "array": json.dumps([value]),
               "huge": json.dumps({"key_id": key_id, "value": value, "pad": "x" * 2**20}),
               "multi": f"{value}\n{key_id}"}.get(mode)
        if mode == "echo":
            print(f"debug: issued {value}", file=sys.stderr)
            return 5
        sys.stdout.write((out or "") + "\n")
        return 0
    if action == "revoke":
        key_id = os.environ.get("KEYROLL_KEY_ID", "")
        with _locked(path) as state:
            if not key_id:
                key_id = _find(state, sys.stdin.readline().rstrip("\n")) or ""
            if key_id not in state["keys"]:
                print("error: no such key", file=sys.stderr)
                return 3
            del state["keys"][key_id]
            state["revoked"].append(key_id)
        return 0
    if action == "list":
        for key_id in read_state(path)["keys"]:
            print(key_id)
        return 0
    if action == "last-used":
        key = read_state(path)["keys"].get(os.environ.get("KEYROLL_KEY_ID", ""))
        if key is None:
            print("error: no such key", file=sys.stderr)
            return 3
        print(key["last_used"] or "never")
        return 0
    if action == "test":
        value = sys.stdin.readline().rstrip("\n")
        return 0 if _find(read_state(path), value) is not None else 1
    print(f"unknown action {action}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
