"""Run a class's inventory hooks for one rotation step, with every value masked in the output.

Hooks get the rotation's context in their environment (ids, step, fingerprints: never values);
a hook that needs the new values gets the environment's rendered .env on stdin or as a 0600
file. Their output becomes audit evidence only after the `Redactor` has masked every value the
store holds or recognises, in every environment (`store_redactor`), and keyroll's own
credentials.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from keyroll.errors import HookFailed, KeyrollError, NotFound
from keyroll.files import git_ignores, git_tracks
from keyroll.inventory import Hook, Inventory, SecretClass
from keyroll.model import SecretRef, SecretValue
from keyroll.render import EnvEntry, collect, owned_vars, render, write_dotenv, write_private
from keyroll.rotation.checks import jwt_request, rollout_status
from keyroll.rotation.delivery import DELIVERY_ACTIONS, deliver
from keyroll.rotation.strategies.base import StepContext
from keyroll.runtime.jwks import jwks_document
from keyroll.runtime.keysource import StoreKeySource
from keyroll.runtime.redaction import Redactor
from keyroll.stores.base import Store
from keyroll.stores.sqlite import SQLiteStore
from keyroll.targets.hooks import HookResult, run_hook

__all__ = ["SENSITIVE_ENV", "HookRunner", "jwks_text", "store_redactor", "write_jwks"]


def jwks_text(store: Store, cls: SecretClass, ref: SecretRef) -> tuple[str, list[str]]:
    """The JWKS of a secret as the store holds it now (pending, current, previous public
    keys), and its kids. Public: it may be written anywhere.

    Raises:
        UsageError: the class's keys are not key pairs (an HMAC secret is never published).
        NotFound: the secret has no current version.
    """
    algorithm = cls.options.get("algorithm")
    source = StoreKeySource(store, ref, refresh_interval=0)
    document = jwks_document(source, algorithm=str(algorithm) if algorithm else None)
    return json.dumps(document, indent=2) + "\n", [k["kid"] for k in document["keys"]]


def write_jwks(store: Store, cls: SecretClass, ref: SecretRef, path: Path) -> list[str]:
    """Write the secret's JWKS atomically, mode 0644 (public keys only); return its kids."""
    text, kids = jwks_text(store, cls, ref)
    write_private(path, text)
    path.chmod(0o644)
    return kids


#: keyroll's own credentials, masked in hook output wherever they come from.
SENSITIVE_ENV = ("KEYROLL_MASTER_KEY", "BAO_TOKEN", "VAULT_TOKEN", "BAO_SECRET_ID",
                 "VAULT_SECRET_ID", "BAO_ROLE_ID", "VAULT_ROLE_ID")
_KEY_FILE = Path(".keyroll") / "master.key"


def _key_files(store: Store, workdir: Path | None) -> list[SecretValue]:
    """The master key files a hook could read (``cat .keyroll/master.key``), even when the
    store was opened with ``KEYROLL_MASTER_KEY`` and another key sits in the file."""
    paths = [workdir / _KEY_FILE] if workdir is not None else []
    if isinstance(store, SQLiteStore):
        paths.append(store.path.parent / "master.key")
    found = []
    for path in dict.fromkeys(paths):
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            found.append(SecretValue(text))
    return found


def store_redactor(
    store: Store, *, env_names: Iterable[str] = (), workdir: Path | None = None
) -> Redactor:
    """A redactor for output keyroll keeps or shows (hook output, evidence).

    It masks every readable version (current, pending, previous and unlabelled alike) of
    every secret of every environment in the store, recognises destroyed versions by their
    digests (`Store.recogniser`), and masks keyroll's own credentials: the store's
    (`Store.own_secrets`: master key, OpenBao token), the master key files next to the
    inventory and the store, the `SENSITIVE_ENV` variables, and the env vars named in
    ``env_names`` (admin DSNs a class names).
    """
    values: list[SecretValue] = [
        SecretValue(os.environ[name]) for name in (*SENSITIVE_ENV, *env_names)
        if os.environ.get(name)
    ]
    values += store.own_secrets()
    values += _key_files(store, workdir)
    for ref in store.list_secrets():
        for version in store.list_versions(ref):
            if version.destroyed:
                continue
            try:
                values.append(store.read_value(ref, version.number))
            except NotFound:
                continue
    return Redactor(values=values, recognisers=[store.recogniser()])


def _write_dotenv(path: Path, entries: list[EnvEntry], owned: set[str],
                  report: Callable[[str], None]) -> None:
    """A ``write_dotenv`` hook's write (an existing file keeps every line that is not
    keyroll's), with export's warning when git would publish it."""
    write_dotenv(path, entries, owned)
    if not git_ignores(path) or git_tracks(path):
        report(f"warning: {path} is tracked or not ignored by git: add it to .gitignore "
               "(and `git rm --cached` it) before a commit publishes its secrets")


class HookRunner:
    """Runs hooks for the engine.

    Args:
        store, inventory: where values and classes come from.
        workdir: the folder commands run in and relative paths resolve against.
    """

    def __init__(self, store: Store, inventory: Inventory, workdir: Path,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.inventory = inventory
        self.workdir = workdir
        self.sleep = sleep

    def redactor(self, ctx: StepContext, env_names: Iterable[str] = ()) -> Redactor:
        """The redactor for this step's output: `store_redactor`, plus the admin credentials
        the class names (options ending in ``_env``) and ``env_names``."""
        named = [str(v) for k, v in ctx.cls.options.items() if k.endswith("_env")]
        return store_redactor(self.store, env_names=[*named, *env_names], workdir=self.workdir)

    @staticmethod
    def context_env(ctx: StepContext, step: str) -> dict[str, str]:
        """The ``KEYROLL_*`` variables a command sees (ids and fingerprints, never values)."""
        return {
            "KEYROLL_ROTATION": ctx.rotation, "KEYROLL_ENVIRONMENT": ctx.ref.environment,
            "KEYROLL_SECRET": ctx.ref.name, "KEYROLL_STEP": step,
            "KEYROLL_NEW_FINGERPRINT": ctx.new.fingerprint if ctx.new else "",
            "KEYROLL_OLD_FINGERPRINT": ctx.old.fingerprint if ctx.old else "",
        }

    def run(
        self,
        ctx: StepContext,
        which: str,
        *,
        step: str,
        report: Callable[[str], None],
        check: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> list[dict[str, object]]:
        """Run the class's ``which`` hooks (``on_promote``, ``verify``, ``revoke``,
        ``remaining``) that apply to the environment; return their redacted results.

        ``extra_env`` adds variables to the hooks' environment (``KEYROLL_OLD_KID``).

        Raises:
            HookFailed: a hook failed and ``check`` is set (the results so far are in
                ``ctx.evidence[f"{which}_failed"]``).
        """
        environment = ctx.ref.environment
        hooks: list[Hook] = [h for h in getattr(ctx.cls.hooks, which) if h.applies_to(environment)]
        if not hooks:
            return []
        redactor = self.redactor(
            ctx, [n for hook in hooks for n in (*hook.pass_env, *hook.headers_env.values())])
        env = {**self.context_env(ctx, step), **(extra_env or {})}

        def dotenv() -> str:
            return render(collect(self.store, self.inventory, environment), "dotenv")

        results: list[dict[str, object]] = []
        for hook in hooks:
            if hook.write_jwks is not None or hook.scan is not None or any(
                    getattr(hook, action) is not None
                    for action in (*DELIVERY_ACTIONS, "jwt_request", "rollout_status")):
                if hook.write_jwks is not None:
                    result = self._write_jwks(ctx, hook)
                elif hook.jwt_request is not None:
                    result = jwt_request(ctx, hook, redact=redactor.redact, sleep=self.sleep)
                elif hook.rollout_status is not None:
                    result = rollout_status(ctx, hook, workdir=self.workdir, sleep=self.sleep)
                elif hook.scan is not None:
                    result = self._scan(hook)
                else:
                    result = deliver(ctx, hook, store=self.store, inventory=self.inventory,
                                     workdir=self.workdir, step=step)
                result = HookResult(result.label, result.ok, redactor.redact(result.detail),
                                    redactor.redact(result.output), result.seconds,
                                    result.check or ("rollout" if hook.rollout else ""))
                results.append(result.evidence())
                report(f"{which}: {result.label}: {result.detail}")
                if check and not result.ok:
                    ctx.evidence[f"{which}_failed"] = results
                    raise HookFailed(f"{which} hook {result.label!r} failed: {result.detail}")
                continue
            try:
                result = run_hook(
                    hook, cwd=self.workdir, env=env, redact=redactor.redact,
                    stdin=dotenv() if hook.stdin_dotenv else None,
                    write_dotenv=lambda path: _write_dotenv(
                        path, collect(self.store, self.inventory, environment),
                        owned_vars(self.inventory, environment), report),
                    check=False, sleep=self.sleep,
                )
            except OSError as exc:
                raise HookFailed(f"hook {hook.label!r}: {exc.strerror or exc}") from None
            results.append(result.evidence())
            report(f"{which}: {result.label}: {result.detail}")
            if check and not result.ok:
                ctx.evidence[f"{which}_failed"] = results
                raise HookFailed(f"{which} hook {result.label!r} failed: {result.detail}")
        return results

    def _scan(self, hook: Hook) -> HookResult:
        """A ``scan`` verify step: every version the store knows, in the hook's paths (and the
        repository's history with ``git``); fails on a current or pending value."""
        from keyroll.scan import Matcher, ScanIndex, scan_items
        from keyroll.scan.sources import Item, Skipped, git_history, tree

        assert hook.scan is not None
        started = time.monotonic()
        skipped = Skipped()
        paths = [self.workdir / p for p in hook.scan]

        def items() -> Iterable[Item]:
            if hook.git:
                yield from git_history(paths[0] if paths else self.workdir, since=None,
                                       skipped=skipped)
            yield from tree(paths, all_files=False, skipped=skipped)

        try:
            result = scan_items(Matcher(ScanIndex.from_store(self.store)), items(),
                                sources=[*hook.scan, *(["git"] if hook.git else [])])
        except KeyrollError as exc:
            return HookResult(hook.label, False, f"scan failed: {exc}", "",
                              time.monotonic() - started)
        summary = result.summary()
        live = result.exit_code(fail_on_retired=False) != 0
        detail = (f"scanned {result.texts} texts for {result.versions} versions: "
                  + ("a current or pending value found: " + "; ".join(result.hints())
                     if live else "no current or pending value found")
                  + f" ({summary['previous']} previous, {summary['retired']} retired)")
        return HookResult(hook.label, not live, detail, "", time.monotonic() - started)

    def _write_jwks(self, ctx: StepContext, hook: Hook) -> HookResult:
        assert hook.write_jwks is not None
        started = time.monotonic()
        target = self.workdir / hook.write_jwks
        try:
            kids = write_jwks(self.store, ctx.cls, ctx.ref, target)
        except (KeyrollError, OSError) as exc:
            detail = str(exc) if isinstance(exc, KeyrollError) else (exc.strerror or str(exc))
            return HookResult(hook.label, False, f"cannot write {target}: {detail}", "",
                              time.monotonic() - started)
        return HookResult(hook.label, True, f"wrote {target}: kids {', '.join(kids)}", "",
                          time.monotonic() - started)
