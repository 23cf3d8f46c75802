"""``SHOW GRANTS`` lines: compared between two accounts, and rewritten from one to the other.

``SHOW GRANTS`` prints every privilege of an account as the statement that recreates it:
global (``ON *.*``), database (``ON `shop`.*``), table, column (``UPDATE (`total`)``), routine
(``ON PROCEDURE `shop`.`p```), proxy, role grants (``GRANT `app_role` TO …``) and, on MariaDB,
the default role (``SET DEFAULT ROLE `r` FOR …``) and the TLS requirement and limits. Cloning an
account from these lines is what ``pt-show-grants`` and DBAs do by hand; keyroll does it
mechanically: the grantee (printed exactly as `Account.quoted`) is replaced, and MariaDB's
``IDENTIFIED BY PASSWORD '*…'`` (a password hash) is cut out first, so no hash is ever
rewritten, compared, logged or kept as evidence.

Two accounts hold the same privileges when their *normalised* lines (grantee replaced by
``<user>``, hash cut out) are the same set: `diff` says which lines differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from keyroll.errors import TargetError
from keyroll.targets.mysql._driver import Account

__all__ = ["PLACEHOLDER", "GrantDiff", "diff", "normalise", "retarget", "revoke_roles",
           "strip_identified"]

PLACEHOLDER = "<user>"
_QUOTED = r"'(?:[^'\\]|\\.|'')*'"
#: ``IDENTIFIED BY PASSWORD '…'`` / ``IDENTIFIED VIA plugin USING '…' [OR …]`` /
#: ``IDENTIFIED WITH plugin [AS '…']``, up to the next clause or the end of the line.
_IDENTIFIED = re.compile(
    rf" IDENTIFIED (?:BY PASSWORD {_QUOTED}|BY {_QUOTED}|(?:VIA|WITH) (?:{_QUOTED}|[^'])*?)"
    r"(?= REQUIRE | WITH | PASSWORD | ACCOUNT |$)"
)


def strip_identified(line: str) -> str:
    """``line`` without its ``IDENTIFIED …`` clause (a password hash on MariaDB)."""
    return _IDENTIFIED.sub("", line)


def _grantee_at(line: str, account: Account) -> int:
    """Where the grantee starts in ``line`` (after ``TO`` or, for a default role, ``FOR``)."""
    best = -1
    for word in (" TO ", " FOR "):
        needle = word + account.quoted
        at = line.rfind(needle)
        while at != -1:
            end = at + len(needle)
            if end == len(line) or line[end] == " ":
                best = max(best, at + len(word))
                break
            at = line.rfind(needle, 0, at)
    return best


def _replace_grantee(line: str, account: Account, by: str) -> str:
    at = _grantee_at(line, account)
    if at < 0:
        raise TargetError(f"MySQL SHOW GRANTS: a line does not name {account} as grantee "
                          f"({strip_identified(line)[:120]!r}); keyroll cannot mirror it")
    return line[:at] + by + line[at + len(account.quoted):]


def normalise(line: str, account: Account) -> str:
    """A grant line of ``account`` in a form another account's can be compared with."""
    return _replace_grantee(strip_identified(line.strip()), account, PLACEHOLDER)


def retarget(line: str, source: Account, target: Account) -> str:
    """``source``'s grant line as the statement that gives ``target`` the same privilege."""
    return _replace_grantee(strip_identified(line.strip()), source, target.quoted)


_ROLE_GRANT = re.compile(r"^GRANT (?P<roles>.+) TO (?P<rest>.+)$")


def revoke_roles(line: str, account: Account) -> str | None:
    """For a role grant (``GRANT `r` TO acct [WITH ADMIN OPTION]``), the ``REVOKE`` that
    undoes it; None for any other line (``REVOKE ALL PRIVILEGES`` covers those)."""
    text = strip_identified(line.strip())
    if " ON " in text or not text.startswith("GRANT "):
        return None
    match = _ROLE_GRANT.match(text.removesuffix(" WITH ADMIN OPTION"))
    if match is None or _grantee_at(text, account) < 0:
        return None
    return f"REVOKE {match['roles']} FROM {account.quoted}"


@dataclass(frozen=True, slots=True)
class GrantDiff:
    """How two accounts' normalised grant lines differ.

    Attributes:
        missing: lines the reference account has and the other lacks.
        extra: lines the other account has and the reference lacks.
    """

    missing: tuple[str, ...]
    extra: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra)

    def describe(self, limit: int = 5) -> str:
        parts = []
        if self.missing:
            parts.append("missing: " + "; ".join(self.missing[:limit]))
        if self.extra:
            parts.append("extra: " + "; ".join(self.extra[:limit]))
        return " | ".join(parts) or "identical"


def diff(reference: Iterable[str], other: Iterable[str]) -> GrantDiff:
    """Compare two sets of normalised lines."""
    want, have = set(reference), set(other)
    return GrantDiff(tuple(sorted(want - have)), tuple(sorted(have - want)))
