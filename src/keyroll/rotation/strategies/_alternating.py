"""What the strategies of two alternating accounts share (``postgres-role``, and
``redis-acl``, ``mysql-user``, ``rabbitmq-user`` in their alternating mode): which account a
version's password belongs to, and which account a step may change.

A version names its account in ``meta["role"]`` (plan's ``new_meta`` writes it); a version
without one (imported, adopted) belongs to the first account of the pair. The new version's
account must be the idle one: a step never touches the account apps log in with now.
"""

from __future__ import annotations

from collections.abc import Sequence

from keyroll.errors import RotationRefused, StepFailed
from keyroll.model import Version

__all__ = ["account_of", "old_and_new", "other"]


def other(pair: Sequence[str], account: str) -> str:
    """The account of ``pair`` that is not ``account``."""
    first, second = pair
    return second if account == first else first


def account_of(version: Version | None, pair: Sequence[str], ref: object, *,
               noun: str = "user", setting: str = "options.users", hint: str = "") -> str:
    """The account ``version``'s password belongs to (``meta["role"]``; else the first).

    Raises:
        RotationRefused: it names an account outside the pair (``hint`` says what to fix).
    """
    named = version.meta.get("role") if version is not None else None
    account = str(named) if named else pair[0]
    if account not in pair:
        raise RotationRefused(f"{ref}: the current password belongs to {noun} {account!r}, "
                              f"which is not one of {setting} {list(pair)!r}"
                              + (f": {hint}" if hint else ""))
    return account


def old_and_new(new_version: Version | None, pair: Sequence[str], old: str, ref: object, *,
                noun: str = "user") -> tuple[str, str]:
    """(old, new): ``old`` (the account of ``ctx.old``) and the account of the new version
    (``ctx.new``), which must be the idle one; a new version naming none gets the idle one.

    Raises:
        StepFailed: the new version names the active account or one outside the pair.
    """
    idle = other(pair, old)
    named = new_version.meta.get("role") if new_version is not None else None
    new = str(named) if named else idle
    if new == old or new not in pair:
        raise StepFailed(f"{ref}: the new version names {noun} {new!r}, not the idle "
                         f"{noun} {idle!r}; refusing to touch the active {noun}")
    return old, new
