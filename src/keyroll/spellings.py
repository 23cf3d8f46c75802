"""Every spelling of a value, and one regular expression for many spellings.

The redactor (`keyroll.runtime.redaction`) masks exactly `value_forms`, and ``keyroll scan``
(`keyroll.scan.matcher`) matches the same spellings literally, so what one masks and the other
finds cannot drift apart. `trie_regex` compiles many spellings into one alternation shaped as
a trie (the redactor's matcher, and the scan's without ``ahocorasick-rs``). Standard library
only: the runtime imports this module (Python 3.10).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

from keyroll.escaping import escaped_forms

__all__ = ["trie_regex", "value_forms"]


def value_forms(value: str) -> set[str]:
    """Every spelling of ``value`` the redactor masks and ``keyroll scan`` matches literally
    (of any length): raw, URL-encoded (``quote``, ``quote_plus``), hex (lower and upper
    case), the dotenv/JSON/shell escapes of `keyroll.escaping`, base64 and base64url (padded
    or not), and, for a value that is itself base64/hex of 16+ key bytes, those bytes in
    base64/hex."""
    raw = value.encode()
    forms = {value, quote(value, safe=""), quote_plus(value), raw.hex(), raw.hex().upper()}
    forms |= escaped_forms(value)
    decoded: list[bytes] = [raw]
    stripped = value.strip()
    for decode in (
        lambda t: base64.b64decode(t + "=" * (-len(t) % 4), validate=True),
        lambda t: base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)),
        bytes.fromhex,
    ):
        try:
            material = decode(stripped.removeprefix("whsec_"))
        except (ValueError, binascii.Error):
            continue
        if len(material) >= 16:
            decoded.append(material)
            forms.update((material.hex(), material.hex().upper()))
    for data in decoded:
        std = base64.b64encode(data).decode()
        url = base64.urlsafe_b64encode(data).decode()
        forms.update((std, std.rstrip("="), url, url.rstrip("=")))
    forms.discard("")
    return forms


def trie_regex(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, longest first, as a trie of alternatives."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def alternatives(children: list[tuple[str, dict[str, Any]]]) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in children]
        if not branches:
            return ""
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    def emit(node: dict[str, Any]) -> str:
        # a run of single-child nodes is one literal, walked without recursing: a long value
        # (a PEM key is 200-3000 characters) must not cost a stack frame per character
        literal: list[str] = []
        while True:
            children = [(ch, child) for ch, child in sorted(node.items()) if ch]
            if "" in node and children:
                # a word may end here: the rest is optional, longer matches win (greedy)
                return "".join(literal) + f"(?:{alternatives(children)})?"
            if len(children) != 1:
                return "".join(literal) + alternatives(children)
            ch, node = children[0]
            literal.append(re.escape(ch))

    return emit(trie)
