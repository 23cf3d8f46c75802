"""Kubernetes: apply keyroll's keys into a Secret, restart a Deployment and wait for its rollout.

Through the official ``kubernetes`` client (extra ``kubernetes``, imported on first use):

- `KubeClient.apply_secret` is a **server-side apply** with field manager ``keyroll``
  (``PATCH`` with ``application/apply-patch+yaml``, ``force``): the API server records which
  fields keyroll manages, so the keys other managers wrote (``kubectl``, Helm, a person) are
  kept, and a key keyroll applied before but omits now (``JWT_SECRET_PREVIOUS`` after retire) is
  removed. Annotations carry the rotation id, the step and each key's fingerprint, never a value.
- `KubeClient.restart` patches the pod template's ``kubectl.kubernetes.io/restartedAt`` (what
  ``kubectl rollout restart`` does) and `KubeClient.wait_rollout` polls the Deployment until it
  is complete as ``kubectl rollout status`` decides it (observed generation caught up; updated,
  ready and available replicas all equal to the desired count, no old replica left), or fails
  with the ``Progressing`` condition's message (``ProgressDeadlineExceeded``), or at the timeout.

Every API error is translated here into a one-line `TargetError` that names the object and
the HTTP status, never a value; nothing above this module sees a ``kubernetes`` exception.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keyroll.errors import TargetError, UsageError

__all__ = ["FIELD_MANAGER", "KubeClient", "RolloutStatus", "rollout_status"]

FIELD_MANAGER = "keyroll"
_APPLY = "application/apply-patch+yaml"
_STRATEGIC = "application/strategic-merge-patch+json"
_RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
_POLL = 2.0
_MAX_POLLS = 10_000


def _import() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise UsageError("Kubernetes delivery needs the kubernetes client: "
                         "pip install 'keyroll[kubernetes]'") from None
    return kubernetes


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """Where a Deployment's rollout stands (``kubectl rollout status`` semantics)."""

    done: bool
    failed: bool
    message: str


def rollout_status(deployment: Mapping[str, Any], generation: int) -> RolloutStatus:
    """Judge a Deployment (as a dict: ``metadata``, ``spec``, ``status``) after our patch made
    ``generation``."""
    status = deployment.get("status") or {}
    spec = deployment.get("spec") or {}
    wanted = spec.get("replicas", 1)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("status") == "False":
            return RolloutStatus(False, True, condition.get("message") or condition.get("reason")
                                 or "the rollout stopped progressing")
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return RolloutStatus(False, True, condition.get("message") or "replica failure")
    if (status.get("observedGeneration") or 0) < generation:
        return RolloutStatus(False, False, "waiting for the controller to see the new generation")
    updated = status.get("updatedReplicas") or 0
    total = status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    ready = status.get("readyReplicas") or 0
    if updated < wanted:
        return RolloutStatus(False, False, f"{updated} of {wanted} new replicas updated")
    if total > updated:
        return RolloutStatus(False, False, f"{total - updated} old replicas pending termination")
    if available < updated or ready < updated:
        return RolloutStatus(False, False, f"{available} of {updated} updated replicas available")
    return RolloutStatus(True, False, f"{updated} of {wanted} replicas updated, ready, available")


class KubeClient:
    """One cluster, reached with in-cluster config or a kubeconfig file and context.

    Args:
        kubeconfig: a kubeconfig file (default: ``$KUBECONFIG`` or ``~/.kube/config``).
        context: the kubeconfig context (default: its current context).
        in_cluster: use the pod's service account; None tries it first when neither
            ``kubeconfig`` nor ``context`` is given.

    Raises:
        UsageError: the client is not installed, or no configuration could be loaded.
    """

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None,
                 in_cluster: bool | None = None) -> None:
        k8s = _import()
        self._k8s = k8s
        self._api_client: Any = None
        if in_cluster is None:
            in_cluster = kubeconfig is None and context is None
        if in_cluster:
            configuration = k8s.client.Configuration()
            try:
                k8s.config.load_incluster_config(client_configuration=configuration)
            except k8s.config.ConfigException:
                configuration = None
            if configuration is not None:
                self._api_client = k8s.client.ApiClient(configuration)
        if self._api_client is None:
            try:
                self._api_client = k8s.config.new_client_from_config(
                    config_file=kubeconfig, context=context)
            except (k8s.config.ConfigException, OSError) as exc:
                where = f"context {context!r}" if context else "the current context"
                raise UsageError(f"cannot load the Kubernetes configuration ({where}): "
                                 f"{str(exc).splitlines()[0][:200]}") from None
        self.core = k8s.client.CoreV1Api(self._api_client)
        self.apps = k8s.client.AppsV1Api(self._api_client)

    def close(self) -> None:
        self._api_client.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, exc: Exception, what: str) -> TargetError:
        status = getattr(exc, "status", None)
        reason = getattr(exc, "reason", None) or type(exc).__name__
        hint = {401: ": the credentials were refused", 403: ": keyroll's account may not do "
                "this (RBAC)", 404: ": not found", 409: ": conflict"}.get(status or 0, "")
        code = f"HTTP {status} " if status else ""
        return TargetError(f"Kubernetes {what}: {code}{reason}{hint}")

    def apply_secret(self, name: str, namespace: str, data: Mapping[str, bytes],
                     annotations: Mapping[str, str]) -> dict[str, Any]:
        """Server-side apply of ``data`` (keyroll's keys only) and ``annotations``.

        Returns:
            ``{"resource_version", "keys"}`` where ``keys`` are every key the Secret now holds
            (keyroll's and the others'), for evidence.

        Raises:
            TargetError: the API refused (named by status; no value in the message).
        """
        body = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations),
                         "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER}},
            "data": {key: base64.b64encode(value).decode("ascii") for key, value in data.items()},
        }
        try:
            secret = self.core.patch_namespaced_secret(
                name, namespace, body, field_manager=FIELD_MANAGER, force=True,
                _content_type=_APPLY)
        except self._k8s.client.ApiException as exc:
            raise self._error(exc, f"apply Secret {namespace}/{name}") from None
        except (OSError, self._k8s.client.exceptions.OpenApiException) as exc:
            raise self._error(exc, f"apply Secret {namespace}/{name}") from None
        return {"resource_version": secret.metadata.resource_version,
                "keys": sorted((secret.data or {}).keys())}

    def restart(self, name: str, namespace: str, *, now: datetime | None = None) -> int:
        """Patch the pod template's ``restartedAt``; return the Deployment's new generation."""
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        patch = {"spec": {"template": {"metadata": {"annotations": {
            # microseconds: two restarts within a second must still change the template
            _RESTARTED_AT: moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}}}}
        try:
            deployment = self.apps.patch_namespaced_deployment(
                name, namespace, patch, field_manager=FIELD_MANAGER, _content_type=_STRATEGIC)
        except self._k8s.client.ApiException as exc:
            raise self._error(exc, f"restart Deployment {namespace}/{name}") from None
        except (OSError, self._k8s.client.exceptions.OpenApiException) as exc:
            raise self._error(exc, f"restart Deployment {namespace}/{name}") from None
        return int(deployment.metadata.generation or 0)

    def generation(self, name: str, namespace: str) -> int:
        """The Deployment's current ``metadata.generation`` (what a rollout status waits for)."""
        try:
            deployment = self.apps.read_namespaced_deployment(name, namespace)
        except self._k8s.client.ApiException as exc:
            raise self._error(exc, f"read Deployment {namespace}/{name}") from None
        except (OSError, self._k8s.client.exceptions.OpenApiException) as exc:
            raise self._error(exc, f"read Deployment {namespace}/{name}") from None
        return int(deployment.metadata.generation or 0)

    def wait_rollout(
        self, name: str, namespace: str, generation: int, *, timeout: float,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
        poll: float = _POLL,
    ) -> RolloutStatus:
        """Poll until the rollout of ``generation`` is complete.

        Raises:
            TargetError: the rollout failed (its condition message), or ``timeout`` passed.
        """
        deadline = clock() + timeout
        last = RolloutStatus(False, False, "not read yet")
        for _ in range(_MAX_POLLS):
            try:
                deployment = self.apps.read_namespaced_deployment_status(name, namespace)
            except self._k8s.client.ApiException as exc:
                raise self._error(exc, f"read Deployment {namespace}/{name}") from None
            except (OSError, self._k8s.client.exceptions.OpenApiException) as exc:
                raise self._error(exc, f"read Deployment {namespace}/{name}") from None
            last = rollout_status(self._api_client.sanitize_for_serialization(deployment),
                                  generation)
            if last.done:
                return last
            if last.failed:
                raise TargetError(f"rollout of Deployment {namespace}/{name} failed: "
                                  f"{last.message}")
            if clock() >= deadline:
                break
            sleep(min(poll, max(0.0, deadline - clock())))
        raise TargetError(f"rollout of Deployment {namespace}/{name} did not complete within "
                          f"{timeout:g}s: {last.message}")
