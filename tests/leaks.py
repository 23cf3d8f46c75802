"""Plant-and-grep: assert that no form of a secret value appears in some output.

Forms checked: raw, standard and URL-safe base64 (with and without padding), hex (lower and
upper case), URL-encoding, and the escaped spellings a hook sees when it reads a value from a
.env file, JSON or a shell: dotenv-escaped, JSON-escaped (ASCII and not), shell-quoted
(``shlex.quote``) and backslash-quoted (bash ``printf %q``). The escaped spellings are written
out here independently of ``keyroll.escaping`` (bash itself is asked for ``printf %q``), so a
bug there cannot hide a leak.

Forms of 8 characters or more are searched as substrings; shorter ones (a value imported with
``--allow-short``) as whole tokens, not glued to a letter or digit, as the redactor masks them.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import shlex
import subprocess
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["assert_no_leak", "leak_forms", "printf_q"]

_SUBSTRING = 8


@functools.cache
def printf_q(text: str) -> str:
    """What bash's ``printf %q`` prints for ``text``."""
    return subprocess.run(["bash", "-c", 'printf %q "$1"', "_", text], capture_output=True,
                          text=True, check=True).stdout


def _escaped(text: str) -> set[str]:
    dotenv = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return {
        dotenv,
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        shlex.quote(text),
        printf_q(text),
    }


def leak_forms(value: str | bytes) -> list[bytes]:
    """Every spelling of ``value`` to look for (of any length; see `assert_no_leak`)."""
    raw = value.encode() if isinstance(value, str) else value
    forms = {
        raw,
        base64.b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        raw.hex().encode(),
        raw.hex().upper().encode(),
        quote(raw, safe="").encode(),
        quote_plus(raw).encode(),
    }
    if isinstance(value, str):
        forms |= {form.encode() for form in _escaped(value)}
    return sorted(f for f in forms if f)


def _found(form: bytes, hay: bytes) -> bool:
    if len(form) >= _SUBSTRING:
        return form in hay
    return re.search(rb"(?<![A-Za-z0-9])" + re.escape(form) + rb"(?![A-Za-z0-9])", hay) is not None


def assert_no_leak(
    outputs: Iterable[str | bytes], secrets: Iterable[str | bytes], *, where: str = "output"
) -> None:
    """Fail naming the form (never the value) if any secret appears in any output."""
    haystacks = [o.encode() if isinstance(o, str) else o for o in outputs]
    for number, secret in enumerate(secrets):
        for index, form in enumerate(leak_forms(secret)):
            for hay in haystacks:
                assert not _found(form, hay), (
                    f"planted secret #{number} (form #{index}, {len(form)} bytes) found in {where}"
                )
