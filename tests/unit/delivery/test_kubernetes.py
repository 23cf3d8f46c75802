"""Issue 11 §2: the Secret + rollout delivery, through the real `kubernetes` client against the
FAKE API server in tests/fake_kube_api.py (no real API server can run here)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from keyroll.errors import TargetError
from keyroll.inventory import parse_inventory
from keyroll.model import Label
from tests.leaks import assert_no_leak
from tests.unit.conftest import INVENTORY, World

pytest.importorskip("kubernetes")

from keyroll.targets.kubernetes import KubeClient
from tests.fake_kube_api import FakeKubeAPI, serve

HOOKS = (
    'hooks.on_promote = ['
    '{ kubernetes_secret = { name = "app-secrets", namespace = "app-{env}", '
    'kubeconfig = "kubeconfig", classes = ["jwt-access"] } }, '
    '{ rollout = { name = "web", namespace = "app-{env}", timeout = "1m", poll = 0.01, '
    'kubeconfig = "kubeconfig" } }]'
)

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "web:1"}]}}},
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeKubeAPI]:
    with serve() as fake:
        fake.write_kubeconfig(tmp_path / "kubeconfig")
        yield fake


@pytest.fixture
def kube(api: FakeKubeAPI, tmp_path: Path) -> Iterator[KubeClient]:
    with KubeClient(kubeconfig=str(tmp_path / "kubeconfig")) as client:
        yield client


def _data(api: FakeKubeAPI, namespace: str, name: str) -> dict[str, str]:
    secret = api.secret(namespace, name)
    assert secret is not None
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_server_side_apply_keeps_other_managers_keys(api: FakeKubeAPI, kube: KubeClient) -> None:
    kube.core.create_namespaced_secret("prod", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app"},
        "data": {"SMTP_PASSWORD": base64.b64encode(b"theirs").decode()}}, field_manager="kubectl")
    first = kube.apply_secret("app", "prod", {"A": b"1", "A_PREVIOUS": b"0"}, {"n": "1"})
    assert first["keys"] == ["A", "A_PREVIOUS", "SMTP_PASSWORD"]
    # a key keyroll applied before and omits now is removed; the other manager's stays
    second = kube.apply_secret("app", "prod", {"A": b"2"}, {"n": "2"})
    assert second["keys"] == ["A", "SMTP_PASSWORD"]
    assert int(second["resource_version"]) > int(first["resource_version"])
    # a no-op apply does not bump the resourceVersion
    assert kube.apply_secret("app", "prod", {"A": b"2"}, {"n": "2"})["resource_version"] == \
        second["resource_version"]
    applies = [r for r in api.requests if r["method"] == "PATCH"]
    assert {r["content_type"] for r in applies} == {"application/apply-patch+yaml"}
    assert {r["query"]["fieldManager"] for r in applies} == {"keyroll"}
    managed = {e["manager"]: e for e in api._render(("secrets", "prod", "app"))["metadata"][
        "managedFields"]}
    assert "f:A" in managed["keyroll"]["fieldsV1"]["f:data"]
    assert "f:SMTP_PASSWORD" in managed["kubectl"]["fieldsV1"]["f:data"]


def test_fake_has_kubernetes_error_semantics(api: FakeKubeAPI, kube: KubeClient) -> None:
    from kubernetes.client import ApiException

    with pytest.raises(ApiException) as missing:
        kube.core.read_namespaced_secret("nope", "prod")
    assert missing.value.status == 404
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {}}
    created = kube.core.create_namespaced_secret("prod", body)
    with pytest.raises(ApiException) as exists:
        kube.core.create_namespaced_secret("prod", body)
    assert exists.value.status == 409
    stale = {**body, "metadata": {"name": "s", "resourceVersion": "1"}}
    with pytest.raises(ApiException) as conflict:
        kube.core.replace_namespaced_secret("s", "prod", stale)
    assert conflict.value.status == 409
    fresh = {**body, "metadata": {"name": "s",
                                  "resourceVersion": created.metadata.resource_version}}
    assert kube.core.replace_namespaced_secret("s", "prod", fresh).metadata.name == "s"
    # apply without force over a field another manager owns with another value: 409
    kube.core.create_namespaced_secret("prod", {**body, "metadata": {"name": "t"},
                                                "data": {"K": "eA=="}}, field_manager="helm")
    with pytest.raises(ApiException) as clash:
        kube.core.patch_namespaced_secret(
            "t", "prod", {"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": "t", "namespace": "prod"}, "data": {"K": "eQ=="}},
            field_manager="keyroll", _content_type="application/apply-patch+yaml")
    assert clash.value.status == 409 and "helm" in json.loads(clash.value.body)["message"]


def test_rollout_waits_for_completion_or_reports_the_condition(
    api: FakeKubeAPI, kube: KubeClient
) -> None:
    kube.apps.create_namespaced_deployment("prod", DEPLOYMENT)
    generation = kube.restart("web", "prod")
    assert generation == 2
    status = kube.wait_rollout("web", "prod", generation, timeout=30, poll=0.01)
    assert status.done and "3 of 3" in status.message
    api.break_rollout("prod", "web", 'ReplicaSet "web-3" has timed out progressing.')
    generation = kube.restart("web", "prod")
    with pytest.raises(TargetError, match="has timed out progressing"):
        kube.wait_rollout("web", "prod", generation, timeout=30, poll=0.01)
    with pytest.raises(TargetError, match="HTTP 404"):
        kube.restart("missing", "prod")


def _world_with_hooks(world: World) -> None:
    text = INVENTORY.replace('hooks.on_promote = [{ write_dotenv = "app.env" }]', HOOKS)
    world.inventory = parse_inventory(text, world.path / "keyroll.toml")


def test_rotation_applies_each_step_and_waits_for_the_rollout(
    world: World, api: FakeKubeAPI, kube: KubeClient
) -> None:
    _world_with_hooks(world)
    ref = world.seed("jwt-access")
    kube.core.create_namespaced_secret("app-dev", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secrets"},
        "data": {"DATABASE_URL": base64.b64encode(b"postgresql://x").decode()}},
        field_manager="helm")
    kube.apps.create_namespaced_deployment("app-dev", DEPLOYMENT)
    old = world.store.read(ref, Label.CURRENT)[1].reveal()
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    assert record.state == "overlap"
    new = world.store.read(ref, Label.CURRENT)[1].reveal()
    data = _data(api, "app-dev", "app-secrets")
    assert data["JWT_SECRET"] == new and data["JWT_SECRET_PREVIOUS"] == old
    assert data["DATABASE_URL"] == "postgresql://x"  # not keyroll's: kept
    assert "JWT_SECRET_NEXT" not in data
    # apply staged _NEXT (the first apply), promote replaced it; one restart each
    applies = [r["body"]["data"] for r in api.requests
               if r["method"] == "PATCH" and "secrets" in r["path"]]
    assert "JWT_SECRET_NEXT" in applies[0]
    restarts = [r for r in api.requests if r["method"] == "PATCH" and "deployments" in r["path"]]
    assert len(restarts) == 2
    world.clock.tick(timedelta(days=2))
    engine.advance(start_due=False)
    assert engine.get(record.id).state == "done"
    data = _data(api, "app-dev", "app-secrets")
    assert "JWT_SECRET_PREVIOUS" not in data and data["JWT_SECRET"] == new
    assert data["DATABASE_URL"] == "postgresql://x"
    secret = api.secret("app-dev", "app-secrets")
    assert secret is not None
    notes = secret["metadata"]["annotations"]
    assert notes["keyroll.dev/rotation"] == record.id
    assert_no_leak([json.dumps(notes), json.dumps([e.evidence for e in world.events])],
                   [old, new], where="annotations and evidence")


def test_failed_rollout_at_apply_rolls_back_before_anything_signs(
    world: World, api: FakeKubeAPI, kube: KubeClient
) -> None:
    _world_with_hooks(world)
    ref = world.seed("jwt-access")
    kube.apps.create_namespaced_deployment("app-dev", DEPLOYMENT)
    api.break_rollout("app-dev", "web", 'ReplicaSet "web-2" has timed out progressing.')
    current = world.store.get_labels(ref)[Label.CURRENT]
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    assert record.state == "rolled-back"
    assert world.store.get_labels(ref)[Label.CURRENT] == current
    failed = [e for e in world.events if e.kind == "step.failed"]
    assert failed and "has timed out progressing" in failed[0].message


def test_missing_client_is_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from keyroll.errors import UsageError
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(UsageError, match=r"pip install 'keyroll\[kubernetes\]'"):
        KubeClient(kubeconfig="x")

