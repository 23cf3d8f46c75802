"""Issue 11 §1: a running process verifies tokens while the engine rotates its key and a hook
publishes each step into the mounted directory the way the kubelet does (``..data`` swap):
zero failed verifications, no restart, and the app signs with the new kid after promote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from keyroll.audit import Journal
from keyroll.inventory import parse_inventory
from keyroll.model import Label
from keyroll.rotation.engine import Engine
from keyroll.runtime.filesource import FileKeySource
from keyroll.runtime.jwt import JWTKeyRing
from tests.unit.conftest import INVENTORY, World

ROOT = Path(__file__).parents[3]
INTERVAL = 0.2
DEADLINE = 120.0
MAX_ROUNDS = 100_000

HOOK = (f'hooks.on_promote = [{{ run = ["{sys.executable}", "{ROOT / "tests" / "kubelet.py"}", '
        '"secrets/app"], stdin_dotenv = true }]')


class App:
    def __init__(self, keys: Path) -> None:
        env = dict(os.environ, APP_KEYS=str(keys), APP_INTERVAL=str(INTERVAL),
                   PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.unit.runtime.file_app_loop"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.pid = self.proc.pid

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
def test_whole_rotation_reaches_a_running_app_through_mounted_files(world: World) -> None:
    text = INVENTORY.replace('hooks.on_promote = [{ write_dotenv = "app.env" }]', HOOK)
    world.inventory = parse_inventory(text, world.path / "keyroll.toml")
    ref = world.seed("jwt-access")
    old_kid = world.store.get_version(ref, world.store.get_labels(ref)[Label.CURRENT]).kid

    def sleep(seconds: float) -> None:  # real time for the app to poll, fake time for the engine
        time.sleep(min(seconds, 10 * INTERVAL))
        world.clock.tick(timedelta(seconds=seconds))

    engine = Engine(world.store, world.inventory, journal=Journal(world.store, actor="alice",
                    clock=world.clock), clock=world.clock, workdir=world.path, sleep=sleep)
    keys = world.path / "secrets" / "app"
    # the first deploy, as `keyroll export` + the Secret would have it
    subprocess.run([sys.executable, str(ROOT / "tests" / "kubelet.py"), str(keys)], check=True,
                   input=f"JWT_SECRET={world.store.read(ref, Label.CURRENT)[1].reveal()}\n"
                         f"JWT_SECRET_KID={old_kid:08x}\n", text=True)
    other = JWTKeyRing(FileKeySource.jwt_secret(path=keys, refresh_interval=INTERVAL))
    app = App(keys)
    failures: list[str] = []
    kids_signed: list[int] = []
    stop = threading.Event()
    first_tokens: list[str] = []
    started = time.monotonic()

    def exchange() -> None:
        token = other.sign({"sub": "other"}, ttl=timedelta(hours=2))
        reply = app.ask(token)
        if not reply["ok"]:
            failures.append("the app rejected a token another instance signed")
        try:
            other.verify(reply["token"])
        except Exception as exc:  # noqa: BLE001  (counted and reported below)
            failures.append(f"another instance rejected the app's token: {type(exc).__name__}")
        kids_signed.append(reply["signing_kid"])
        if not first_tokens:
            first_tokens.append(reply["token"])

    def traffic() -> None:
        for _ in range(MAX_ROUNDS):
            if stop.is_set() or time.monotonic() - started > DEADLINE:
                return
            exchange()

    exchange()
    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        record = engine.run(engine.start("jwt-access", "dev").id)
        assert record.state == "overlap"
        new_kid = world.store.get_version(ref, world.store.get_labels(ref)[Label.CURRENT]).kid
        time.sleep(10 * INTERVAL)
        # the old token still verifies in the overlap, in the app and everywhere else
        other.verify(first_tokens[0])
        world.clock.tick(timedelta(days=2))
        engine.advance(start_due=False)
        assert engine.get(record.id).state == "done"
        time.sleep(10 * INTERVAL)
    finally:
        stop.set()
        thread.join(timeout=30)
        code = app.quit()
    assert code == 0
    assert failures == []
    assert kids_signed[0] == old_kid and kids_signed[-1] == new_kid
    assert other.source.snapshot().by_kid.keys() == {new_kid}
