"""Credentials a provider issues and revokes through commands (``issued-key``): Stripe
restricted keys, OpenAI service-account keys, GitHub app tokens, MinIO service accounts, any
API or CLI that can mint a second key while the first still works.

============ ==================================================================================
plan         with ``list``: the current key id is still listed, and the provider has room for
             one more key (``max_keys``); with ``test``: the current value works
create       reconcile an earlier attempt of this rotation (`_issuance`), record the intent,
             run ``issue``: the new value (and its key id) from its stdout, never logged
apply        nothing: the provider accepts the new key as soon as it issued it
test         ``test`` with the new value on stdin (else: the value differs from the old one)
overlap      the deadline, then, with ``last_used``, until the old key's last use is older
             than the overlap's start (or than ``quiet``), ``overlap.max`` at most
retire       ``revoke`` the old key (already gone from ``list``: nothing to do)
rollback     ``revoke`` every key this rotation issued; the old one was never touched
============ ==================================================================================

Options (``[classes.<name>].options``)::

    issue       { run = …, shell, pass_env, timeout }: prints the new value on one line, or a
                JSON object with it and its key id (required)
    revoke      { run = … }: revokes the key whose id is in KEYROLL_KEY_ID; with
                stdin_value = true (or when the provider gave no key id) it also reads the
                old value on stdin (required)
    test        { run = … }: exits 0 when the value on stdin authenticates
    last_used   { run = … }: prints when KEYROLL_KEY_ID was last used (ISO 8601, a Unix
                timestamp, or nothing / "never")
    list        { run = … }: prints the key ids the provider holds (one per line or JSON);
                lets keyroll find keys it issued but never stored after a crash
    value_field JSON field of the value (default "value"; dotted paths: "api_key.value")
    id_field    JSON field of the key id (default "key_id")
    id_var      one of env_vars that receives the key id instead of the value (MinIO's
                MINIO_ACCESS_KEY beside MINIO_SECRET_KEY)
    quiet       the old key counts as unused once its last use is this old (default: only a
                last use before the overlap began counts)
    max_keys    with list: refuse to start when the provider already holds this many keys

Every command gets ``KEYROLL_ROTATION``, ``KEYROLL_ENVIRONMENT``, ``KEYROLL_SECRET``,
``KEYROLL_STEP`` and, where a key is meant, ``KEYROLL_KEY_ID``; values only ever on stdin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keyroll.durations import parse_duration
from keyroll.errors import KeyrollError, RotationRefused, StepFailed, TargetError
from keyroll.inventory import SecretClass
from keyroll.issued import KEY_ID
from keyroll.model import Kind, SecretValue, Version
from keyroll.rotation.strategies import _issuance
from keyroll.rotation.strategies._options import option_error
from keyroll.rotation.strategies.base import StepContext, Strategy, Verdict
from keyroll.runtime.redaction import Redactor
from keyroll.targets.provider_commands import (
    CommandResult,
    ProviderCommand,
    parse_ids,
    parse_issued,
    parse_time,
    run_command,
    withhold_tokens,
)

__all__ = ["IssuedKeyOptions", "IssuedKeyStrategy", "issued_options"]

_COMMANDS = ("issue", "revoke", "test", "last_used", "list")
_KNOWN = (*_COMMANDS, "value_field", "id_field", "id_var", "quiet", "max_keys")


@dataclass(frozen=True, slots=True)
class IssuedKeyOptions:
    """An ``issued-key`` class's options, checked (see the module docstring)."""

    issue: ProviderCommand
    revoke: ProviderCommand
    test: ProviderCommand | None
    last_used: ProviderCommand | None
    listing: ProviderCommand | None
    value_field: str
    id_field: str
    id_var: str | None
    quiet: timedelta | None
    max_keys: int | None

    @property
    def pass_env(self) -> list[str]:
        commands = (self.issue, self.revoke, self.test, self.last_used, self.listing)
        return [n for c in commands if c is not None for n in c.pass_env]


def issued_options(cls: SecretClass) -> IssuedKeyOptions:
    """The class's options, checked.

    Raises:
        UsageError: one line naming the class and the option.
    """
    opts = cls.options
    unknown = sorted(set(opts) - set(_KNOWN))
    if unknown:
        raise option_error(cls, unknown[0], f"unknown option (known: {', '.join(_KNOWN)})")
    commands: dict[str, ProviderCommand | None] = {}
    for name in _COMMANDS:
        raw = opts.get(name)
        if raw is None:
            if name in ("issue", "revoke"):
                raise option_error(cls, name, f"required for kind {cls.kind.value}: "
                                   f"{name} = {{ run = [\"cmd\", \"arg\"] }}")
            commands[name] = None
            continue
        commands[name] = ProviderCommand.parse(f"class {cls.name!r}: options.{name}", name, raw)
    fields = {}
    for name, default in (("value_field", "value"), ("id_field", "key_id")):
        value = opts.get(name, default)
        if not isinstance(value, str) or not value or any(not p for p in value.split(".")):
            raise option_error(cls, name, "a JSON field name, dotted for nested objects")
        fields[name] = value
    id_var = opts.get("id_var")
    if id_var is not None and (not isinstance(id_var, str) or id_var not in cls.env_vars):
        raise option_error(cls, "id_var", "must be one of the class's env_vars")
    if id_var is not None and len(cls.env_vars) < 2:
        raise option_error(cls, "id_var", "needs a second env var for the value")
    quiet = None
    if "quiet" in opts:
        try:
            quiet = parse_duration(opts["quiet"])
        except ValueError as exc:
            raise option_error(cls, "quiet", str(exc)) from None
    max_keys = opts.get("max_keys")
    if max_keys is not None and (not isinstance(max_keys, int) or isinstance(max_keys, bool)
                                 or not 2 <= max_keys <= 1000):
        raise option_error(cls, "max_keys", "a whole number from 2 (old and new key) to 1000")
    if max_keys is not None and commands["list"] is None:
        raise option_error(cls, "max_keys", "needs list = { run = … } to count the keys")
    issue, revoke = commands["issue"], commands["revoke"]
    assert issue is not None
    assert revoke is not None
    return IssuedKeyOptions(issue, revoke, commands["test"], commands["last_used"],
                            commands["list"], fields["value_field"], fields["id_field"],
                            id_var, quiet, max_keys)


def _key_id(version: Version | None) -> str | None:
    named = version.meta.get(KEY_ID) if version is not None else None
    return str(named) if named else None


class IssuedKeyStrategy(Strategy):
    """A credential the provider issues: a second key during the overlap, the old one
    revoked at retire."""

    kind = Kind.ISSUED_KEY
    issues_value = True

    def validate(self, cls: SecretClass) -> None:
        issued_options(cls)

    # running the provider's commands ------------------------------------------------------

    @staticmethod
    def _redactor(ctx: StepContext, opts: IssuedKeyOptions,
                  extra: list[SecretValue]) -> Callable[[str], str]:
        """Masks every value the store holds, keyroll's own credentials, the admin tokens the
        commands are passed, and ``extra`` (the value a command was given or printed)."""
        from keyroll.rotation.deploy import store_redactor

        base = store_redactor(ctx.store, env_names=opts.pass_env, workdir=ctx.workdir)
        more = Redactor(values=extra)
        return lambda text: more.redact(base.redact(text))

    def _run(self, ctx: StepContext, opts: IssuedKeyOptions, command: ProviderCommand, *,
             key_id: str | None = None, stdin: SecretValue | None = None,
             mask: list[SecretValue] | None = None) -> CommandResult:
        context = {"KEYROLL_ROTATION": ctx.rotation, "KEYROLL_ENVIRONMENT": ctx.ref.environment,
                   "KEYROLL_SECRET": ctx.ref.name, "KEYROLL_STEP": command.what,
                   "KEYROLL_KEY_ID": key_id or ""}
        redact = self._redactor(ctx, opts, [*(mask or []), *([stdin] if stdin else [])])
        return run_command(command, cwd=ctx.workdir, context=context,
                           stdin=stdin.reveal() + "\n" if stdin is not None else None,
                           redact=redact)

    def _checked(self, ctx: StepContext, opts: IssuedKeyOptions, command: ProviderCommand,
                 **kwargs: Any) -> CommandResult:
        result = self._run(ctx, opts, command, **kwargs)
        if not result.ok:
            said = f": {result.stderr}" if result.stderr else ""
            raise TargetError(f"{ctx.ref}: {command.label} failed with exit code "
                              f"{result.code}{said}")
        return result

    def _listed(self, ctx: StepContext, opts: IssuedKeyOptions) -> set[str] | None:
        if opts.listing is None:
            return None
        result = self._checked(ctx, opts, opts.listing)
        return parse_ids(result.stdout, id_field=opts.id_field, what=f"{ctx.ref}: "
                         f"{opts.listing.label}")

    def _revoke(self, ctx: StepContext, opts: IssuedKeyOptions, key_id: str | None,
                value: SecretValue | None, listed: set[str] | None) -> str:
        """Revoke one key; 'already gone' when ``list`` no longer shows it."""
        if key_id is not None and listed is not None and key_id not in listed:
            return "already gone"
        if key_id is None and value is None:
            raise StepFailed(f"{ctx.ref}: a key with neither a key id nor a value cannot be "
                             "revoked: revoke it in the provider's console")
        stdin = value if (opts.revoke.stdin_value or key_id is None) else None
        self._checked(ctx, opts, opts.revoke, key_id=key_id, stdin=stdin,
                      mask=[value] if value is not None else [])
        return "revoked"

    # steps --------------------------------------------------------------------------------

    def plan(self, ctx: StepContext) -> None:
        opts = issued_options(ctx.cls)
        old_id = _key_id(ctx.old)
        listed = self._listed(ctx, opts)
        if listed is not None:
            if old_id is not None and old_id not in listed:
                raise RotationRefused(
                    f"{ctx.ref}: the provider no longer lists the current key {old_id}: it was "
                    "revoked outside keyroll; import the key the app uses now (`keyroll "
                    "import`) before rotating")
            if opts.max_keys is not None and len(listed) >= opts.max_keys:
                raise RotationRefused(
                    f"{ctx.ref}: the provider already holds {len(listed)} keys (max_keys "
                    f"{opts.max_keys}), so it cannot issue the overlap's second key: revoke "
                    "one that is not in use, then rotate again; nothing was changed")
            ctx.evidence["listed"] = {"keys": len(listed), "current_listed": old_id in listed
                                      if old_id else None}
        if opts.test is not None and ctx.old is not None:
            try:
                self._checked(ctx, opts, opts.test, key_id=old_id, stdin=ctx.value(ctx.old))
            except TargetError as exc:
                raise RotationRefused(f"{ctx.ref}: the current key does not pass the test "
                                      f"command, so the rotation did not start: {exc}") from None
            ctx.evidence["current_tested"] = True

    def _reconcile(self, ctx: StepContext, opts: IssuedKeyOptions,
                   intent: _issuance.Intent) -> list[dict[str, str]]:
        listed = self._listed(ctx, opts)
        if listed is None and not intent.issued:
            raise _issuance.IntentUnresolved(
                f"{ctx.ref}: an earlier attempt of rotation {ctx.rotation} ran `issue` at "
                f"{intent.at:%Y-%m-%d %H:%M:%S} UTC and stopped before keyroll stored the key; "
                "without options.list keyroll cannot tell whether the provider issued one. "
                "Check the provider for a key created then, revoke it, and start a new "
                "rotation (add list = { run = … } so keyroll reconciles by itself)")
        keep = {k for k in (_key_id(ctx.old),) if k}
        done = []
        for orphan in sorted(intent.orphans(listed, keep)):
            outcome = self._revoke(ctx, opts, orphan, None, listed)
            done.append({"key_id": orphan, "outcome": outcome})
        return done

    def create(self, ctx: StepContext) -> SecretValue:
        opts = issued_options(ctx.cls)
        previous = _issuance.read(ctx)
        if previous is not None:
            ctx.evidence["reconciled"] = self._reconcile(ctx, opts, previous)
        listed = self._listed(ctx, opts)
        if opts.max_keys is not None and listed is not None and len(listed) >= opts.max_keys:
            raise RotationRefused(f"{ctx.ref}: the provider holds {len(listed)} keys (max_keys "
                                  f"{opts.max_keys}): revoke one not in use, then rotate again")
        intent = _issuance.begin(ctx, listed, previous)
        result = self._run(ctx, opts, opts.issue)
        if not result.ok:
            # the value is unknown here, so nothing can mask it exactly: credential-shaped
            # words are withheld (the provider's message, e.g. a quota, stays readable)
            said = f": {withhold_tokens(result.stderr)}" if result.stderr else ""
            raise TargetError(f"{ctx.ref}: {opts.issue.label} failed with exit code "
                              f"{result.code}{said}")
        value, key_id = parse_issued(result.stdout, value_field=opts.value_field,
                                     id_field=opts.id_field, what=f"{ctx.ref}: {opts.issue.label}")
        _issuance.issued(ctx, intent, key_id)
        old = ctx.value(ctx.old) if ctx.old is not None and not ctx.old.destroyed else None
        if old is not None and old == value:
            raise StepFailed(f"{ctx.ref}: {opts.issue.label} printed the current value again, "
                             "not a new key")
        ctx.state[KEY_ID] = key_id
        ctx.evidence["issued"] = {"key_id": key_id, "attempt": intent.attempts}
        return value

    def version_meta(self, ctx: StepContext) -> dict[str, Any]:
        key_id = ctx.state.get(KEY_ID)
        return {KEY_ID: key_id} if key_id else {}

    def test(self, ctx: StepContext) -> None:
        opts = issued_options(ctx.cls)
        new = ctx.value(ctx.new)
        if ctx.old is not None and not ctx.old.destroyed and ctx.value(ctx.old) == new:
            raise StepFailed(f"{ctx.ref}: the new value equals the old one")
        if opts.test is None:
            ctx.evidence["checked"] = {"differs_from_old": True, "provider_test": None}
            return
        self._checked(ctx, opts, opts.test, key_id=_key_id(ctx.new), stdin=new)
        ctx.evidence["checked"] = {"differs_from_old": True, "provider_test": "passed",
                                   "key_id": _key_id(ctx.new)}

    def overlap_done(self, ctx: StepContext, started: datetime) -> Verdict:
        by_time = super().overlap_done(ctx, started)
        opts = issued_options(ctx.cls)
        if not by_time.done or ctx.incident or opts.last_used is None \
                or not ctx.cls.overlap.until_unused or ctx.old is None:
            return by_time
        old_id = _key_id(ctx.old)
        what = f"key {old_id or f'version {ctx.old.number}'}"
        try:
            result = self._checked(ctx, opts, opts.last_used, key_id=old_id)
            last = parse_time(result.stdout, what=f"{ctx.ref}: {opts.last_used.label}")
        except TargetError as exc:
            if ctx.now >= started + ctx.cls.overlap.max:
                return Verdict(True, f"overlap max {ctx.cls.overlap.max} reached; retiring "
                               f"although the last use is unknown ({exc})")
            return Verdict(False, f"{exc}; unknown is not unused, the overlap goes on")
        return _issuance.usage_verdict(ctx, started, last, quiet=opts.quiet, what=what)

    def retire(self, ctx: StepContext) -> None:
        opts = issued_options(ctx.cls)
        if ctx.old is None:
            return
        value = None if ctx.old.destroyed else ctx.value(ctx.old)
        outcome = self._revoke(ctx, opts, _key_id(ctx.old), value, self._listed(ctx, opts))
        _issuance.forget(ctx)
        ctx.evidence["revoked"] = {"key_id": _key_id(ctx.old), "outcome": outcome}

    def rollback(self, ctx: StepContext) -> None:
        opts = issued_options(ctx.cls)
        intent = _issuance.read(ctx)
        listed = self._listed(ctx, opts)
        keep = {k for k in (_key_id(ctx.old),) if k}
        targets: dict[str, SecretValue | None] = {}
        if intent is not None:
            targets.update(dict.fromkeys(intent.orphans(listed, keep)))
        mine = [v for v in ctx.store.list_versions(ctx.ref)
                if v.meta.get("rotation") == ctx.rotation and not v.destroyed]
        revoked: list[Mapping[str, str | None]] = []
        for version in mine:
            key_id = _key_id(version)
            if key_id in keep:
                continue
            if key_id is None:
                revoked.append({"key_id": None, "outcome": self._revoke(
                    ctx, opts, None, ctx.value(version), listed)})
            else:
                targets[key_id] = ctx.value(version)
        for key_id, value in sorted(targets.items()):
            revoked.append({"key_id": key_id,
                            "outcome": self._revoke(ctx, opts, key_id, value, listed)})
        if intent is not None and listed is None and not intent.issued:
            ctx.evidence["unresolved"] = (
                f"`issue` ran at {intent.at:%Y-%m-%d %H:%M:%S} UTC and returned no key id; "
                "without options.list keyroll cannot tell whether the provider holds a key it "
                "issued then: check the provider and revoke it")
            ctx.emit(ctx.evidence["unresolved"])
        _issuance.forget(ctx)
        ctx.evidence["revoked_new"] = revoked

    def verify_current(self, ctx: StepContext, version: Version) -> dict[str, Any]:
        opts = issued_options(ctx.cls)
        if opts.test is None:
            return super().verify_current(ctx, version)
        try:
            self._checked(ctx, opts, opts.test, key_id=_key_id(version),
                          stdin=ctx.value(version))
        except KeyrollError as exc:
            raise StepFailed(str(exc)) from None
        return {"provider_test": "passed", "key_id": _key_id(version)}
