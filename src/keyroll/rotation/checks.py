"""The verify checks that need more than a command: ``jwt_request`` and ``rollout_status``.

- ``jwt_request`` signs a short-lived token with the rotation's key through
  `keyroll.runtime.jwt.JWTKeyRing` over a `StoreKeySource` (the ring and source apps use), and
  calls an authenticated endpoint with it (`keyroll.targets.hooks.http_check`: retries,
  deadline, status, JSON value). The token is a credential: it is sent in one header and
  masked (whole, and its signature alone) in every detail and output kept as evidence.
- ``rollout_status`` waits until a Deployment's current rollout is complete through the
  Kubernetes target (``kubectl rollout status`` semantics), without restarting it.

Both return a `HookResult` (never raise for a failed check: the caller decides).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from keyroll.errors import KeyrollError
from keyroll.inventory import Hook
from keyroll.model import Label
from keyroll.rotation.strategies.base import StepContext
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import StoreKeySource
from keyroll.targets.hooks import HookResult, http_check

__all__ = ["jwt_request", "rollout_status"]

_MAX_OUTPUT = 2000  # as much of a reply as a command hook's output keeps


def _signing_label(ctx: StepContext, which: str) -> Label:
    """Which label signs: ``current``, or wherever the rotation's new version stands now."""
    if which == "current" or ctx.new is None:
        return Label.CURRENT
    labels = ctx.store.get_labels(ctx.ref)
    for label in (Label.PENDING, Label.CURRENT, Label.PREVIOUS):
        if labels.get(label) == ctx.new.number:
            return label
    return Label.CURRENT


def jwt_request(ctx: StepContext, hook: Hook, *, redact: Callable[[str], str],
                sleep: Callable[[float], None] = time.sleep) -> HookResult:
    """Sign a token with the rotation's (or the current) key and call the endpoint."""
    spec = hook.jwt_request
    assert spec is not None
    started = time.monotonic()
    label = _signing_label(ctx, spec.key)
    try:
        source = StoreKeySource(ctx.store, ctx.ref, refresh_interval=0, primary=label)
        ring = JWTKeyRing(source, algorithm=str(ctx.cls.options.get("algorithm", "HS256")))
        token = ring.sign(dict(spec.claims), ttl=spec.ttl)
        kid = f"{ring.current_kid:08x}"
    except KeyrollError as exc:
        return HookResult(hook.label, False, f"cannot sign a token: {exc}", "",
                          time.monotonic() - started, "jwt_request")
    signature = token.rsplit(".", 1)[-1]

    def mask(text: str) -> str:
        return redact(text.replace(token, "[token]").replace(signature, "[signature]"))

    value = f"{spec.scheme} {token}" if spec.scheme else token
    ok, detail, body = http_check(hook, url=spec.url, method=spec.method,
                                  secret_headers={spec.header: value}, redact=mask, sleep=sleep)
    shown = mask(body).strip()  # masked whole first: a cut could split the token
    shown = shown if len(shown) <= _MAX_OUTPUT else "…" + shown[-_MAX_OUTPUT:]
    return HookResult(hook.label, ok, f"{detail}; token signed by kid {kid} ({label.value})",
                      shown, time.monotonic() - started, "jwt_request")


def rollout_status(ctx: StepContext, hook: Hook, *, workdir: Path,
                   sleep: Callable[[float], None] = time.sleep) -> HookResult:
    """Wait for the Deployment's current rollout (no restart)."""
    from keyroll.targets.kubernetes import KubeClient

    spec = hook.rollout_status
    assert spec is not None
    started = time.monotonic()
    environment = ctx.ref.environment
    name = spec.name.replace("{env}", environment)
    namespace = spec.namespace.replace("{env}", environment)
    kubeconfig = str(workdir / Path(spec.kubeconfig).expanduser()) if spec.kubeconfig else None
    context = spec.context.replace("{env}", environment) if spec.context else None
    try:
        with KubeClient(kubeconfig=kubeconfig, context=context) as client:
            generation = client.generation(name, namespace)
            status = client.wait_rollout(name, namespace, generation,
                                         timeout=spec.timeout.total_seconds(), sleep=sleep,
                                         poll=spec.poll)
    except KeyrollError as exc:
        return HookResult(hook.label, False, str(exc), "", time.monotonic() - started,
                          "rollout_status")
    return HookResult(hook.label, True, f"rollout of Deployment {namespace}/{name} complete "
                      f"(generation {generation}): {status.message}", "",
                      time.monotonic() - started, "rollout_status")
