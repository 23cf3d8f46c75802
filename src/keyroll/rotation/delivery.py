"""The delivery hooks: where the environment's rendered variables go besides a .env file.

Each function takes the step's context and one hook, renders the environment's variables
(`keyroll.render.collect`: ``VAR``, ``VAR_KID``, ``_NEXT`` while a key is staged, ``_PREVIOUS``
during the overlap, optionally limited to some classes) and hands them to one target:

- ``kubernetes_secret``: server-side apply into a Secret (`keyroll.targets.kubernetes`);
- ``rollout``: restart a Deployment and wait until its rollout is complete;
- ``sealed_secret``: a SealedSecret manifest for a GitOps overlay
  (`keyroll.targets.sealedsecrets`);
- ``kv_delivery``: one KV v2 entry in the env-var layout (`keyroll.targets.kv`);
- ``write_tls``: a ``tls-certificate`` class's current chain and key as ``tls.crt`` and
  ``tls.key`` files (and ``kubernetes_secret`` with ``type = "kubernetes.io/tls"`` as a TLS
  Secret).

Annotations and metadata carry the rotation id, the step and fingerprints, never a value. A
failure becomes a failed `HookResult` with a one-line detail (the engine fails the step).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from keyroll.errors import KeyrollError, UsageError
from keyroll.files import write_private
from keyroll.inventory import Hook, Inventory
from keyroll.model import Kind, SecretRef, Version
from keyroll.render import EnvEntry, collect, owned_vars
from keyroll.rotation.strategies.base import StepContext
from keyroll.stores.base import Store
from keyroll.targets.hooks import HookResult
from keyroll.tlscert import Bundle, BundleError

__all__ = ["DELIVERY_ACTIONS", "deliver"]

DELIVERY_ACTIONS = ("kubernetes_secret", "rollout", "sealed_secret", "kv_delivery", "write_tls")


def _fill(text: str, environment: str) -> str:
    return text.replace("{env}", environment)


def _entries(store: Store, inventory: Inventory, environment: str,
             classes: list[str] | None) -> list[EnvEntry]:
    entries = collect(store, inventory, environment)
    if classes is None:
        return entries
    unknown = [name for name in classes if name not in inventory.classes]
    if unknown:
        raise UsageError(f"hook lists unknown class {unknown[0]!r}")
    sub = inventory.model_copy(update={"classes": {n: inventory.classes[n] for n in classes}})
    wanted = owned_vars(sub, environment)
    return [e for e in entries if e.name in wanted]


def _annotations(ctx: StepContext, step: str, entries: list[EnvEntry]) -> dict[str, str]:
    notes = {"keyroll.dev/rotation": ctx.rotation, "keyroll.dev/step": step,
             "keyroll.dev/secret": str(ctx.ref)}
    notes.update({f"keyroll.dev/fp.{e.name}": e.value.fingerprint
                  for e in entries if not e.name.endswith("_KID")})
    return notes


def deliver(ctx: StepContext, hook: Hook, *, store: Store, inventory: Inventory, workdir: Path,
            step: str, sleep: Callable[[float], None] = time.sleep) -> HookResult:
    """Run one delivery hook; never raises for a failure of the target (it is the result)."""
    started = time.monotonic()
    environment = ctx.ref.environment
    try:
        if hook.kubernetes_secret is not None:
            detail = _kubernetes_secret(ctx, hook, store, inventory, workdir, step)
        elif hook.rollout is not None:
            detail = _rollout(hook, environment, workdir, sleep)
        elif hook.sealed_secret is not None:
            detail = _sealed_secret(ctx, hook, store, inventory, workdir, step)
        elif hook.kv_delivery is not None:
            detail = _kv(ctx, hook, store, inventory, step)
        elif hook.write_tls is not None:
            detail = _write_tls(ctx, hook, store, workdir)
        else:
            raise UsageError(f"hook {hook.label!r} is not a delivery hook")
    except (KeyrollError, OSError) as exc:
        message = str(exc) if isinstance(exc, KeyrollError) else (exc.strerror or type(exc).__name__)
        return HookResult(hook.label, False, message, "", time.monotonic() - started)
    return HookResult(hook.label, True, detail, "", time.monotonic() - started)


def _kubeconfig(workdir: Path, path: str | None) -> str | None:
    """A kubeconfig path relative to the inventory's folder, ``~`` expanded."""
    return str(workdir / Path(path).expanduser()) if path else None


def _kubernetes_secret(ctx: StepContext, hook: Hook, store: Store, inventory: Inventory,
                       workdir: Path, step: str) -> str:
    from keyroll.targets.kubernetes import KubeClient

    spec = hook.kubernetes_secret
    assert spec is not None
    environment = ctx.ref.environment
    name, namespace = _fill(spec.name, environment), _fill(spec.namespace, environment)
    if spec.type == TLS_SECRET:
        data, notes = _tls_data(ctx, spec.classes, store, inventory, step)
    else:
        entries = _entries(store, inventory, environment, spec.classes)
        data = {e.name: e.value.reveal_bytes() for e in entries}
        notes = _annotations(ctx, step, entries)
    with KubeClient(kubeconfig=_kubeconfig(workdir, spec.kubeconfig),
                    context=_fill(spec.context, environment) if spec.context else None) as client:
        result = client.apply_secret(name, namespace, data, notes, secret_type=spec.type)
    others = len(set(result["keys"]) - set(data))
    return (f"applied {len(data)} keys to Secret {namespace}/{name} (field manager keyroll, "
            f"resourceVersion {result['resource_version']}; {others} other keys kept)")


TLS_SECRET = "kubernetes.io/tls"  # noqa: S105  (a Secret type, not a password)


def _tls_bundle(store: Store, inventory: Inventory, ref: SecretRef) -> tuple[Bundle, Version]:
    """The current chain and key of a ``tls-certificate`` secret."""
    cls = inventory.get_class(ref.name)
    if cls.kind is not Kind.TLS_CERTIFICATE:
        raise UsageError(f"class {cls.name!r} is {cls.kind.value}: TLS delivery (write_tls, "
                         "type kubernetes.io/tls) takes a tls-certificate class")
    version, value = store.read(ref)
    try:
        return Bundle.parse(value), version
    except BundleError as exc:
        raise UsageError(f"{ref}: version {version.number} is not a certificate bundle: {exc}"
                         ) from None


def _tls_data(ctx: StepContext, classes: list[str] | None, store: Store, inventory: Inventory,
              step: str) -> tuple[dict[str, bytes], dict[str, str]]:
    if classes is not None and len(classes) != 1:
        raise UsageError("a kubernetes.io/tls Secret holds one certificate: list one "
                         "tls-certificate class in classes")
    ref = SecretRef(ctx.ref.environment, classes[0]) if classes else ctx.ref
    bundle, version = _tls_bundle(store, inventory, ref)
    notes = {"keyroll.dev/rotation": ctx.rotation, "keyroll.dev/step": step,
             "keyroll.dev/secret": str(ref),
             "keyroll.dev/cert-sha256": str(version.meta.get("cert_sha256", ""))}
    return ({"tls.crt": bundle.chain_pem.encode(), "tls.key": bundle.key.reveal_bytes()},
            notes)


def _write_tls(ctx: StepContext, hook: Hook, store: Store, workdir: Path) -> str:
    """``tls.key`` (0600) then ``tls.crt`` (0644), each written atomically; a server that
    reloads between the two sees a key that does not match and keeps its old pair."""
    assert hook.write_tls is not None
    folder = workdir / _fill(hook.write_tls, ctx.ref.environment)
    bundle, version = _tls_bundle(store, ctx.inventory, ctx.ref)
    folder.mkdir(parents=True, exist_ok=True)
    write_private(folder / "tls.key", bundle.key.reveal())
    write_private(folder / "tls.crt", bundle.chain_pem)
    (folder / "tls.crt").chmod(0o644)  # the chain is public
    return (f"wrote tls.crt and tls.key to {folder} (version {version.number}, certificate "
            f"sha256 {str(version.meta.get('cert_sha256', ''))[:16]})")


def _rollout(hook: Hook, environment: str, workdir: Path, sleep: Callable[[float], None]) -> str:
    from keyroll.targets.kubernetes import KubeClient

    spec = hook.rollout
    assert spec is not None
    name, namespace = _fill(spec.name, environment), _fill(spec.namespace, environment)
    with KubeClient(kubeconfig=_kubeconfig(workdir, spec.kubeconfig),
                    context=_fill(spec.context, environment) if spec.context else None) as client:
        generation = client.restart(name, namespace)
        status = client.wait_rollout(name, namespace, generation,
                                     timeout=spec.timeout.total_seconds(), sleep=sleep,
                                     poll=spec.poll)
    return f"rollout of Deployment {namespace}/{name} complete: {status.message}"


def _sealed_secret(ctx: StepContext, hook: Hook, store: Store, inventory: Inventory,
                   workdir: Path, step: str) -> str:
    from keyroll.targets.sealedsecrets import manifest

    spec = hook.sealed_secret
    assert spec is not None
    environment = ctx.ref.environment
    cert_path = workdir / _fill(spec.cert, environment)
    try:
        cert = cert_path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the SealedSecrets certificate {cert_path}: "
                         f"{exc.strerror or type(exc).__name__}") from None
    entries = _entries(store, inventory, environment, spec.classes)
    name, namespace = _fill(spec.name, environment), _fill(spec.namespace, environment)
    text = manifest(name, namespace, spec.scope, {e.name: e.value.reveal_bytes() for e in entries},
                    cert, _annotations(ctx, step, entries))
    target = workdir / _fill(spec.path, environment)
    write_private(target, text)
    target.chmod(0o644)  # sealed: public, meant for git
    return (f"wrote SealedSecret {namespace}/{name} ({spec.scope}, {len(entries)} keys) to "
            f"{target}")


def _kv(ctx: StepContext, hook: Hook, store: Store, inventory: Inventory, step: str) -> str:
    from keyroll.targets.kv import connect, write_layout

    spec = hook.kv_delivery
    assert spec is not None
    environment = ctx.ref.environment
    entries = _entries(store, inventory, environment, spec.classes)
    path = _fill(spec.path, environment)
    client = connect(spec.url, spec.token_env)
    try:
        version = write_layout(client, spec.mount, path,
                               {e.name: e.value.reveal() for e in entries},
                               {"keyroll-rotation": ctx.rotation, "keyroll-step": step})
    finally:
        client.adapter.close()
    return f"wrote {len(entries)} variables to KV {spec.mount}/{path} (version {version})"
