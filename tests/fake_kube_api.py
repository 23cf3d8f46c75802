"""A FAKE Kubernetes API server: just the endpoints keyroll's client calls, for tests.

No real API server can run on this machine, so tests talk to this one through the real
``kubernetes`` client library and a kubeconfig file the test writes. It implements, with
Kubernetes' semantics as documented in the API reference and the server-side apply KEP:

- Secrets (``/api/v1/namespaces/{ns}/secrets[/{name}]``): GET, POST (create: 409
  ``AlreadyExists``), PUT (replace: 409 ``Conflict`` on a stale ``resourceVersion``) and PATCH
  with ``application/apply-patch+yaml`` (server-side apply: ``fieldManager`` required; the
  fields each manager applied are recorded in ``managedFields``; a field another manager owns
  with a different value is a 409 conflict unless ``force=true``, which takes it over; a field
  the applier owned before and omits now is removed unless another manager still owns it; a
  no-op apply does not bump ``resourceVersion``), or ``application/merge-patch+json``.
- Deployments (``/apis/apps/v1/namespaces/{ns}/deployments/{name}[/status]``): POST, GET and
  PATCH with ``application/strategic-merge-patch+json`` (maps merged). A change to ``spec``
  bumps ``metadata.generation`` and starts a rollout that progresses by one step per status read
  (the controller first observes the generation, then surges and replaces one replica at a
  time) until updated = ready = available = replicas; a Deployment marked with
  `FakeKubeAPI.break_rollout` stalls and reports ``Progressing=False``
  (``ProgressDeadlineExceeded``) with the message given.
- Every request needs ``Authorization: Bearer <token>`` (401 otherwise); unknown paths are 404
  ``Status`` objects; ``resourceVersion`` is one counter across all objects.

Not implemented: watches, lists, label selectors, admission, protobuf, subresources other than
``status``. Requests are recorded in `FakeKubeAPI.requests` for assertions.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

_SECRET = re.compile(r"^/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?$")
_DEPLOY = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments(?:/([^/]+))?(/status)?$")
Path_ = tuple[str, ...]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, name: str = "", kind: str = "") -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
            "details": {"name": name, "kind": kind}}


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str, name: str = "", kind: str = ""):
        super().__init__(message)
        self.body = _status(code, reason, message, name, kind)
        self.code = code


def _leaves(obj: dict[str, Any]) -> dict[Path_, Any]:
    """The fields server-side apply tracks for a Secret: data keys, annotations, labels, type."""
    out: dict[Path_, Any] = {}
    for key, value in (obj.get("data") or {}).items():
        out[("data", key)] = value
    for key, value in (obj.get("stringData") or {}).items():
        out[("data", key)] = value  # the fake stores stringData as given (tests use data)
    meta = obj.get("metadata") or {}
    for part in ("annotations", "labels"):
        for key, value in (meta.get(part) or {}).items():
            out[("metadata", part, key)] = value
    if "type" in obj:
        out[("type",)] = obj["type"]
    return out


def _set(obj: dict[str, Any], path: Path_, value: Any) -> None:
    target = obj
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def _delete(obj: dict[str, Any], path: Path_) -> None:
    target = obj
    for part in path[:-1]:
        target = target.get(part) or {}
    target.pop(path[-1], None)


def _fields_v1(paths: set[Path_]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return tree


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


@dataclass
class _Rollout:
    generation: int
    step: int = 0
    broken: str | None = None


@dataclass
class FakeKubeAPI:
    """The fake's state; `serve` runs it on 127.0.0.1 and a free port."""

    token: str
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    managers: dict[tuple[str, str, str], dict[str, tuple[str, set[Path_]]]] = field(
        default_factory=dict)
    rollouts: dict[tuple[str, str], _Rollout] = field(default_factory=dict)
    broken: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    version: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    # --- helpers for tests ------------------------------------------------------------------

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get(("secrets", namespace, name))
            return copy.deepcopy(obj) if obj else None

    def break_rollout(self, namespace: str, name: str, message: str) -> None:
        """The next rollouts of this Deployment stall (their pods never become ready)."""
        with self.lock:
            self.broken[(namespace, name)] = message

    def write_kubeconfig(self, path: Path, *, context: str = "fake") -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "keyroll", "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "keyroll"}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # --- object bookkeeping -----------------------------------------------------------------

    def _bump(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    def _render(self, key: tuple[str, str, str]) -> dict[str, Any]:
        obj = copy.deepcopy(self.objects[key])
        entries = []
        for manager, (operation, paths) in sorted(self.managers.get(key, {}).items()):
            if paths:
                entries.append({"manager": manager, "operation": operation,
                                "apiVersion": obj.get("apiVersion", "v1"), "time": _now(),
                                "fieldsType": "FieldsV1", "fieldsV1": _fields_v1(paths)})
        obj["metadata"]["managedFields"] = entries
        return obj

    def _new_meta(self, body: dict[str, Any], namespace: str, name: str) -> dict[str, Any]:
        meta = dict(body.get("metadata") or {})
        meta.update(name=name, namespace=namespace, uid=str(uuid.uuid4()),
                    creationTimestamp=_now())
        meta.pop("resourceVersion", None)
        meta.pop("managedFields", None)
        return meta

    # --- secrets ----------------------------------------------------------------------------

    def create_secret(self, namespace: str, body: dict[str, Any], manager: str) -> dict[str, Any]:
        name = (body.get("metadata") or {}).get("name", "")
        key = ("secrets", namespace, name)
        if key in self.objects:
            raise APIError(409, "AlreadyExists", f'secrets "{name}" already exists', name, "secrets")
        obj = {"apiVersion": "v1", "kind": "Secret", "type": body.get("type", "Opaque"),
               "metadata": self._new_meta(body, namespace, name),
               "data": dict(body.get("data") or {})}
        self._bump(obj)
        self.objects[key] = obj
        self.managers[key] = {manager: ("Update", set(_leaves(obj)))}
        return self._render(key)

    def replace_secret(self, namespace: str, name: str, body: dict[str, Any],
                       manager: str) -> dict[str, Any]:
        key = ("secrets", namespace, name)
        old = self.objects.get(key)
        if old is None:
            raise APIError(404, "NotFound", f'secrets "{name}" not found', name, "secrets")
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise APIError(409, "Conflict", f'Operation cannot be fulfilled on secrets "{name}": '
                           "the object has been modified; please apply your changes to the "
                           "latest version and try again", name, "secrets")
        before, after = _leaves(old), _leaves(body)
        obj = copy.deepcopy(old)
        obj["data"] = dict(body.get("data") or {})
        obj["type"] = body.get("type", old.get("type"))
        for part in ("annotations", "labels"):
            obj["metadata"][part] = dict((body.get("metadata") or {}).get(part) or {})
        owners = self.managers.setdefault(key, {})
        changed = {p for p, v in after.items() if before.get(p) != v}
        for other, (operation, paths) in owners.items():
            owners[other] = (operation, (paths & set(after)) - changed)
        operation, mine = owners.get(manager, ("Update", set()))
        owners[manager] = (operation, mine | changed)
        if before != after:
            self._bump(obj)
        self.objects[key] = obj
        return self._render(key)

    def apply_secret(self, namespace: str, name: str, body: dict[str, Any], manager: str,
                     force: bool) -> dict[str, Any]:
        if not manager:
            raise APIError(400, "BadRequest", "PATCH /apply requires fieldManager to be set")
        meta = body.get("metadata") or {}
        if body.get("kind") != "Secret" or body.get("apiVersion") != "v1":
            raise APIError(400, "BadRequest", "apply body must be a v1 Secret")
        if meta.get("name") != name or meta.get("namespace", namespace) != namespace:
            raise APIError(400, "BadRequest", "the name/namespace in the body do not match the URL")
        key = ("secrets", namespace, name)
        config = _leaves(body)
        old = self.objects.get(key)
        if old is None:
            obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                   "metadata": self._new_meta({"metadata": {}}, namespace, name),
                                   "data": {}}
            self.managers[key] = {}
        else:
            wanted = meta.get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise APIError(409, "Conflict", "the object has been modified", name, "secrets")
            obj = copy.deepcopy(old)
        owners = self.managers[key]
        current = _leaves(obj)
        conflicts = [(other, path) for other, (_, paths) in owners.items() if other != manager
                     for path in paths if path in config and current.get(path) != config[path]]
        if conflicts and not force:
            listed = "; ".join(f'conflict with "{o}": .{".".join(p)}' for o, p in conflicts)
            raise APIError(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): "
                           f"{listed}", name, "secrets")
        for other, path in conflicts:  # force: the applier takes them over
            operation, paths = owners[other]
            owners[other] = (operation, paths - {path})
        _, before = owners.get(manager, ("Apply", set()))
        others = set().union(*(p for m, (_, p) in owners.items() if m != manager)) if owners else set()
        for path in before - set(config):
            if path not in others:
                _delete(obj, path)
        for path, value in config.items():
            _set(obj, path, value)
        owners[manager] = ("Apply", set(config))
        if old is None or _leaves(old) != _leaves(obj):
            self._bump(obj)
        self.objects[key] = obj
        return self._render(key)

    # --- deployments ------------------------------------------------------------------------

    def create_deployment(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = (body.get("metadata") or {}).get("name", "")
        key = ("deployments", namespace, name)
        if key in self.objects:
            raise APIError(409, "AlreadyExists", f'deployments.apps "{name}" already exists',
                           name, "deployments")
        replicas = (body.get("spec") or {}).get("replicas", 1)
        meta = self._new_meta(body, namespace, name)
        meta["generation"] = 1
        obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
               "spec": copy.deepcopy(body.get("spec") or {}),
               "status": {"observedGeneration": 1, "replicas": replicas,
                          "updatedReplicas": replicas, "readyReplicas": replicas,
                          "availableReplicas": replicas,
                          "conditions": [{"type": "Progressing", "status": "True",
                                          "reason": "NewReplicaSetAvailable",
                                          "message": f'ReplicaSet "{name}-1" has successfully '
                                                     "progressed."}]}}
        self._bump(obj)
        self.objects[key] = obj
        return self._render(key)

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        key = ("deployments", namespace, name)
        obj = self.objects.get(key)
        if obj is None:
            raise APIError(404, "NotFound", f'deployments.apps "{name}" not found', name,
                           "deployments")
        spec_before = copy.deepcopy(obj["spec"])
        _merge(obj, {k: v for k, v in patch.items() if k in ("metadata", "spec")})
        if obj["spec"] != spec_before:
            obj["metadata"]["generation"] += 1
            generation = obj["metadata"]["generation"]
            self.rollouts[(namespace, name)] = _Rollout(generation,
                                                        broken=self.broken.get((namespace, name)))
            self._bump(obj)
        return self._render(key)

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        """Each read moves a rollout on by one step, as the controller would between polls."""
        key = ("deployments", namespace, name)
        obj = self.objects.get(key)
        if obj is None:
            raise APIError(404, "NotFound", f'deployments.apps "{name}" not found', name,
                           "deployments")
        rollout = self.rollouts.get((namespace, name))
        if rollout is not None:
            self._progress(obj, rollout)
            if rollout.step < 0:
                del self.rollouts[(namespace, name)]
        return self._render(key)

    def _progress(self, obj: dict[str, Any], rollout: _Rollout) -> None:
        status, wanted = obj["status"], obj["spec"].get("replicas", 1)
        name = obj["metadata"]["name"]
        rollout.step += 1
        if rollout.step == 1:
            return  # the controller has not seen the new generation yet
        status["observedGeneration"] = rollout.generation
        if rollout.broken is not None:
            status.update(replicas=wanted + 1, updatedReplicas=1, readyReplicas=wanted,
                          availableReplicas=wanted, unavailableReplicas=1)
            if rollout.step >= 3:
                status["conditions"] = [{"type": "Progressing", "status": "False",
                                         "reason": "ProgressDeadlineExceeded",
                                         "message": rollout.broken}]
            return
        updated = min(rollout.step - 1, wanted)
        done = updated == wanted and rollout.step > wanted + 1
        status.update(replicas=wanted if done else wanted + 1, updatedReplicas=updated,
                      readyReplicas=wanted, availableReplicas=wanted)
        status["conditions"] = [{"type": "Progressing", "status": "True",
                                 "reason": "NewReplicaSetAvailable" if done else
                                 "ReplicaSetUpdated",
                                 "message": f'ReplicaSet "{name}-{rollout.generation}" '
                                            + ("has successfully progressed." if done
                                               else "is progressing.")}]
        if done:
            rollout.step = -1


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on `FakeKubeAPI.requests` instead."""

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else "{}"
        loaded = yaml.safe_load(raw)  # JSON is YAML: apply-patch+yaml accepts either
        if not isinstance(loaded, dict):
            raise APIError(400, "BadRequest", "the body is not an object")
        return loaded

    def _handle(self, method: str) -> None:
        api = self.server.api
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                raise APIError(401, "Unauthorized", "Unauthorized")  # noqa: TRY301  (one reply path)
            body = self._body() if method in ("POST", "PUT", "PATCH") else {}
            with api.lock:
                api.requests.append({"method": method, "path": url.path, "query": query,
                                     "content_type": self.headers.get("Content-Type", ""),
                                     "body": body})
                code, reply = 200, self._route(api, method, url.path, query, body)
                if method == "POST":
                    code = 201
        except APIError as exc:
            self._reply(exc.code, exc.body)
            return
        self._reply(code, reply)

    def _route(self, api: FakeKubeAPI, method: str, path: str, query: dict[str, str],
               body: dict[str, Any]) -> dict[str, Any]:
        manager = query.get("fieldManager", "")
        content_type = self.headers.get("Content-Type", "").split(";")[0]
        if match := _SECRET.match(path):
            namespace, name = match.groups()
            if name is None and method == "POST":
                return api.create_secret(namespace, body, manager or "unknown")
            if name is not None and method == "GET":
                if ("secrets", namespace, name) not in api.objects:
                    raise APIError(404, "NotFound", f'secrets "{name}" not found', name, "secrets")
                return api._render(("secrets", namespace, name))
            if name is not None and method == "PUT":
                return api.replace_secret(namespace, name, body, manager or "unknown")
            if name is not None and method == "PATCH":
                if content_type == "application/apply-patch+yaml":
                    return api.apply_secret(namespace, name, body, manager,
                                            query.get("force") == "true")
                if content_type == "application/merge-patch+json":
                    existing = api.objects.get(("secrets", namespace, name))
                    if existing is None:
                        raise APIError(404, "NotFound", f'secrets "{name}" not found', name,
                                       "secrets")
                    merged = copy.deepcopy(existing)
                    _merge(merged, body)
                    merged["metadata"].pop("resourceVersion", None)
                    return api.replace_secret(namespace, name, merged, manager or "unknown")
                raise APIError(415, "UnsupportedMediaType", f"{content_type} is not supported "
                               "by this fake for secrets")
        if match := _DEPLOY.match(path):
            namespace, name, status = match.groups()
            if name is None and method == "POST":
                return api.create_deployment(namespace, body)
            if name is not None and method == "GET":
                return api.read_deployment(namespace, name)
            if name is not None and method == "PATCH" and not status:
                if content_type != "application/strategic-merge-patch+json":
                    raise APIError(415, "UnsupportedMediaType", f"{content_type} is not "
                                   "supported by this fake for deployments")
                return api.patch_deployment(namespace, name, body)
        raise APIError(404, "NotFound", "the server could not find the requested resource")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")


class _Server(ThreadingHTTPServer):
    api: FakeKubeAPI
    daemon_threads = True


@contextmanager
def serve(token: str | None = None) -> Iterator[FakeKubeAPI]:
    """Run the fake on 127.0.0.1 and a free port for the duration of the block."""
    api = FakeKubeAPI(token=token or secrets.token_hex(16))
    server = _Server(("127.0.0.1", 0), _Handler)
    server.api = api
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
