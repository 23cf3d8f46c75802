"""Render an environment's secrets as the files deployments read: .env, JSON, Kubernetes Secret.

During an overlap the previous value is rendered too, as ``<VAR>_PREVIOUS`` (seed 004 §3.1:
``JWT_SECRET`` + ``JWT_SECRET_PREVIOUS``), so apps on the env-var key source keep verifying old
tokens; while a rotation stages a new key (between create and promote) it is rendered as
``<VAR>_NEXT``, accepted but not yet signing. Key kinds also get ``<VAR>_KID`` (and
``<VAR>_PREVIOUS_KID``, ``<VAR>_NEXT_KID``; the default ``suffix`` layout's names, a class's
``layout`` picks another row of `keyroll.layout`'s table): the version's random key id, so every
instance of an env-var app puts the same ``kid`` in its tokens and ciphertexts and none has to derive one.
Files are written atomically with mode 0600 (`keyroll.files.write_private`, re-exported).
An existing .env is updated in place (`write_dotenv`): only the variables keyroll owns in that
environment (`owned_vars`) change; every other line, comment and the order are kept.
"""

from __future__ import annotations

import base64
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from keyroll import dotenv
from keyroll.errors import NotFound, UsageError
from keyroll.escaping import dotenv_quote
from keyroll.files import check_target, write_private
from keyroll.inventory import Inventory, SecretClass
from keyroll.issued import KEY_ID, id_var_of
from keyroll.model import Kind, Label, SecretRef, SecretValue
from keyroll.stores.base import Store

__all__ = [
    "FORMATS",
    "EnvEntry",
    "check_k8s_name",
    "check_template",
    "collect",
    "owned_vars",
    "render",
    "split_dsn",
    "write_dotenv",
    "write_private",
]

FORMATS = ("dotenv", "json", "k8s")
_KEEP_PREVIOUS = {Kind.JWT_SIGNING, Kind.ENCRYPTION_KEY, Kind.WEBHOOK_HMAC}


@dataclass(frozen=True, slots=True)
class EnvEntry:
    """One env var and its value (wrapped), with the fingerprint for listings."""

    name: str
    value: SecretValue


def split_dsn(text: str) -> tuple[str | None, str] | None:
    """``(user, password)`` of a ``postgresql://user:pass@…`` / ``redis://…`` URL, else None.

    Both are percent-decoded: a URL spells ``$`` in a password as ``%24``, and the value
    stored is the password itself (`render` encodes it again when it builds ``app_dsn``).

    Raises:
        UsageError: a URL urllib cannot parse (its text is not repeated).
    """
    try:
        parts = urlsplit(text)
    except ValueError:
        # urllib quotes the bracketed part it chokes on, which may be the password
        raise UsageError("the value looks like a URL but is not a valid one (its text is not "
                         "shown: it may hold a password); percent-encode the password") from None
    if parts.scheme and parts.password is not None:
        user = unquote(parts.username) if parts.username is not None else None
        return user, unquote(parts.password)
    return None


_TEMPLATE_FIELDS = frozenset({"role", "password"})


def check_template(template: object) -> str | None:
    """What is wrong with an ``app_dsn``/``app_url`` template, or None if it is usable.

    A template is text with ``{password}`` and optionally ``{role}``, nothing else in braces.
    """
    if not isinstance(template, str):
        return "must be a string"
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:
        return "has unbalanced braces (write {{ and }} for literal ones)"
    unknown = sorted(fields - _TEMPLATE_FIELDS)
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}: use {{role}} and {{password}}"
    if "password" not in fields:
        return "must contain {password} (and usually {role})"
    return None


def _value_for(cls: SecretClass, store: Store, ref: SecretRef, number: int) -> SecretValue:
    value = store.read_value(ref, number)
    template = cls.options.get("app_dsn") or cls.options.get("app_url")
    if template and cls.kind in (Kind.POSTGRES_ROLE, Kind.REDIS_ACL, Kind.MYSQL_USER,
                                    Kind.RABBITMQ_USER):
        problem = check_template(template)
        if problem is not None:
            raise UsageError(f"class {cls.name!r}: options.app_dsn/app_url {problem}")
        version = store.get_version(ref, number)
        role = str(version.meta.get("role") or cls.options.get("user") or "")
        return SecretValue(
            str(template).format(role=quote(role, safe=""), password=quote(value.reveal(), safe=""))
        )
    return value


def collect(store: Store, inventory: Inventory, environment: str) -> list[EnvEntry]:
    """Every env var the environment's current (and previous) versions feed, sorted by name."""
    inventory.policy(environment)
    entries: list[EnvEntry] = []
    for cls, ref in inventory.secrets(environment):
        labels = store.get_labels(ref)
        if Label.CURRENT not in labels:
            continue
        value = _value_for(cls, store, ref, labels[Label.CURRENT])
        id_var = id_var_of(cls)
        if id_var is not None:  # a key pair: one version, its key id and its secret
            key_id = store.get_version(ref, labels[Label.CURRENT]).meta.get(KEY_ID)
            if key_id:
                entries.append(EnvEntry(id_var, SecretValue(str(key_id))))
            entries.extend(EnvEntry(var, value) for var in cls.env_vars if var != id_var)
            continue
        entries.extend(EnvEntry(var, value) for var in cls.env_vars)
        if cls.kind not in _KEEP_PREVIOUS:
            continue
        # every name below comes from the class's layout (`keyroll.layout`), the same table
        # `EnvKeySource.from_layout` reads with
        names = [cls.var_names(var) for var in cls.env_vars]
        kid = SecretValue(store.get_version(ref, labels[Label.CURRENT]).kid_hex)
        entries.extend(EnvEntry(n.current_kid, kid) for n in names)
        if Label.PENDING in labels:
            pending = _value_for(cls, store, ref, labels[Label.PENDING])
            new_kid = SecretValue(store.get_version(ref, labels[Label.PENDING]).kid_hex)
            entries.extend(EnvEntry(n.next, pending) for n in names)
            entries.extend(EnvEntry(n.next_kid, new_kid) for n in names)
        if Label.PREVIOUS in labels:
            try:
                previous = _value_for(cls, store, ref, labels[Label.PREVIOUS])
            except NotFound:
                continue
            old_kid = SecretValue(store.get_version(ref, labels[Label.PREVIOUS]).kid_hex)
            entries.extend(EnvEntry(n.previous, previous) for n in names)
            entries.extend(EnvEntry(n.previous_kid, old_kid) for n in names)
    return sorted(entries, key=lambda e: e.name)


_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check_k8s_name(name: str) -> str:
    """``name`` if it is a valid Kubernetes object name (RFC 1123 subdomain), else `UsageError`.

    The name is written into YAML as is: anything else (a newline, a colon) could inject keys
    such as ``namespace:`` into the manifest.
    """
    if len(name) <= 253 and _K8S_NAME.fullmatch(name):
        return name
    raise UsageError(
        f"{name[:80]!r} is not a Kubernetes Secret name: use lowercase letters, digits, '-' and "
        "'.', starting and ending with a letter or digit, at most 253 characters"
    )


def render(entries: list[EnvEntry], fmt: str, *, name: str = "app-secrets",
           namespace: str | None = None) -> str:
    """The file content. This string holds values: write it with `write_private` only.

    Raises:
        UsageError: an unknown format, or (k8s) a name or namespace that is not a Kubernetes
            name.
    """
    if fmt == "dotenv":
        return "".join(f"{e.name}={dotenv_quote(e.value.reveal())}\n" for e in entries)
    if fmt == "json":
        return json.dumps({e.name: e.value.reveal() for e in entries}, indent=2) + "\n"
    if fmt == "k8s":
        check_k8s_name(name)
        lines = ["apiVersion: v1", "kind: Secret", "metadata:", f"  name: {name}"]
        if namespace is not None:
            lines.append(f"  namespace: {check_k8s_name(namespace)}")
        lines += ["type: Opaque", "data:"]
        lines += [
            f"  {e.name}: {base64.b64encode(e.value.reveal_bytes()).decode()}" for e in entries
        ]
        return "\n".join(lines) + "\n"
    raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def owned_vars(inventory: Inventory, environment: str) -> set[str]:
    """Every variable keyroll may write for ``environment``: the classes' ``env_vars`` and, for
    key kinds, their ``_KID``, ``_NEXT``, ``_NEXT_KID``, ``_PREVIOUS`` and ``_PREVIOUS_KID``."""
    names: set[str] = set()
    for cls, _ref in inventory.secrets(environment):
        for var in cls.env_vars:
            names.add(var)
            if cls.kind in _KEEP_PREVIOUS:
                names.update(f"{var}{suffix}" for suffix in
                             ("_KID", "_NEXT", "_NEXT_KID", "_PREVIOUS", "_PREVIOUS_KID"))
    return names


def write_dotenv(path: Path, entries: list[EnvEntry], owned: set[str]) -> None:
    """Write ``entries`` into the .env at ``path``: a new file, or the existing one with only
    keyroll's variables (``owned``) updated in place. Atomic, mode 0600.

    Raises:
        UsageError: the target is not a regular file, or the existing file has a line that is
            not ``KEY=value`` (nothing is written: keyroll would not know what it replaces).
        OSError: the file cannot be read or written.
    """
    path = Path(path)
    check_target(path)
    try:
        existing = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = ""
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text; keyroll updates .env files only") from None
    values = {e.name: e.value.reveal() for e in entries}
    try:
        text = dotenv.merge(existing, values, owned | set(values))
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}; nothing was written") from None
    write_private(path, text)
