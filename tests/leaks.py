"""Plant-and-grep: assert that no form of a secret value appears in some output.

Forms checked: raw, standard and URL-safe base64 (with and without padding), hex (lower and
upper case) and URL-encoding, as the invariant in DESIGN.md requires.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["assert_no_leak", "leak_forms"]


def leak_forms(value: str | bytes) -> list[bytes]:
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
    return sorted(f for f in forms if len(f) >= 8)


def assert_no_leak(
    outputs: Iterable[str | bytes], secrets: Iterable[str | bytes], *, where: str = "output"
) -> None:
    """Fail naming the form (never the value) if any secret appears in any output."""
    haystacks = [o.encode() if isinstance(o, str) else o for o in outputs]
    for number, secret in enumerate(secrets):
        for form in leak_forms(secret):
            for hay in haystacks:
                assert form not in hay, f"planted secret #{number} found in {where}"
