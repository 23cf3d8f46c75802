"""Two processes: this one rotates through the store as the engine would; the other, a running
app (``app_loop.py``), verifies tokens throughout and picks up the new key within the refresh
interval, without a restart and with zero failed verifications.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from keyroll.model import Label, SecretRef
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import StoreKeySource
from keyroll.runtime.usage import read_usage
from keyroll.stores.sqlite import SQLiteStore
from tests.unit.runtime.support import jwt_value, promote, put

INTERVAL = 0.5
MAX_ROUNDS = 100_000  # the time bound (DEADLINE) is the one that matters; rounds pace at 1 ms
PACE = 0.001
DEADLINE = 60.0
ROOT = Path(__file__).parents[3]


class App:
    def __init__(self, store_path: Path, master: bytes) -> None:
        env = dict(
            os.environ,
            APP_STORE=str(store_path),
            APP_MASTER=master.hex(),
            APP_INTERVAL=str(INTERVAL),
            PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.unit.runtime.app_loop"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )

    def ask(self, token: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"token": token}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the app process died"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def quit(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


@pytest.mark.slow
def test_rotation_reaches_a_running_app_with_zero_failures(tmp_path: Path) -> None:
    master = os.urandom(32)
    store = SQLiteStore(tmp_path / "store.db", master)
    ref = SecretRef("prod", "jwt-access")
    v1 = put(store, ref, jwt_value(), Label.CURRENT)
    engine_ring = JWTKeyRing(StoreKeySource(store, ref, refresh_interval=INTERVAL))
    app = App(tmp_path / "store.db", master)
    failures: list[str] = []
    old_tokens: list[str] = []
    started = time.monotonic()

    def exchange() -> dict[str, Any]:
        token = engine_ring.sign({"sub": "engine", "exp": int(time.time()) + 600})
        reply = app.ask(token)
        if not reply["ok"]:
            failures.append("the app rejected a token the engine signed")
        try:
            engine_ring.verify(reply["token"])
        except Exception as exc:  # noqa: BLE001  (counted and reported below)
            failures.append(f"engine rejected the app's token: {type(exc).__name__}")
        return reply

    try:
        # steady state on v1
        first = exchange()
        assert first["signing_kid"] == v1.kid
        old_tokens.append(first["token"])

        # create: v2 as pending; every process must come to accept it before promotion
        v2 = store.put_version(ref, jwt_value())
        store.set_labels(ref, expected={Label.PENDING: None}, new={Label.PENDING: v2.number})
        t_pending = time.monotonic()
        for _ in range(MAX_ROUNDS):
            reply = exchange()
            assert reply["signing_kid"] == v1.kid  # pending never signs
            old_tokens.append(reply["token"])
            if reply["t"] >= t_pending + INTERVAL:
                break
            assert time.monotonic() - started < DEADLINE
            time.sleep(PACE)
        else:
            pytest.fail("the app never passed the refresh interval")

        # promote: pending → current, current → previous
        promote(store, ref)
        t_promote = time.monotonic()
        switched_at = None
        for _ in range(MAX_ROUNDS):
            reply = exchange()
            if reply["t"] >= t_promote + INTERVAL:
                # the app refreshed at least once after the promotion: it must sign with v2
                assert reply["signing_kid"] == v2.kid
                switched_at = reply["t"]
                break
            assert time.monotonic() - started < DEADLINE
            time.sleep(PACE)
        assert switched_at is not None

        # tokens signed with v1 before the rotation still verify during the overlap
        for token in old_tokens[:50]:
            reply = app.ask(token)
            if not reply["ok"] or reply["kid"] != v1.kid:
                failures.append("an old token stopped verifying during the overlap")
    finally:
        code = app.quit()
    assert code == 0
    assert failures == []
    usage = read_usage(store, ref)  # the app reported which kids it verified
    assert usage[v1.kid].count >= 1
    store.close()
