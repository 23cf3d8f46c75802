"""Issue 15 §6: verify checks that really run, against a real HTTP server on loopback.

The server (``http.server`` in a thread) has an endpoint that fails its first N requests, one
that never becomes healthy, and one that accepts only a JWT signed by the store's current key,
checked with the `JWTKeyRing` an app uses. ``rollout_status`` runs against the FAKE Kubernetes
API in tests/fake_kube_api.py (no real API server can run here). Tokens and keys are planted
and grepped in every output.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from keyroll.audit import Journal
from keyroll.errors import InvalidToken
from keyroll.generate import generate
from keyroll.model import Label, SecretRef
from keyroll.reports import checklist
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import StoreKeySource
from keyroll.stores.base import Store
from tests.leaks import assert_no_leak
from tests.world import World

REF = SecretRef("dev", "jwt")


@dataclass
class App:
    """What the loopback app saw and how it behaves."""

    store: Store | None = None
    fail_first: int = 3
    seen: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            with app.lock:
                app.seen.append({"path": self.path, "method": self.command, "body": body,
                                 "headers": dict(self.headers)})
                count = sum(1 for s in app.seen if s["path"] == self.path)
            if self.path == "/flaky":
                if count <= app.fail_first:
                    self._reply(503, {"status": "starting"})
                else:
                    self._reply(200, {"status": "ok", "checks": {"db": "ok"}})
            elif self.path == "/never":
                self._reply(503, {"status": "starting"})
            elif self.path == "/me":
                self._me()
            else:
                self._reply(404, {})

        def _me(self) -> None:
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ")
            with app.lock:
                app.tokens.append(token)
            assert app.store is not None
            # the app's own ring over the store: accepts only the current key's kid
            ring = JWTKeyRing(StoreKeySource(app.store, REF, refresh_interval=0,
                                             accept=()), audience="api")
            try:
                claims = ring.verify(token)
            except InvalidToken:
                # a hostile app echoes the credential it refused
                self._reply(401, {"error": "invalid token", "got": auth})
                return
            self._reply(200, {"sub": claims["sub"], "ok": True})

        do_GET = _serve
        do_POST = _serve

    return Handler


@pytest.fixture
def app() -> Iterator[tuple[App, str]]:
    state = App()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _world(tmp_path: Path, verify: str, *, on_promote: str = '[{ write_dotenv = "app.env" }]'
           ) -> World:
    text = f'''project = "t"
[environments.dev]

[classes.jwt]
kind = "jwt-signing"
env_vars = ["JWT_SECRET"]
cadence_days = 90
tier = "high"
blast_radius = "sessions"
owner = "auth"
environments = ["dev"]
overlap = {{ token_ttl = "15m", margin = "0s" }}
hooks.on_promote = {on_promote}
hooks.verify = {verify}
'''
    world = World.create(tmp_path, text)
    world.put_current(REF, generate("base64-48"))
    return world


def _promote(record: Any) -> dict[str, Any]:
    return next(s.evidence for s in record.body.steps if s.step == "promote")


def _values(world: World) -> list[str]:
    return [world.store.read_value(REF, v.number).reveal()
            for v in world.store.list_versions(REF) if not v.destroyed]


def test_http_check_retries_until_healthy_with_method_headers_body_and_json(
    tmp_path: Path, app: tuple[App, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, base = app
    api_key = "smoke-k3y$\"\\"
    monkeypatch.setenv("KR_SMOKE_KEY", api_key)
    world = _world(tmp_path, (
        f'[{{ http = "{base}/flaky", method = "POST", headers = {{ X-Probe = "keyroll" }}, '
        'headers_env = { X-Api-Key = "KR_SMOKE_KEY" }, json_body = { deep = true }, '
        'status = 200, expect_json = { path = "$.checks.db", value = "ok" }, '
        'until = "10s", interval = 0.05 }]'))
    record = world.rotate("jwt")
    assert record.state == "done", record.body.error
    [check] = _promote(record)["verify"]
    assert check["ok"] is True and check["check"] == "http"
    assert "after 4 attempts" in check["detail"] and "$.checks.db" in check["detail"]
    flaky = [s for s in state.seen if s["path"] == "/flaky"]
    assert len(flaky) == 4
    assert {s["method"] for s in flaky} == {"POST"}
    assert flaky[0]["headers"]["X-Probe"] == "keyroll"
    assert flaky[0]["headers"]["X-Api-Key"] == api_key
    assert json.loads(flaky[0]["body"]) == {"deep": True}
    text = checklist(world.store, world.inventory, Journal(world.store), "jwt", "dev")
    assert "- [x] Deploy rolled; readiness probes green (1 on_promote hooks; 1 readiness " \
           "checks" in text
    assert_no_leak([world.journal_text(), world.records_text(), text,
                    *(e.message for e in world.events)], [api_key, *_values(world)])


def test_a_check_that_never_passes_hits_its_deadline_and_the_rotation_turns_back(
    tmp_path: Path, app: tuple[App, str],
) -> None:
    state, base = app
    world = _world(tmp_path, f'[{{ http = "{base}/never", until = 0.6, interval = 0.1 }}]')
    old = world.store.get_labels(REF)[Label.CURRENT]
    record = world.engine().run(world.engine().start("jwt", "dev").id)
    assert record.reverted and record.body.error is not None
    assert record.body.error.step == "promote"
    assert "deadline 0.6s passed" in record.body.error.message
    assert world.store.get_labels(REF)[Label.CURRENT] == old  # the old key signs again
    attempts = [s for s in state.seen if s["path"] == "/never"]
    # the forward promote and the promote back (which records verify, never obeys it) each
    # try until the deadline: bounded by it, and more than one attempt each
    assert 6 <= len(attempts) <= 16
    text = checklist(world.store, world.inventory, Journal(world.store), "jwt", "dev")
    assert "- [ ] Deploy rolled; readiness probes green" in text


def test_jwt_request_signs_with_the_new_key_through_the_apps_ring(
    tmp_path: Path, app: tuple[App, str],
) -> None:
    state, base = app
    world = _world(tmp_path, (
        f'[{{ jwt_request = {{ url = "{base}/me", claims = {{ sub = "smoke", aud = "api" }} }}, '
        'expect_json = { path = "$.ok", value = true } }]'))
    state.store = world.store
    record = world.rotate("jwt")
    assert record.state == "done", record.body.error
    [check] = _promote(record)["verify"]
    assert check["ok"] is True and check["check"] == "jwt_request"
    new = next(v for v in world.store.list_versions(REF) if v.meta.get("rotation") == record.id)
    assert f"kid {new.kid_hex}" in check["detail"]
    [token] = state.tokens
    assert_no_leak([world.journal_text(), world.records_text(),
                    *(e.message for e in world.events)], [token, *_values(world)])


def test_a_refused_token_rolls_back_and_the_echoed_token_is_masked(
    tmp_path: Path, app: tuple[App, str],
) -> None:
    state, base = app
    # no aud claim: the app refuses the token and echoes the Authorization header
    world = _world(tmp_path, f'[{{ jwt_request = {{ url = "{base}/me", '
                             'claims = { sub = "x" } } }]')
    state.store = world.store
    record = world.engine().run(world.engine().start("jwt", "dev").id)
    assert record.reverted and record.body.error is not None
    assert "HTTP 401 (expected 200)" in record.body.error.message
    tokens = state.tokens  # one forward, one on the promote back (recorded, not obeyed)
    assert len(tokens) == 2
    failed = _promote_failed(world, record.id)
    assert "\"got\": \"[masked]\"" in failed["output"] and tokens[0] not in failed["output"]
    assert_no_leak([world.journal_text(), world.records_text(),
                    *(e.message for e in world.events)],
                   [*tokens, *(t.rsplit(".", 1)[1] for t in tokens), *_values(world)])


def _promote_failed(world: World, rotation_id: str) -> dict[str, Any]:
    for entry in Journal(world.store).records():
        if entry.rotation == rotation_id and entry.action == "rotation.promote" and \
                entry.outcome == "failed":
            return dict(entry.evidence["verify_failed"][0])
    raise AssertionError("no failed promote in the journal")


def test_without_a_readiness_check_the_checklist_does_not_tick_readiness(
    tmp_path: Path,
) -> None:
    world = _world(tmp_path, "[]")
    assert world.rotate("jwt").state == "done"
    text = checklist(world.store, world.inventory, Journal(world.store), "jwt", "dev")
    assert ("- [ ] Deploy rolled; readiness probes green (1 on_promote hooks; no readiness "
            "check ran") in text
    assert "- [ ] Change window: none configured" in text


def test_rollout_status_waits_for_the_current_rollout(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes")
    from tests.fake_kube_api import serve

    with serve() as api:
        api.write_kubeconfig(tmp_path / "kubeconfig")
        from keyroll.targets.kubernetes import KubeClient

        with KubeClient(kubeconfig=str(tmp_path / "kubeconfig")) as kube:
            for name in ("web", "api"):
                kube.apps.create_namespaced_deployment("app-dev", {
                    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": {"containers": [{"name": "w",
                                                                   "image": "w"}]}}}})
            # someone else's deploy of api is in progress and stalls
            api.break_rollout("app-dev", "api", 'ReplicaSet "api-2" has timed out progressing.')
            kube.restart("api", "app-dev")
        for name in ("web", "api"):
            folder = tmp_path / name
            folder.mkdir()
            (folder / "kubeconfig").write_text((tmp_path / "kubeconfig").read_text())
            world = _world(folder, (
                f'[{{ rollout_status = {{ name = "{name}", namespace = "app-{{env}}", '
                'timeout = "30s", poll = 0.01, kubeconfig = "kubeconfig" } }]'))
            record = world.engine().run(world.engine().start("jwt", "dev").id)
            text = checklist(world.store, world.inventory, Journal(world.store), "jwt", "dev")
            if name == "web":
                assert record.state == "overlap", record.body.error
                [check] = _promote(record)["verify"]
                assert check["check"] == "rollout_status" and "complete" in check["detail"]
                assert "- [x] Deploy rolled; readiness probes green" in text
            else:
                assert record.reverted and record.body.error is not None
                assert "timed out progressing" in record.body.error.message
                assert "- [ ] Deploy rolled; readiness probes green" in text
        # the check never restarts anything: the one PATCH is the stalled deploy's
        assert len([r for r in api.requests if r["method"] == "PATCH"]) == 1
