"""``keyroll dashboard`` for real: a subprocess on a free loopback port, stopped by its PID;
and the lazy imports behind the ``web`` extra."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keyroll.cli.app import run
from keyroll.generate import generate
from keyroll.model import Label, SecretRef
from keyroll.net import is_loopback
from keyroll.stores.sqlite import SQLiteStore
from tests.leaks import assert_no_leak
from tests.servers import free_port
from tests.unit.conftest import INVENTORY

FROZEN = "2026-12-01T00:00:00+00:00"


def _project(folder: Path) -> tuple[dict[str, str], str]:
    """keyroll.toml, a store with one secret (created 2026-11-01), and the env to run in."""
    (folder / "keyroll.toml").write_text(INVENTORY)
    key = secrets.token_bytes(32)
    value = generate("base64-48")
    with SQLiteStore(folder / ".keyroll" / "store.db", key) as store:
        ref = SecretRef("dev", "jwt-access")
        version = store.put_version(ref, value, created_at=datetime.fromisoformat(
            "2026-11-01T00:00:00+00:00"))
        store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYROLL_")}
    env.update({"KEYROLL_MASTER_KEY": base64.b64encode(key).decode(), "KEYROLL_NOW": FROZEN,
                "KEYROLL_ACTOR": "ci"})
    return env, value.reveal()


def _wait_healthy(proc: subprocess.Popen[bytes], url: str) -> httpx.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # bounded: one minute
        if proc.poll() is not None:
            pytest.fail(f"keyroll dashboard exited with {proc.returncode}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("keyroll dashboard did not answer /healthz within a minute")


@pytest.mark.slow
def test_keyroll_dashboard_serves_healthz_and_metrics(tmp_path: Path) -> None:
    env, value = _project(tmp_path)
    port = free_port()
    log = tmp_path / "dashboard.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from keyroll.cli.app import main; main()", "dashboard",
             "--port", str(port)],
            cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            health = _wait_healthy(proc, f"{base}/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
            assert health.json()["journal_index"] in ("building", "ready")  # built at start
            assert httpx.get(f"{base}/audit", timeout=10).status_code == 200  # waits for it
            assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok",
                                                                      "journal_index": "ready"}
            metrics = httpx.get(f"{base}/metrics", timeout=10)
            assert metrics.status_code == 200
            samples = {(s.name, json.dumps(s.labels, sort_keys=True)): s.value
                       for family in text_string_to_metric_families(metrics.text)
                       for s in family.samples}
            labels = json.dumps({"class": "jwt-access", "environment": "dev",
                                 "kind": "jwt-signing", "tier": "medium"}, sort_keys=True)
            assert samples[("keyroll_secret_version", labels)] == 1
            assert samples[("keyroll_secret_age_seconds", labels)] == 30 * 86400  # KEYROLL_NOW
            assert samples[("keyroll_secret_days_left", labels)] == 60
            assert samples[("keyroll_store_up", "{}")] == 1
            page = httpx.get(f"{base}/secrets/dev/jwt-access", timeout=10)
            assert page.status_code == 200
            assert_no_leak([health.text, metrics.text, page.text], [value], where="HTTP")
            # DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own Host
            rebound = httpx.get(f"{base}/api/audit", headers={"host": f"rebind.example:{port}"},
                                timeout=10)
            assert rebound.status_code == 400
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    output = log.read_text()
    assert f"keyroll dashboard on http://127.0.0.1:{port}/" in output
    assert "GET /metrics" in output  # uvicorn's access log: paths, no values
    assert "Traceback" not in output
    assert_no_leak([output], [value], where="the dashboard's log")


def test_a_missing_master_key_is_one_line_before_the_port_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keyroll.toml").write_text(INVENTORY)
    monkeypatch.chdir(tmp_path)
    for var in ("KEYROLL_MASTER_KEY", "KEYROLL_CONFIG", "KEYROLL_STORE", "KEYROLL_NOW"):
        monkeypatch.delenv(var, raising=False)
    assert run(["dashboard", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no master key") and err.count("\n") == 1


def test_a_taken_port_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env, _ = _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    for var, value in env.items():
        if var.startswith("KEYROLL_"):
            monkeypatch.setenv(var, value)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run(["dashboard", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot listen on 127.0.0.1 port {port}: Address already in use; "
                   "choose another --port or --host\n")


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_a_bad_port_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["dashboard", "--port", port]) == 2
    assert "--port" in capsys.readouterr().err


def test_loopback_detection() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    wildcard = "0.0.0.0"  # noqa: S104 (a string under test, nothing binds it)
    assert not any(is_loopback(h) for h in (wildcard, "10.0.0.1", "example.org", "::"))


def _loaded(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code + "; import json, sys; "
                           "print(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, timeout=60, check=True)
    return list(json.loads(done.stdout.splitlines()[-1]))


WEB = ("fastapi", "starlette", "uvicorn", "jinja2", "prometheus_client")


@pytest.mark.parametrize("module", ["keyroll.rotation.engine", "keyroll.dashboard",
                                    "keyroll.cli.app"])
def test_web_libraries_load_only_when_the_dashboard_is_built(module: str) -> None:
    loaded = _loaded(f"import {module}")
    assert [m for m in loaded if m.split(".")[0] in WEB] == []


def test_missing_web_extra_names_the_install_command() -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "from keyroll.dashboard import create_app\n"
        "from keyroll.errors import UsageError\n"
        "try:\n"
        "    create_app(None, None)\n"
        "except UsageError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == (
        "the dashboard needs the web extra (fastapi is missing): pip install 'keyroll[web]'")


def test_an_unrelated_import_error_is_not_blamed_on_the_extra() -> None:
    from keyroll.dashboard import require_web

    with pytest.raises(ImportError, match="no_such_module"):
        raise require_web(ImportError("No module named 'no_such_module'", name="no_such_module"))
