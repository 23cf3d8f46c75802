"""Run a class's inventory hooks for one rotation step, with every value masked in the output.

Hooks get the rotation's context in their environment (ids, step, fingerprints: never values);
a hook that needs the new values gets the environment's rendered .env on stdin or as a 0600
file. Their output becomes audit evidence only after the `Redactor` has masked every value the
store holds or recognises, in every environment (`store_redactor`), and keyroll's own
credentials.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from keyroll.errors import HookFailed, NotFound
from keyroll.inventory import Hook, Inventory
from keyroll.model import SecretValue
from keyroll.render import collect, render, write_private
from keyroll.rotation.strategies.base import StepContext
from keyroll.runtime.redaction import Redactor
from keyroll.stores.base import Store
from keyroll.stores.sqlite import SQLiteStore
from keyroll.targets.hooks import run_hook

__all__ = ["SENSITIVE_ENV", "HookRunner", "store_redactor"]


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


class HookRunner:
    """Runs hooks for the engine.

    Args:
        store, inventory: where values and classes come from.
        workdir: the folder commands run in and relative paths resolve against.
    """

    def __init__(self, store: Store, inventory: Inventory, workdir: Path) -> None:
        self.store = store
        self.inventory = inventory
        self.workdir = workdir

    def run(
        self,
        ctx: StepContext,
        which: str,
        *,
        step: str,
        report: Callable[[str], None],
        check: bool = True,
    ) -> list[dict[str, object]]:
        """Run the class's ``which`` hooks (``on_promote``, ``verify``, ``revoke``) that apply to
        the environment; return their redacted results.

        Raises:
            HookFailed: a hook failed and ``check`` is set (the results so far are in
                ``ctx.evidence[f"{which}_failed"]``).
        """
        environment = ctx.ref.environment
        hooks: list[Hook] = [h for h in getattr(ctx.cls.hooks, which) if h.applies_to(environment)]
        if not hooks:
            return []
        # admin credentials the class names (options ending in _env) and what hooks pass on
        named = [str(v) for k, v in ctx.cls.options.items() if k.endswith("_env")]
        named += [name for hook in hooks for name in hook.pass_env]
        redactor = store_redactor(self.store, env_names=named, workdir=self.workdir)
        env = {
            "KEYROLL_ROTATION": ctx.rotation, "KEYROLL_ENVIRONMENT": environment,
            "KEYROLL_SECRET": ctx.ref.name, "KEYROLL_STEP": step,
            "KEYROLL_NEW_FINGERPRINT": ctx.new.fingerprint if ctx.new else "",
            "KEYROLL_OLD_FINGERPRINT": ctx.old.fingerprint if ctx.old else "",
        }

        def dotenv() -> str:
            return render(collect(self.store, self.inventory, environment), "dotenv")

        results: list[dict[str, object]] = []
        for hook in hooks:
            try:
                result = run_hook(
                    hook, cwd=self.workdir, env=env, redact=redactor.redact,
                    stdin=dotenv() if hook.stdin_dotenv else None,
                    write_dotenv=lambda path: write_private(path, dotenv()), check=False,
                )
            except OSError as exc:
                raise HookFailed(f"hook {hook.label!r}: {exc.strerror or exc}") from None
            results.append(result.evidence())
            report(f"{which}: {result.label}: {result.detail}")
            if check and not result.ok:
                ctx.evidence[f"{which}_failed"] = results
                raise HookFailed(f"{which} hook {result.label!r} failed: {result.detail}")
        return results
