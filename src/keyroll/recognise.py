"""Recognise values keyroll no longer holds (destroyed versions) in text, without keeping them.

When a version's value is destroyed, keyroll keeps a *recognition digest*: HMAC-SHA256 of the
value under a key only the store can produce (`derive_key`: HKDF-SHA256 of the local store's
master key with info ``keyroll recognise``; a random key held inside the store for remote
backends). To find the value in a text, `Recogniser` cuts the text into candidate strings,
undoes every spelling keyroll knows of (dotenv, JSON and shell escaping, percent-encoding,
base64, base64url, hex), computes the digest of each candidate and looks it up in the set.

What it proves: a span it reports is, with the certainty of HMAC-SHA256, a spelling of one of
the recorded values. What it costs: one HMAC per candidate (a few microseconds; a 2 kB hook
output yields a few hundred candidates) and 64 hex characters of bookkeeping per destroyed
version. What it does not find: a value glued to other text with no delimiter between them
(``abc<value>def``), split across lines, with more than 8 space-separated words, or in an
encoding not listed above. A plain SHA-256
fingerprint would do the same lookup, but anyone holding the journal could brute-force short
values from it; the keyed digest needs the store's key, so it is only as exposed as the store.

The CLI's ``keyroll scan`` and the hook redactor (`keyroll.runtime.redaction.Redactor`) share
this module. Standard library only, importable by the runtime.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

__all__ = ["DIGEST_INFO", "Recogniser", "Span", "derive_key", "digest"]

#: The HKDF ``info`` of the recognition key (distinct from every other use of the master key).
DIGEST_INFO = b"keyroll recognise"

# Candidate cutters. Each yields spans of the text; a span is tried as is and decoded.
_WORD = re.compile(r"(?:\\.|[^\s\\])+")  # whitespace-free runs; "\ " (printf %q) stays inside
_ALPHABET = re.compile(r"[A-Za-z0-9+/=_%.~-]+")  # base64, base64url, hex, percent-encoded
_PIECE = re.compile(r"[^\s\"'=:@/,;&?#<>()\[\]{}|`]+")  # between delimiters
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_SINGLE_QUOTED = re.compile(r"'([^'\n]*)'")
_AFTER_EQUALS = re.compile(r"(?<==)[^\n]+")
_MAX_CANDIDATE = 4096
_MAX_WORDS = 8  # a value with spaces: runs of up to this many words of one line are tried


def derive_key(master_key: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869, no salt) of ``master_key`` with info `DIGEST_INFO`: 32 bytes."""
    prk = hmac.new(b"\0" * 32, master_key, hashlib.sha256).digest()
    return hmac.new(prk, DIGEST_INFO + b"\x01", hashlib.sha256).digest()


def digest(key: bytes, value: str | bytes) -> str:
    """The recognition digest of ``value``: hex HMAC-SHA256 under ``key``."""
    data = value.encode() if isinstance(value, str) else value
    return hmac.new(key, data, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Span:
    """Where a recognised value is spelled in a text (``text[start:end]``)."""

    start: int
    end: int


def _unescape_backslashes(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _spellings(text: str) -> Iterator[str | bytes]:
    """``text`` and what it decodes to under each spelling keyroll masks."""
    yield text
    if "\\" in text:
        yield _unescape_backslashes(text)  # dotenv "…\$…" and printf %q
        try:
            decoded = json.loads(f'"{text}"')
        except ValueError:
            pass
        else:
            if isinstance(decoded, str):
                yield decoded
    if "%" in text or "+" in text:
        yield unquote(text)
        yield unquote_plus(text)
    if "'" in text:  # inside a single-quoted shell word
        yield text.replace("'\\''", "'").replace("'\"'\"'", "'")
    stripped = text.strip("=")
    if len(stripped) >= 4:
        padded = stripped + "=" * (-len(stripped) % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            with contextlib.suppress(ValueError, binascii.Error):
                yield decode(padded.encode())
    if len(text) % 2 == 0 and len(text) >= 2:
        with contextlib.suppress(ValueError):
            yield bytes.fromhex(text)


def _candidates(text: str) -> Iterator[tuple[int, int]]:
    for start, end in _raw_candidates(text):
        yield start, end
        # the same without the quotes, brackets or punctuation around it
        word = text[start:end]
        trimmed = word.strip("\"'`()[]{}<>,;.")
        if trimmed and trimmed != word:
            first = start + word.index(trimmed)
            yield first, first + len(trimmed)


def _raw_candidates(text: str) -> Iterator[tuple[int, int]]:
    for pattern in (_WORD, _ALPHABET, _PIECE):
        for match in pattern.finditer(text):
            yield match.span()
    for pattern in (_DOUBLE_QUOTED, _SINGLE_QUOTED):
        for match in pattern.finditer(text):
            yield match.span(1)
    for offset, line in _lines(text):
        words = [m.span() for m in _WORD.finditer(line)]
        for i, (first, _) in enumerate(words):
            for _, last in words[i + 1 : i + _MAX_WORDS]:
                yield offset + first, offset + last
    for match in _AFTER_EQUALS.finditer(text):
        value = match.group().strip()
        if value:
            start = match.start() + match.group().index(value)
            yield start, start + len(value)


class Recogniser:
    """Finds spellings of recorded values in text by their keyed digests.

    Args:
        key: the recognition key (`derive_key`, or the store's `recognition_key`).
        digests: recorded digests (`digest` of each value).
    """

    def __init__(self, key: bytes, digests: Iterable[str] = ()) -> None:
        self._key = key
        self._digests = frozenset(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def knows(self, value: str | bytes) -> bool:
        """Whether ``value`` is one of the recorded values."""
        return digest(self._key, value) in self._digests

    def find(self, text: str) -> list[Span]:
        """Every span of ``text`` that spells a recorded value, longest first, not overlapping."""
        if not self._digests or not text:
            return []
        seen: set[tuple[int, int]] = set()
        hits: list[Span] = []
        for start, end in _candidates(text):
            if (start, end) in seen or end - start > _MAX_CANDIDATE:
                continue
            seen.add((start, end))
            if any(self.knows(form) for form in _spellings(text[start:end])):
                hits.append(Span(start, end))
        for line_start, line in _lines(text):
            if "'" in line or "\\" in line:
                # a shell line quoted in pieces ('a'"'"'b'): shlex rejoins them; mask the line
                try:
                    words = shlex.split(line)
                except ValueError:
                    continue
                words += [word.partition("=")[2] for word in words if "=" in word]
                if any(self.knows(word) for word in words):
                    hits.append(Span(line_start, line_start + len(line)))
        return _disjoint(hits)

    def redact(self, text: str, replace: Callable[[str], str]) -> str:
        """``text`` with each recognised span replaced by ``replace(span_text)``."""
        for span in sorted(self.find(text), key=lambda s: s.start, reverse=True):
            text = text[: span.start] + replace(text[span.start : span.end]) + text[span.end :]
        return text

    def __repr__(self) -> str:
        return f"Recogniser(digests={len(self._digests)})"


def _lines(text: str) -> Iterator[tuple[int, str]]:
    offset = 0
    for line in text.splitlines(keepends=True):
        yield offset, line.rstrip("\r\n")
        offset += len(line)


def _disjoint(spans: list[Span]) -> list[Span]:
    chosen: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start - s.end, s.start)):
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return chosen
