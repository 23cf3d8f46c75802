"""Cut passwords and known secrets out of a driver's or library's text, before it is shown.

One place for what used to be two scrubbers (the targets' `target_error` and the re-encryption
adapters' `scrub`), and the DSN pattern the redactor masks: a URL's password (``scheme://user:
password@host``, the password running to the *last* ``@`` of the word, so an unencoded ``@``,
``/``, ``[`` or ``]`` in it is cut too) and a conninfo ``password=…``. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["DSN_PASSWORD", "REDACTED", "cut_secrets", "dsn_secret_parts", "scrub", "scrub_passwords"]

REDACTED = "[redacted]"

#: A URL's password: group 1 is ``user:``, group 2 the password (up to the word's last ``@``).
#: Anchored on ``://`` by a look-behind so a long word is not rescanned from every letter.
DSN_PASSWORD = re.compile(r"(?<=://)([^:/@\s\"'<>]*:)([^\s\"'<>]+)(?=@)")
_CONNINFO_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_PASSWORD_PIECES = re.compile(r"[^\[\]@/:?#'\"\s]{4,}")


def cut_secrets(text: str, secrets: Iterable[str]) -> str:
    """Replace each secret in ``text`` by ``[redacted]``: as a substring when it has 4
    characters or more, as a whole word when shorter (a 3-letter value cut everywhere would
    garble the text and say which letters it is)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", REDACTED, text)
    return text


def scrub_passwords(text: str) -> str:
    """``text`` with every URL password and conninfo ``password=`` value replaced."""
    if "://" in text:
        text = DSN_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)
    if "assword" in text or "ASSWORD" in text:
        text = _CONNINFO_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def dsn_secret_parts(dsn: str) -> list[str]:
    """The password of a URL-shaped ``dsn`` and its pieces between brackets, ``@``, ``/``…

    urllib and libpq quote the part of a URL they choke on (``'secret' does not appear to be
    an IPv4 or IPv6 address`` for ``postgresql://u:pw@[secret]@host``): that part may be a
    piece of the password, so a scrubber that knows the DSN cuts every piece too.
    """
    parts: list[str] = []
    for match in DSN_PASSWORD.finditer(dsn):
        password = match.group(2)
        parts.append(password)
        parts += _PASSWORD_PIECES.findall(password)
    for match in _CONNINFO_PASSWORD.finditer(dsn):
        parts.append(match.group(2).strip("'"))
    return parts


def scrub(message: str, secrets: Iterable[str] = (), *, first_line: bool = True) -> str:
    """A driver message (its first line, at most 300 characters, unless ``first_line`` is
    false) with the given secrets and every password cut out."""
    text = message.strip()
    if first_line:
        text = (text.splitlines() or [""])[0][:300]
    return scrub_passwords(cut_secrets(text, secrets))
