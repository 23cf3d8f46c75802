"""Where a running application's keys come from, and how they change under it.

A *key source* hands out immutable `KeySet` snapshots: one ``current`` key that signs or
encrypts, and every other retained key (``previous``, ``pending``) that only verifies or
decrypts. Key rings (`JWTKeyRing`, `FieldCipher`, `WebhookKeyRing`, `Redactor`) ask their
source for a snapshot on every call; the call is a clock read and an attribute load until the
refresh interval has passed. Then exactly one caller reloads (the others keep using the old
snapshot, never blocking), so a rotation reaches a running process within one interval, with no
restart.

Three sources:

- `StoreKeySource`: the keyroll store (``current`` signs, ``previous`` and ``pending`` verify).
  Accepting ``pending`` is what makes promotion safe across many processes: the engine creates
  the pending version, waits at least one refresh interval (every process now *accepts* it),
  and only then promotes it; a process that has not refreshed yet still verifies tokens signed
  by one that has.
- `EnvKeySource`: environment variables, in the seeds' conventions: ``JWT_SECRET`` +
  ``JWT_SECRET_PREVIOUS`` (seed 004), ``JWT_SECRET_KEY_CURRENT`` + ``JWT_SECRET_KEY_PREVIOUS``
  (seed 003), ``SECRET_KEY`` + ``OLD_SECRET_KEYS`` comma-separated (seed 001).
- `StaticKeySource`: fixed keys (tests, the engine's round-trip check of a pending key).

Key ids of env-var keys
-----------------------
Tokens carry a ``kid`` so verification picks the key in O(1); several app instances must agree
on it, and it must follow a value when the value moves from ``JWT_SECRET`` to
``JWT_SECRET_PREVIOUS``. A kid computed from the variable's *name or position* would not follow
the value (after a promotion the old token's kid would name the new key) so it is not used.

1. **Assigned (preferred)**: ``<VAR>_KID`` holds 8 hex digits (``JWT_SECRET_KID``,
   ``JWT_SECRET_PREVIOUS_KID``; for a list, ``OLD_SECRET_KEYS_KIDS`` holds comma-separated
   kids in the same order). These are the store's random kids; keyroll's deploy hooks write
   them beside the values. Nothing about the value can be learned from them.
2. **Derived (fallback, when no ``_KID`` is set)**: the first 4 bytes, big-endian, of
   ``HMAC-SHA256(key=value, msg=b"keyroll/env-kid/v1")``. This is a function of the value,
   which DESIGN.md avoids for stored keys, so it is used only where there is no other shared
   source of truth, and chosen so it discloses nothing new: it is a MAC *keyed by the secret
   itself*, so it lets an observer test a guessed value, exactly as the token's own signature
   (HMAC under the same key) or a ciphertext's GCM tag already does; it is domain-separated
   from the fingerprint (plain SHA-256) so it cannot be linked to audit records; 32 bits of
   output cannot be inverted. Pass ``derive_kids=False`` to require assigned kids instead.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NoReturn

from keyroll.errors import KeyrollError, NotFound, SecretRejected, UsageError
from keyroll.layout import DEFAULT_LAYOUT, Layout, check_layout, layout_mismatch
from keyroll.model import Label, SecretRef, SecretValue, format_kid
from keyroll.runtime.startup import check_value
from keyroll.runtime.usage import UsageCounter, merge_usage
from keyroll.stores.base import Store

__all__ = [
    "EnvKeySource",
    "Key",
    "KeySet",
    "KeySource",
    "LazyKeySource",
    "StaticKeySource",
    "StoreKeySource",
    "derive_env_kid",
]

logger = logging.getLogger("keyroll.runtime")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def derive_env_kid(value: SecretValue) -> int:
    """The kid of an env-var key that has no ``_KID`` variable (see the module docstring)."""
    mac = hmac.new(value.reveal_bytes(), b"keyroll/env-kid/v1", hashlib.sha256).digest()
    return int.from_bytes(mac[:4], "big")


@dataclass(frozen=True, slots=True, repr=False)
class Key:
    """One retained key: its id, its value and where it stands.

    Attributes:
        kid: 32-bit key id, travels in every token, ciphertext header and usage record.
        value: the secret (masked; `SecretValue.reveal` to use it).
        label: the key's role in its set: ``current`` signs/encrypts; ``previous`` and
            ``pending`` only verify/decrypt. (A store source with ``primary=pending`` gives
            the pending version the ``current`` role and the stored current ``previous``.)
        version: the store's version number, or None outside the store.
        origin: where it came from, for messages (``store:prod/jwt-access#3``, ``env:JWT_SECRET``).
        kid_assigned: True for a random kid (store, ``_KID`` var), False when derived.
        meta: the version's non-secret annotations (``alg`` pins a JWT algorithm).
    """

    kid: int
    value: SecretValue
    label: Label = Label.CURRENT
    version: int | None = None
    origin: str = "static"
    kid_assigned: bool = True
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @property
    def kid_hex(self) -> str:
        """The kid as it appears in JWT headers: 8 lowercase hex digits."""
        return format_kid(self.kid)

    def __repr__(self) -> str:
        return (
            f"Key(kid={self.kid_hex}, label={self.label.value}, origin={self.origin!r}, "
            f"fingerprint={self.value.fingerprint!r})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("Key refuses to be pickled: it would copy a secret out")


@dataclass(frozen=True, slots=True, repr=False)
class KeySet:
    """An immutable snapshot of a source's keys. Invariants are checked at construction.

    Attributes:
        current: the one key that signs or encrypts.
        keys: every retained key, ``current`` first; all verify or decrypt.
        generation: bumped by the source whenever the set changes (rings rebuild on it).
        by_kid: ``keys`` indexed by kid.
    """

    current: Key
    keys: tuple[Key, ...]
    generation: int = 0
    by_kid: Mapping[int, Key] = field(init=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise UsageError("a key set needs at least its current key; none was found")
        if self.keys[0] is not self.current:
            raise UsageError("a key set lists its current key first")
        currents = [k for k in self.keys if k.label is Label.CURRENT]
        if len(currents) != 1:
            raise UsageError(
                f"a key set needs exactly one current key, found {len(currents)}: "
                f"{', '.join(k.origin for k in currents) or 'none'}"
            )
        by_kid: dict[int, Key] = {}
        for key in self.keys:
            other = by_kid.get(key.kid)
            if other is not None:
                raise UsageError(
                    f"two keys share kid {key.kid_hex} ({other.origin} and {key.origin}): "
                    "every key needs its own id; set distinct *_KID variables"
                )
            by_kid[key.kid] = key
        object.__setattr__(self, "by_kid", MappingProxyType(by_kid))

    def same_keys(self, other: KeySet) -> bool:
        """True if both hold the same kids, labels and values (generation aside)."""
        return [(k.kid, k.label, k.value.fingerprint) for k in self.keys] == [
            (k.kid, k.label, k.value.fingerprint) for k in other.keys
        ]

    def __repr__(self) -> str:
        kids = ", ".join(f"{k.kid_hex}:{k.label.value}" for k in self.keys)
        return f"KeySet(generation={self.generation}, keys=[{kids}])"

    def __reduce__(self) -> NoReturn:
        raise TypeError("KeySet refuses to be pickled: it would copy secrets out")


def _order(keys: Iterable[Key]) -> tuple[Key, ...]:
    """Current first, then previous, then pending (the order rings try legacy fallbacks in)."""
    rank = {Label.CURRENT: 0, Label.PREVIOUS: 1, Label.PENDING: 2}
    return tuple(sorted(keys, key=lambda k: rank[k.label]))


def _keyset(name: str, keys: tuple[Key, ...], generation: int) -> KeySet:
    if not keys:
        raise UsageError(f"{name}: no key to use")
    return KeySet(keys[0], keys, generation)


class KeySource(ABC):
    """Hands out `KeySet` snapshots, reloading them every ``refresh_interval`` seconds.

    Thread-safe: snapshots are immutable and replaced whole; one thread reloads at a time and
    the others keep the previous snapshot meanwhile. A failed reload (store down) keeps the
    last good snapshot, logs the error (never a value) and retries after the next interval.

    Args:
        name: what the source is, for messages and usage (no value in it).
        refresh_interval: seconds between reloads; 0 reloads on every call.
        clock: monotonic seconds (``time.monotonic``); pass a fake to drive refreshes in tests.
        usage: counters that rings record into (a fresh `UsageCounter` if None).
    """

    #: True for a source that loads nothing until first used (`LazyKeySource`): rings built on
    #: it skip their construction-time check of the keys.
    lazy: bool = False

    def __init__(
        self,
        *,
        name: str,
        refresh_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        usage: UsageCounter | None = None,
    ) -> None:
        if refresh_interval < 0:
            raise UsageError("refresh_interval must be >= 0 seconds")
        self.name = name
        self.refresh_interval = refresh_interval
        self.usage = usage if usage is not None else UsageCounter()
        self._clock = clock
        self._lock = threading.Lock()
        self._keyset: KeySet | None = None
        self._next_refresh = 0.0

    @abstractmethod
    def _load(self) -> Sequence[Key]:
        """Read the keys afresh. Raise on failure; the caller keeps the old snapshot."""

    def _after_refresh(self) -> None:  # noqa: B027  (optional hook, e.g. usage reporting)
        """Called after every reload attempt, successful or not."""

    def refresh_for_unknown_kid(self, kid_hex: str) -> KeySet | None:
        """A ring met a token whose kid this source's snapshot does not hold.

        Sources that learn keys from elsewhere on demand (`JWKSKeySource`) reload, at most once
        per their own interval, and return the new snapshot; the others return None (a store
        source already holds every key that may sign). Never raises.
        """
        return None

    def snapshot(self) -> KeySet:
        """The current keys, reloaded first if the refresh interval has passed.

        Raises:
            KeyrollError: the very first load failed (later failures keep the old snapshot).
        """
        keyset = self._keyset
        if keyset is None:
            return self.refresh()
        if self._clock() >= self._next_refresh and self._lock.acquire(blocking=False):
            try:
                keyset = self._reload(keyset)
            finally:
                self._lock.release()
        return keyset

    def refresh(self) -> KeySet:
        """Reload now (blocking) and return the new snapshot.

        Raises:
            KeyrollError: loading failed and there is no earlier snapshot to keep.
        """
        with self._lock:
            return self._reload(self._keyset)

    def _reload(self, old: KeySet | None) -> KeySet:
        self._next_refresh = self._clock() + self.refresh_interval
        try:
            keys = _order(self._load())
            fresh = _keyset(self.name, keys, old.generation + 1 if old else 1)
        except Exception as exc:
            if old is None:
                raise
            logger.warning(
                "keyroll: reloading keys of %s failed (%s: %s); still using generation %d",
                self.name,
                type(exc).__name__,
                exc if isinstance(exc, KeyrollError) else "message withheld: it may quote a value",
                old.generation,
            )
            return old
        finally:
            self._after_refresh()
        if old is not None and old.same_keys(fresh):
            return old
        self._keyset = fresh
        return fresh

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self._keyset!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} refuses to be pickled: it holds secrets")


class LazyKeySource(KeySource):
    """A source built on first use: ``LazyKeySource(EnvKeySource.jwt_secret)``.

    A ring on it (``JWTKeyRing(LazyKeySource(...))``) can be created at import time in a module
    that scripts, migrations and tests also import: nothing reads keys, and nothing fails for
    lack of them, until a token is signed or verified. Then the factory runs once (thread-safe)
    and every call goes to the source it returned: its refresh, its usage counters.

    Args:
        factory: builds the real source; its errors (unset variable, store down) surface on the
            first use and the factory runs again on the next.
        name: for messages until the source is built.
    """

    lazy = True

    def __init__(self, factory: Callable[[], KeySource], *, name: str = "lazy key source") -> None:
        super().__init__(name=name, refresh_interval=float("inf"))
        self._factory = factory
        self._inner: KeySource | None = None
        self._build_lock = threading.Lock()

    @property
    def inner(self) -> KeySource:
        """The real source, built now if it was not yet."""
        inner = self._inner
        if inner is None:
            with self._build_lock:
                if self._inner is None:
                    self._inner = self._factory()
                    self.name = self._inner.name
                inner = self._inner
        return inner

    @property  # read from the real source once it exists
    def usage(self) -> UsageCounter:
        return self.inner.usage

    @usage.setter
    def usage(self, value: UsageCounter) -> None:
        """`KeySource.__init__` assigns one; the real source's counters are used instead."""

    def snapshot(self) -> KeySet:
        return self.inner.snapshot()

    def refresh(self) -> KeySet:
        return self.inner.refresh()

    def refresh_for_unknown_kid(self, kid_hex: str) -> KeySet | None:
        return self.inner.refresh_for_unknown_kid(kid_hex)

    def _load(self) -> Sequence[Key]:
        return self.inner.snapshot().keys

    def __repr__(self) -> str:
        return f"LazyKeySource({self._inner!r})" if self._inner else "LazyKeySource(not built)"


class StaticKeySource(KeySource):
    """Fixed keys: for tests, and for checking a pending key before it is promoted.

    Args:
        keys: exactly one with label ``current``; the others verify only.
        name: for messages.
    """

    def __init__(self, keys: Sequence[Key], *, name: str = "static keys") -> None:
        super().__init__(name=name, refresh_interval=float("inf"))
        self._keys = tuple(keys)
        self.refresh()

    @classmethod
    def of(cls, current: SecretValue, *previous: SecretValue) -> StaticKeySource:
        """Keys from bare values, with derived kids (`derive_env_kid`)."""
        keys = [Key(derive_env_kid(current), current, Label.CURRENT, kid_assigned=False)]
        keys += [
            Key(derive_env_kid(v), v, Label.PREVIOUS, origin=f"static#{i}", kid_assigned=False)
            for i, v in enumerate(previous, 1)
        ]
        return cls(keys)

    def _load(self) -> Sequence[Key]:
        return self._keys


def _role(label: Label, primary: Label) -> Label:
    """A store label's role in the key set: the primary signs; a non-primary ``current`` (the
    engine testing a pending key) verifies, like the ``previous`` it would become."""
    if label is primary:
        return Label.CURRENT
    return Label.PREVIOUS if label is Label.CURRENT else label


class StoreKeySource(KeySource):
    """Keys of one secret in the keyroll store, reloaded every ``refresh_interval`` seconds.

    Reading only the labels each interval; values are read once per version and cached
    (a version's value never changes; destroyed versions drop out).

    Args:
        store: any `Store` backend (read side only, plus `Store.put_meta` for usage).
        ref: the secret (environment, class name).
        refresh_interval: seconds between reloads (default 5).
        primary: the label that signs/encrypts (the engine uses ``pending`` to test one).
        accept: labels that verify/decrypt as well.
        report_usage: merge this process's usage counters into the store on every reload
            (see `keyroll.runtime.usage`), for usage-aware retirement.
        clock: monotonic seconds, for the refresh interval.
        wallclock: epoch seconds, for usage timestamps.

    Raises:
        NotFound: the secret has no version under ``primary`` (at construction).
    """

    def __init__(
        self,
        store: Store,
        ref: SecretRef,
        *,
        refresh_interval: float = 5.0,
        primary: Label = Label.CURRENT,
        accept: Sequence[Label] = (Label.PREVIOUS, Label.PENDING),
        report_usage: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            name=str(ref),
            refresh_interval=refresh_interval,
            clock=clock,
            usage=UsageCounter(wallclock),
        )
        self.store = store
        self.ref = ref
        self.primary = primary
        self.accept = tuple(label for label in accept if label is not primary)
        self.report_usage = report_usage
        self._values: dict[int, SecretValue] = {}
        self._last_labels: dict[Label, int] | None = None
        self._last_keys: tuple[Key, ...] = ()
        self._last_extra: tuple[int, ...] = ()
        self.refresh()

    def _load(self) -> Sequence[Key]:
        labels = self.store.get_labels(self.ref)
        extra = tuple(self.store.decrypt_only_versions(self.ref))
        if labels == self._last_labels and extra == self._last_extra:
            return self._last_keys
        if self.primary not in labels:
            raise NotFound(f"{self.ref} has no {self.primary.value} version to use")
        versions = {v.number: v for v in self.store.list_versions(self.ref)}
        keys: list[Key] = []
        # decrypt-only versions (keys restored from escrow) are accepted, never primary
        labelled = set(labels.values())
        slots: list[tuple[Label, int | None]] = [(label, labels.get(label))
                                                 for label in (self.primary, *self.accept)]
        slots += [(Label.PREVIOUS, n) for n in extra if n not in labelled]
        for label, number in slots:
            version = versions.get(number) if number is not None else None
            if version is None or version.destroyed:
                continue
            value = self._values.get(version.number)
            if value is None:
                try:
                    value = self.store.read_value(self.ref, version.number)
                except NotFound:
                    continue
                self._values[version.number] = value
            keys.append(
                Key(
                    kid=version.kid,
                    value=value,
                    label=_role(label, self.primary),
                    version=version.number,
                    origin=f"store:{self.ref}#{version.number}",
                    meta=MappingProxyType(dict(version.meta)),
                )
            )
        if not keys or keys[0].version != labels[self.primary]:
            raise NotFound(f"{self.ref}: the {self.primary.value} version cannot be read")
        # forget cached values of versions no label points at any more
        live = {k.version for k in keys}
        self._values = {n: v for n, v in self._values.items() if n in live}
        self._last_labels, self._last_keys = dict(labels), tuple(keys)
        self._last_extra = extra
        return keys

    def _after_refresh(self) -> None:
        if not self.report_usage:
            return
        delta = self.usage.take_unreported()
        try:
            lost = merge_usage(self.store, self.ref, delta)
        except Exception as exc:  # noqa: BLE001  (any store failure: keep serving, retry later)
            self.usage.give_back(delta)
            logger.warning(
                "keyroll: reporting usage of %s failed (%s); will retry",
                self.ref,
                type(exc).__name__,
            )
            return
        self.usage.give_back(lost)

    def report_now(self) -> None:
        """Merge unreported usage into the store now (e.g. at shutdown)."""
        with self._lock:
            if self.report_usage:
                self._after_refresh()


class EnvKeySource(KeySource):
    """Keys from environment variables, for apps that do not run the keyroll store.

    A process's environment is fixed when it starts: a rotated key reaches an app on env vars
    only when the app is restarted (keyroll's deploy hooks restart it at apply, promote and
    retire). The source re-reads ``environ`` every interval only for tests and apps that change
    ``os.environ`` themselves. To pick up new keys without a restart, read mounted files with
    `FileKeySource` (same variables) or the store with `StoreKeySource`.

    Args:
        current_var: the variable holding the signing/encryption key (required).
        previous_var: the variable holding the key(s) still accepted (optional, may be unset).
        next_var: the variable holding the key about to become current (optional, may be
            unset): accepted, never used to sign. keyroll's deploy hooks stage it before the
            promote deploy, so instances not yet restarted already accept what restarted ones
            sign (``JWT_SECRET_NEXT``).
        separator: if given, ``previous_var`` holds a list split on it (seed 001's
            ``OLD_SECRET_KEYS`` uses ``,``); blanks and duplicates of other keys are dropped.
        environ: the environment (default: ``os.environ``, re-read on every refresh; it
            changes only if the process itself changes it).
        derive_kids: allow derived kids when no ``_KID`` variable is set (module docstring).
        min_length: values shorter than this are refused (seed 003: 32 for JWT keys).
        refresh_interval: seconds between re-reads of the environment.
        clock: monotonic seconds.
        layout: the `keyroll.layout` these names follow (set by `from_layout`): then the
            environment is checked for another layout's spellings at every load.

    Raises:
        SecretRejected: the current variable is unset, or a value fails `startup.check_value`.
        UsageError: a ``_KID`` variable is malformed, or ``derive_kids=False`` and one is unset,
            or the environment was written for another layout than ``layout``.
    """

    def __init__(
        self,
        current_var: str,
        previous_var: str | None = None,
        *,
        next_var: str | None = None,
        separator: str | None = None,
        environ: Mapping[str, str] | None = None,
        derive_kids: bool = True,
        min_length: int = 32,
        refresh_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        layout: Layout | None = None,
    ) -> None:
        name = f"env:{current_var}" + (f"+{previous_var}" if previous_var else "")
        super().__init__(name=name, refresh_interval=refresh_interval, clock=clock)
        self.current_var = current_var
        self.previous_var = previous_var
        self.next_var = next_var
        self.separator = separator
        self._environ = environ
        self.derive_kids = derive_kids
        self.min_length = min_length
        self._last_keys: tuple[Key, ...] = ()
        self.layout = layout
        self.refresh()

    #: the prefix of every key's ``origin`` (``env:JWT_SECRET``; ``file:`` for files)
    _origin = "env"

    @classmethod
    def from_layout(cls, var: str, layout: str = DEFAULT_LAYOUT, **kwargs: Any) -> EnvKeySource:
        """The key whose current value is in ``var``, with the other names from `keyroll.layout`
        (the table keyroll's exports and deploy hooks write with): pass the class's
        ``layout`` from keyroll.toml.

        Raises:
            UsageError: an unknown layout, a name that does not fit it, or (at the first load)
                an environment written for another layout.
        """
        try:
            chosen = check_layout(layout)
            names = chosen.names(var)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        kwargs.setdefault("next_var", names.next)
        return cls(names.current, names.previous, separator=names.separator, layout=chosen,
                   **kwargs)

    @classmethod
    def jwt_secret(cls, name: str = "JWT_SECRET", **kwargs: Any) -> EnvKeySource:
        """Seed 004: ``JWT_SECRET`` + ``JWT_SECRET_PREVIOUS`` (also ``JWT_REFRESH_SECRET``), and
        ``JWT_SECRET_NEXT`` while keyroll stages a new key (layout ``seed-004``)."""
        return cls.from_layout(name, "seed-004", **kwargs)

    @classmethod
    def jwt_secret_key(cls, stem: str = "JWT_SECRET_KEY", **kwargs: Any) -> EnvKeySource:
        """Seed 003: ``JWT_SECRET_KEY_CURRENT`` + ``JWT_SECRET_KEY_PREVIOUS`` (+ ``_NEXT``),
        layout ``seed-003``."""
        return cls.from_layout(f"{stem}_CURRENT", "seed-003", **kwargs)

    @classmethod
    def secret_key(
        cls, name: str = "SECRET_KEY", old: str | None = None, **kwargs: Any
    ) -> EnvKeySource:
        """Seed 001: ``SECRET_KEY`` + ``OLD_SECRET_KEYS`` (comma-separated), layout
        ``seed-001``; ``old`` names another list variable (then no layout check)."""
        if old is None or old == f"OLD_{name}S":
            return cls.from_layout(name, "seed-001", **kwargs)
        return cls(name, old, separator=",", **kwargs)

    def _kid(self, var: str, kid_text: str | None, value: SecretValue) -> tuple[int, bool]:
        if kid_text:
            text = kid_text.strip().lower()
            if len(text) != 8 or any(c not in "0123456789abcdef" for c in text):
                raise UsageError(f"{var}'s kid must be 8 hex digits (as `keyroll status` shows)")
            return int(text, 16), True
        if not self.derive_kids:
            raise UsageError(f"{var} has no kid: set {var}_KID to its 8-hex-digit kid, or allow derived kids")
        return derive_env_kid(value), False

    def variable_names(self) -> list[str]:
        """Every variable this source reads (values and kids), in the conventions above."""
        names = [self.current_var, f"{self.current_var}_KID"]
        if self.previous_var:
            names += [self.previous_var,
                      f"{self.previous_var}_KIDS" if self.separator else f"{self.previous_var}_KID"]
        if self.next_var:
            names += [self.next_var, f"{self.next_var}_KID"]
        return names

    def _variables(self) -> Mapping[str, str] | None:
        """The variables to read keys from, or None to keep the keys loaded last (a source
        whose input is still changing). `FileKeySource` reads them from files."""
        return self._environ if self._environ is not None else os.environ

    def _load(self) -> Sequence[Key]:
        env = self._variables()
        if env is None:
            return self._last_keys
        self._last_keys = tuple(self._keys_from(env))
        return self._last_keys

    def _keys_from(self, env: Mapping[str, str]) -> list[Key]:
        """The keys in ``env`` under this source's variable names, validated.

        Raises:
            SecretRejected: the current variable is unset, or a value fails `check_value`.
            UsageError: a malformed ``_KID``, or a missing one with ``derive_kids=False``.
        """
        if self.layout is not None:
            mismatch = layout_mismatch(self.layout, self.current_var, env)
            if mismatch is not None:
                raise UsageError(mismatch)
        raw = env.get(self.current_var, "")
        if not raw:
            raise SecretRejected(f"{self.current_var} is not set: the application needs its key")
        entries: list[tuple[str, str, str | None, Label]] = [
            (self.current_var, raw, env.get(f"{self.current_var}_KID"), Label.CURRENT)
        ]
        if self.previous_var:
            prev = env.get(self.previous_var, "")
            if self.separator is None:
                if prev.strip():
                    prev_kid = env.get(f"{self.previous_var}_KID")
                    entries.append((self.previous_var, prev, prev_kid, Label.PREVIOUS))
            else:
                values = [v.strip() for v in prev.split(self.separator)]
                kids = [k.strip() for k in env.get(f"{self.previous_var}_KIDS", "").split(",")]
                for i, v in enumerate(values):
                    if v:
                        kid_text = kids[i] if i < len(kids) else None
                        var = f"{self.previous_var}[{i}]"
                        entries.append((var, v, kid_text, Label.PREVIOUS))
        if self.next_var and env.get(self.next_var, "").strip():
            entries.append((self.next_var, env[self.next_var], env.get(f"{self.next_var}_KID"),
                            Label.PENDING))
        keys: list[Key] = []
        seen: set[str] = set()
        for var, text, kid_text, label in entries:
            value = SecretValue(text)
            if value.fingerprint in seen:
                continue  # seed 001 step 1 lists the current key in OLD_SECRET_KEYS too
            seen.add(value.fingerprint)
            problems = check_value(value, min_length=self.min_length)
            if problems:
                raise SecretRejected(f"{var} {problems[0]}")
            kid, assigned = self._kid(var, kid_text, value)
            keys.append(Key(kid, value, label, origin=f"{self._origin}:{var}",
                            kid_assigned=assigned))
        return keys
