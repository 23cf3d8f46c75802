"""Refuse to start with a missing, short, placeholder or reused secret (seed 003, ADR-003).

``require("JWT_SECRET")`` at import time of the app's config turns a misconfigured deployment
into an immediate, clear failure instead of a weak key in production. Every message names the
variable and the broken rule, never the value (it may be printed by a crash reporter).

Rules (`check_value`):

- set and non-empty;
- at least ``min_length`` characters (32 for JWT keys, seed 003 and 004 §2);
- not a known placeholder (``change-in-production``, ``changeme``, ``secret`` …): equal to one
  (case-insensitive), or containing one of 6+ characters;
- not low-entropy: at least ``min_entropy_bits`` estimated from the value's own character
  distribution (repeated or patterned strings fail; random ``openssl rand`` output passes);
- with a store and ``environment="prod"``: not the value of the same class in another
  environment (a dev/ci key copied into prod).

The pydantic-settings integration lives in `keyroll.runtime.settings` (it imports pydantic).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping

from keyroll.errors import SecretRejected
from keyroll.model import SecretRef, SecretValue
from keyroll.stores.base import Store

__all__ = ["PLACEHOLDERS", "check_value", "require", "require_all"]

#: Values (and, for 6+ characters, fragments) that mark an unset secret.
PLACEHOLDERS: tuple[str, ...] = (
    "change-in-production",
    "change_in_production",
    "changeinproduction",
    "change-me",
    "change_me",
    "changeme",
    "replace-me",
    "replaceme",
    "your-secret-key",
    "your_secret_key",
    "your-secret",
    "yoursecret",
    "your_generated_key_here",
    "placeholder",
    "example",
    "insecure",
    "password",
    "secret",
    "default",
    "dummy",
    "test",
    "todo",
    "xxx",
)


def _period(text: str) -> int:
    """Length of the shortest unit ``text`` repeats (``len(text)`` if it repeats none)."""
    n = len(text)
    for p in range(1, n // 2 + 1):
        if text[p:] == text[:-p]:
            return p
    return n


def _entropy_bits(text: str) -> float:
    """Empirical Shannon entropy of the characters of ``text``'s repeating unit, times its
    length: a repeated pattern counts once (``"abcd" * 16`` is worth 8 bits, not 128)."""
    unit = text[: _period(text)]
    counts = Counter(unit)
    n = len(unit)
    per_char = -sum(c / n * math.log2(c / n) for c in counts.values())
    return per_char * n


def check_value(value: SecretValue, *, min_length: int = 32, min_entropy_bits: float = 96.0) -> list[str]:
    """The rules ``value`` breaks, as phrases to follow a variable name; ``[]`` if none.

    Args:
        value: the candidate secret.
        min_length: minimum number of characters.
        min_entropy_bits: minimum estimated entropy (0 disables the check).
    """
    text = value.reveal()
    if not text:
        return ["is not set"]
    problems: list[str] = []
    lowered = text.lower()
    for word in PLACEHOLDERS:
        if lowered == word or (len(word) >= 6 and word in lowered):
            problems.append(
                "holds a placeholder value: generate a real key with "
                "`openssl rand -base64 48` or `keyroll generate`"
            )
            break
    if len(text) < min_length:
        problems.append(f"is shorter than {min_length} characters: generate a longer key")
    if min_entropy_bits and _entropy_bits(text) < min_entropy_bits:
        problems.append(
            f"is low-entropy (under {min_entropy_bits:.0f} bits estimated): generate it with "
            "`openssl rand -base64 48`, not by hand"
        )
    return problems


def _reused_from(store: Store, secret: str, environment: str, value: SecretValue) -> str | None:
    mine = value.fingerprint
    for ref in store.list_secrets():
        if ref.name != secret or ref.environment == environment:
            continue
        for version in store.list_versions(ref):
            if version.fingerprint == mine:
                return f"{ref}#{version.number}"
    return None


def require(
    name: str,
    *,
    min_length: int = 32,
    min_entropy_bits: float = 96.0,
    environ: Mapping[str, str] | None = None,
    store: Store | None = None,
    secret: str | None = None,
    environment: str | None = None,
) -> SecretValue:
    """Read and validate one secret from the environment, or refuse to start.

    Args:
        name: the environment variable.
        min_length: minimum length in characters (32 for JWT keys).
        min_entropy_bits: minimum estimated entropy; 0 disables the check.
        environ: the environment (default ``os.environ``).
        store: with ``secret`` and ``environment="prod"``: refuse a value that the store holds
            for the same class in another environment.
        secret: the inventory class name the variable feeds.
        environment: the environment this process runs in.

    Returns:
        The value, wrapped so it does not leak by accident.

    Raises:
        SecretRejected: the first broken rule, naming ``name`` and the rule.
    """
    env = environ if environ is not None else os.environ
    value = SecretValue(env.get(name, ""))
    problems = check_value(value, min_length=min_length, min_entropy_bits=min_entropy_bits)
    if problems:
        raise SecretRejected(f"{name} {problems[0]}")
    if store is not None and secret is not None and environment == "prod":
        SecretRef(environment, secret)  # validates the names before they reach a message
        origin = _reused_from(store, secret, environment, value)
        if origin is not None:
            raise SecretRejected(
                f"{name} holds the value of {origin}: prod needs its own key; "
                f"rotate it with `keyroll rotate {secret} --env prod`"
            )
    return value


def require_all(
    names: Mapping[str, int], *, environ: Mapping[str, str] | None = None
) -> dict[str, SecretValue]:
    """Validate several secrets at once and report every failure in one error.

    Args:
        names: variable name → minimum length.
        environ: the environment (default ``os.environ``).

    Raises:
        SecretRejected: one line per variable that breaks a rule.
    """
    env = environ if environ is not None else os.environ
    values: dict[str, SecretValue] = {}
    lines: list[str] = []
    for name, min_length in names.items():
        value = SecretValue(env.get(name, ""))
        problems = check_value(value, min_length=min_length)
        if problems:
            lines.append(f"{name} {problems[0]}")
        values[name] = value
    if lines:
        raise SecretRejected("refusing to start:\n  " + "\n  ".join(lines))
    return values
