"""`make demo`: keyroll's main job on the embedded default store, in a temporary folder.

Each step is the command a user would type (its output shown as is), plus the few lines of
Python an app writes to verify tokens with keyroll's key ring while the key rotates.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from keyroll import JWTKeyRing, StoreKeySource
from keyroll.errors import InvalidToken
from keyroll.model import SecretRef, format_kid
from keyroll.stores import open_store

KEYROLL = str(Path(sys.executable).with_name("keyroll"))
FILE_APP = Path(__file__).with_name("file_app.py")


class FileApp:
    """examples/file_app.py, running: its keys come from the .env keyroll's hook writes."""

    def __init__(self, env_file: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(FILE_APP), str(env_file)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the file-reading app died: demo failed")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def wait_for_kid(self, kid: str, seconds: float = 15.0) -> dict[str, Any]:
        """Ask until the app signs with ``kid`` (bounded: at most ``seconds``, 0.25 s apart)."""
        for _ in range(int(seconds / 0.25)):
            reply = self.ask("kid")
            if reply["kid"] == kid:
                return reply
            time.sleep(0.25)
        raise SystemExit(f"the app never loaded kid {kid}: demo failed")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


#: ``keyroll``'s exit code for a rotation parked in its overlap or at a manual step.
WAITING = 75


def keyroll(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None,
            check: bool = True, echo: bool = True,
            ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    if echo:
        print(f"$ keyroll {shlex.join(args)}", flush=True)
    done = subprocess.run(
        [KEYROLL, *args], cwd=cwd, env={**os.environ, **(env or {})}, input=stdin, text=True,
        capture_output=True, check=False,
    )
    if echo:
        sys.stdout.write(done.stdout)
        sys.stdout.write(done.stderr)
    if check and done.returncode not in ok:
        raise SystemExit(f"demo step failed with exit code {done.returncode}")
    return done


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="keyroll-demo-") as tmp:
        work = Path(tmp)
        print(f"demo folder: {work}")

        step("1. init: example inventory (seed 004 §1), local encrypted store, 0600 master key")
        keyroll("init", cwd=work)
        keyroll("inventory", "check", cwd=work)

        step("2. import the two secrets the app already has, from its old .env")
        old_env = work / "legacy.env"
        old_env.write_text(
            f"JWT_SECRET={secrets.token_urlsafe(48)}\n"
            f"FIELD_ENCRYPTION_KEY={base64.b64encode(secrets.token_bytes(32)).decode()}\n"
            "OPENAI_BASE_URL=https://api.example.invalid/v1\n"
        )
        keyroll("import", "--env", "dev", "--file", str(old_env), cwd=work)
        old_env.unlink()

        step("3. generate the ones it never had")
        keyroll("generate", "jwt-refresh", "--env", "dev", cwd=work)
        keyroll("generate", "payment-webhook", "--env", "dev", cwd=work)

        step("4. status: age, due date and state of every dev secret")
        keyroll("status", "--env", "dev", cwd=work)

        step("5. export for docker compose (values go to a 0600 file, never to the terminal)")
        keyroll("export", "--env", "dev", "--format", "dotenv", "-o", ".env", cwd=work)

        step("6. an app verifies tokens through the runtime key ring (keys from the store)")
        store = open_store("sqlite:.keyroll/store.db", base=work)
        ref = SecretRef("dev", "jwt-access")
        ring = JWTKeyRing(StoreKeySource(store, ref, refresh_interval=0))
        before = ring.sign({"sub": "user-42"}, ttl=timedelta(minutes=15))
        _, kid_before = ring.verify_with_kid(before)
        print(f"token signed before the rotation: kid {format_kid(kid_before)}")

        print("a second app runs as its own process and reads its keys from .env with "
              "FileKeySource (the dev deploy hook rewrites that file at every step)")
        (work / ".env").write_text("# the app's own settings stay: keyroll updates only its "
                                   "variables\nAPP_NAME=demo\n" + (work / ".env").read_text())
        file_app = FileApp(work / ".env")
        first = file_app.ask("sign")
        print(f"file app (pid {first['pid']}) signs with kid {first['kid']}")

        step("7. rotate the JWT key: plan, create, apply, test, promote, then the overlap")
        keyroll("rotate", "jwt-access", "--env", "dev", "--dry-run", cwd=work)
        rotated = keyroll("rotate", "jwt-access", "--env", "dev", cwd=work, ok=(WAITING,))
        print(f"(exit {rotated.returncode}: waiting in its overlap is not an error, and not "
              "done either)")
        claims = ring.verify(before)
        print(f"old token still verifies during the overlap: sub={claims['sub']}")
        after = ring.sign({"sub": "user-42"}, ttl=timedelta(minutes=15))
        _, kid_after = ring.verify_with_kid(after)
        print(f"new token carries the new kid: {format_kid(kid_after)} "
              f"(was {format_kid(kid_before)})")
        print(".env now holds JWT_SECRET and JWT_SECRET_PREVIOUS:",
              sorted(line.split("=")[0] for line in (work / ".env").read_text().splitlines()
                     if "=" in line))
        seen = file_app.wait_for_kid(format_kid(kid_after))
        old_ok = file_app.ask(f"verify {first['token']}")
        new_token = file_app.ask("sign")
        if not old_ok["ok"] or seen["pid"] != first["pid"]:
            raise SystemExit("the file app did not get the new key without a restart: demo failed")
        print(f"file app, same pid {seen['pid']} (no restart): its old token verifies "
              f"(kid {old_ok['kid']}); a new token carries the new kid {new_token['kid']}")
        keyroll("rotations", cwd=work)

        step("8. cron runs `keyroll advance`; we jump past the overlap (15m tokens + 1h margin)")
        later = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        keyroll("advance", "--now", later, cwd=work)
        try:
            ring.verify(before)
            raise SystemExit("the retired key still verified a token: demo failed")
        except InvalidToken:
            print("old key retired: tokens it signed no longer verify (InvalidToken)")
        for _ in range(60):  # the file app polls .env every 0.5 s: at most 15 s
            if not file_app.ask(f"verify {first['token']}")["ok"]:
                print("file app, same pid: the retired key no longer verifies there either")
                break
            time.sleep(0.25)
        else:
            raise SystemExit("the file app still accepts the retired key: demo failed")
        file_app.stop()
        store.close()

        step("9. status, audit journal and its hash-chain check")
        keyroll("status", "--env", "dev", cwd=work)
        keyroll("audit", "log", "-n", "12", cwd=work)
        keyroll("audit", "verify", cwd=work)

        step("10. the drill report (seed 004 §8), from the journal")
        rotations = json.loads(keyroll("rotations", "--all", "--json", cwd=work, echo=False).stdout)
        keyroll("report", "drill", rotations[-1]["id"], cwd=work)


if __name__ == "__main__":
    main()
