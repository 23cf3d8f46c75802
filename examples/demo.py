"""`make demo`: keyroll's main job on the embedded default store, in a temporary folder.

Each step is the command a user would type; its output is shown as is.
"""

from __future__ import annotations

import base64
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

KEYROLL = str(Path(sys.executable).with_name("keyroll"))


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def keyroll(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"$ keyroll {shlex.join(args)}", flush=True)
    done = subprocess.run(
        [KEYROLL, *args], cwd=cwd, env={**os.environ, **(env or {})}, input=stdin, text=True,
        capture_output=True, check=False,
    )
    sys.stdout.write(done.stdout)
    sys.stdout.write(done.stderr)
    if check and done.returncode != 0:
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

        step("6. the audit journal, and its hash-chain check")
        keyroll("audit", "log", cwd=work)
        keyroll("audit", "verify", cwd=work)


if __name__ == "__main__":
    main()
