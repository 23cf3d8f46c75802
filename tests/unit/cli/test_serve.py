"""``keyroll serve`` as real processes on one local store: replicas never run a step twice,
SIGTERM mid-tick leaves nothing half done, /healthz and the last-tick metric answer."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from keyroll.audit import Journal
from keyroll.model import SecretRef
from keyroll.rotation.record import STEPS, Rotation
from keyroll.rotation.rotator import ROTATOR_REF, last_tick
from keyroll.stores import open_store

pytestmark = pytest.mark.slow

KEYROLL = str(Path(sys.executable).with_name("keyroll"))
_CLASS = """
[classes.{name}]
kind = "opaque"
env_vars = ["{var}"]
cadence_days = 1
tier = "low"
blast_radius = "x"
owner = "ops"
environments = ["dev"]
overlap = {{ min = "0s", until_unused = false, propagation = "0s" }}
"""
_SLOW_HOOK = 'hooks.on_promote = [{ run = "touch promote.marker && sleep 2", shell = true }]\n'


def _project(tmp_path: Path, names: list[str], extra: str = "") -> dict[str, str]:
    text = 'project = "serve"\n[environments.dev]\nauto = true\n'
    for name in names:
        text += _CLASS.format(name=name, var=name.upper().replace("-", "_")) + extra
    (tmp_path / "keyroll.toml").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYROLL_")}
    env["KEYROLL_ACTOR"] = "rotator"
    for args in (["init"], *(["generate", n, "--env", "dev"] for n in names)):
        done = subprocess.run([KEYROLL, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    return env


def _store(tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_store("sqlite:.keyroll/store.db", base=tmp_path, create=False)


def _steps_once_per_rotation(tmp_path: Path) -> list[Rotation]:
    """Every rotation's step entries appear once in the journal; the chain verifies."""
    with _store(tmp_path) as store:
        journal = Journal(store)
        assert journal.verify().ok
        seen = collections.Counter(
            (r.rotation, r.action) for r in journal.records()
            if r.rotation and r.outcome == "ok" and r.action.startswith("rotation."))
        rotations = [Rotation.parse(r) for r in store.list_rotations()]
        for rotation in rotations:
            for step in STEPS:
                assert seen[(rotation.id, f"rotation.{step.value}")] <= 1, (rotation.id, step)
            if rotation.state == "done":
                for step in STEPS:
                    assert seen[(rotation.id, f"rotation.{step.value}")] == 1, (rotation.id, step)
        assert store.get_lock(ROTATOR_REF) is None
        for rotation in rotations:
            assert store.get_lock(rotation.ref) is None
        return rotations


def test_two_replicas_never_run_a_step_twice(tmp_path: Path) -> None:
    names = [f"token-{c}" for c in "abcd"]
    env = _project(tmp_path, names)
    argv = [KEYROLL, "serve", "--interval", "0.2", "--jitter", "0.5", "--max-ticks", "5",
            "--no-web"]
    replicas = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in replicas]
    for process, (stdout, stderr) in zip(replicas, outputs, strict=True):
        assert process.returncode == 0, stderr
        assert stdout.count("tick ") == 5
        assert "Traceback" not in stderr
    rotations = _steps_once_per_rotation(tmp_path)
    done = [r for r in rotations if r.state == "done"]
    assert {r.ref.name for r in done} == set(names)
    assert all(r.state == "done" for r in rotations)
    with _store(tmp_path) as store:
        assert last_tick(store) is not None


def test_sigterm_mid_tick_leaves_nothing_half_done(tmp_path: Path) -> None:
    env = _project(tmp_path, ["token-a", "token-b"], _SLOW_HOOK)
    process = subprocess.Popen([KEYROLL, "serve", "--interval", "60s", "--max-ticks", "3",
                                "--no-web"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    marker = tmp_path / "promote.marker"
    for _ in range(600):  # the first promote hook is running: we are mid-tick
        if marker.exists() or process.poll() is not None:
            break
        time.sleep(0.1)
    assert marker.exists(), process.communicate(timeout=30)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "stopped (signal)" in stderr
    rotations = _steps_once_per_rotation(tmp_path)
    # the step in progress finished and was saved; nothing after it ran
    assert len(rotations) == 1
    stopped = rotations[0]
    assert stopped.state.value == "overlap"
    assert [s.step for s in stopped.body.steps][-1] == "promote"
    assert stopped.body.steps[-1].outcome == "ok"
    with _store(tmp_path) as store:
        assert last_tick(store) is not None  # the cut-short tick was still a clean one
    # the next run resumes it to done (and starts the other secret's rotation)
    resumed = subprocess.run([KEYROLL, "advance"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    rotations = _steps_once_per_rotation(tmp_path)
    assert {r.id: r.state.value for r in rotations}[stopped.id] == "done"
    assert all(r.state == "done" for r in rotations)


def test_healthz_and_last_tick_metric(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    env = _project(tmp_path, ["token-a"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([KEYROLL, "serve", "--interval", "0.5", "--deadline", "60s",
                                "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    body = metrics = ""
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    body = r.read().decode()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    metrics = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert '"status":"ok"' in body and '"last_tick"' in body
    assert "keyroll_rotator_last_tick_timestamp_seconds" in metrics
    assert process.returncode == 0, stderr


def test_bad_serve_input_is_one_line_exit_2(tmp_path: Path) -> None:
    env = _project(tmp_path, ["token-a"])
    for args, message in ((["--interval", "soon"], "not a duration"),
                          (["--interval", "0s"], "must be positive"),
                          (["--env", "nope"], "no environment")):
        done = subprocess.run([KEYROLL, "serve", "--no-web", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
    moved = subprocess.run([KEYROLL, "serve", "--no-web"], cwd=tmp_path,
                           env={**env, "KEYROLL_NOW": "2030-01-01T00:00:00Z"},
                           capture_output=True, text=True, timeout=60, check=False)
    assert moved.returncode == 2 and "real time" in moved.stderr
    ref = SecretRef("dev", "token-a")
    with _store(tmp_path) as store:
        assert store.list_rotations(ref) == []
