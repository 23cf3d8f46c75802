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
version. A value split across lines is found when it is a block of its own: a PEM block
(``-----BEGIN …-----`` to ``-----END …-----``, indented or not, as in a YAML ``|`` scalar) and
base64/hex wrapped at a fixed width (``base64 -w 64``, a PEM body), whole or starting after
``KEY=`` on the first line. A DSN's password is tried as written (``scheme://user:<value>@host``,
delimiters and all). What it does not find: a value glued to other text with no delimiter
between them (``abc<value>def``; ``keyroll scan`` adds a literal matcher for the values it can
read), with more than 8 space-separated words, wrapped inside a longer block whose first and
last lines are not its own, or in an encoding not listed above. A plain SHA-256
fingerprint would do the same lookup, but anyone holding the journal could brute-force short
values from it; the keyed digest needs the store's key, so it is only as exposed as the store.

The CLI's ``keyroll scan`` and the hook redactor (`keyroll.runtime.redaction.Redactor`) share
this module. Standard library only, importable by the runtime: `Recogniser.words` cuts its
candidates with the optional C module `keyroll._cutter` when the package was built with one
(``_cutter.c``: the same candidates, several times faster), else with the regular expressions
below. The C module also prefilters them for ``keyroll scan``: it decodes each candidate in
its spellings and hands on only those with a spelling of a recorded size and recognition tag
(`keyroll.recognise_tag`), so that most candidates never reach Python or HMAC.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import shlex
import string
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from urllib.parse import unquote, unquote_plus

from keyroll.recognise_tag import tag_key, tag_map


def _keyed(key: bytes) -> Callable[[Iterable[bytes]], list[bytes]]:
    """HMAC-SHA256 under ``key`` of many messages: the keyed state is made once and copied
    for each message (a third of the cost of one-call HMAC on short messages, which derives
    the key's pads every time)."""
    keyed = hmac.new(key, digestmod="sha256")
    state = getattr(keyed, "_hmac", None)  # OpenSSL's HMAC object, without hmac.HMAC's frame
    base = state if state is not None else keyed

    def digests(messages: Iterable[bytes]) -> list[bytes]:
        out = []
        for message in messages:
            one = base.copy()
            one.update(message)
            out.append(one.digest())
        return out

    return digests

_cutter: ModuleType | None
try:  # `words`' candidate cutting in one C pass (built with the package when a compiler is there)
    from keyroll import _cutter
except ImportError:  # the same candidates, cut by the regular expressions below
    _cutter = None

__all__ = ["DIGEST_INFO", "Recogniser", "Span", "cutter_module", "derive_key", "digest", "shape"]

#: The HKDF ``info`` of the recognition key (distinct from every other use of the master key).
DIGEST_INFO = b"keyroll recognise"

# Candidate cutters. Each yields spans of the text; a span is tried as is and decoded.
_WORD = re.compile(r"(?:\\.|[^\s\\])+")  # whitespace-free runs; "\ " (printf %q) stays inside
_ALPHABET = re.compile(r"[A-Za-z0-9+/=_%.~-]+")  # base64, base64url, hex, percent-encoded
_PIECE = re.compile(r"[^\s\"'=:@/,;&?#<>()\[\]{}|`]+")  # between delimiters
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_SINGLE_QUOTED = re.compile(r"'([^'\n]*)'")
_AFTER_EQUALS = re.compile(r"(?<==)[^\n]+")
# a DSN's password as written, unescaped delimiters and all: up to the first or the last "@"
_DSN_FIRST = re.compile(r"://[^\s:/@]*:([^\s@]+)@")
_DSN_LAST = re.compile(r"://[^\s:/@]*:(\S+)@")
_MAX_CANDIDATE = 4096
_MAX_WORDS = 8  # a value with spaces: runs of up to this many words of one line are tried
# a block of its own across lines: PEM armour, and lines of one width of base64/hex (wrapped)
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]{1,64}-----.{0,16384}?-----END [A-Z0-9 ]{1,64}-----\n?",
                  re.S)
_WRAPPED_LINE = re.compile(r"[ \t]*([A-Za-z0-9+/=_-]{4,})[\"',\\]*[ \t]*")
_WRAPPED_LINES = re.compile(r"^[ \t]*([A-Za-z0-9+/=_-]{4,})[\"',\\]*[ \t]*\r?$", re.M)
_B64_LINE_CHARS = string.ascii_letters + string.digits + "+/=_-"  # a wrapped line's class
_MAX_WRAPPED_LINES = 128
# the same candidates as strings, for `Recogniser.words` (every regex runs in C)
_WINDOWS = [re.compile(rf"(?<!\S)(?=((?:\S+[ \t]+){{{k}}}\S+))") for k in range(1, _MAX_WORDS)]
_TRIM = "\"'`()[]{}<>,;."
_PIECES = ("'\"'\"'", "'\\''")  # a quote inside a single-quoted shell word
_NEEDS_FULL = re.compile(r"[\n\\'%]|[^\x00-\x7f]")
_WHITESPACE = re.compile(r"\s")
# the fast path of `Recogniser.words`: plain candidates decoded in batches
_B64_CHARS = re.compile(r"[A-Za-z0-9+/_-]+")
_HEX_CHARS = re.compile(r"[0-9A-Fa-f]+")
_URL_TO_STD = str.maketrans("-_", "+/")
_URL_TO_STD_BYTES = bytes.maketrans(b"-_", b"+/")
_EQUALS = re.compile("=")
_ESCAPED_SPACE_LINE = re.compile(r"^.*\\[ \t].*$", re.M)


def cutter_module() -> ModuleType | None:
    """The C cutter `keyroll._cutter` in use (None: not built, or turned off), for callers
    that share its other passes (``keyroll scan``'s literal matcher)."""
    return _cutter


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
    if "\n" in text:  # a block across lines: a PEM as written (indented), or wrapped base64
        lines = [line.strip() for line in text.splitlines()]
        yield "\n".join(lines)
        yield "\n".join(lines) + "\n"
        joined = "".join(m.group(1) if (m := _WRAPPED_LINE.fullmatch(line)) else line
                         for line in lines)
        if joined != text:
            yield from _spellings(joined)
        return
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


def shape(value: str) -> tuple[int, int, int]:
    """A value's ``(bytes, whitespace-separated words, characters)``: what `Recogniser`
    needs to skip candidates that cannot spell it (kept beside its digest by the stores)."""
    return len(value.encode("utf-8", "surrogateescape")), len(value.split()) or 1, len(value)


def _size(form: str | bytes) -> int:
    """``form``'s length in UTF-8 bytes (surrogateescape), -1 for one no value can have (a
    lone surrogate outside surrogateescape's, e.g. JSON's ``\\ud800``)."""
    if isinstance(form, bytes) or form.isascii():
        return len(form)
    try:
        return len(form.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return -1


def _sized_spellings(text: str, lengths: frozenset[int]) -> Iterator[str | bytes]:
    """The `_spellings` of ``text`` that can have one of ``lengths`` (in bytes), without
    decoding those that cannot: a plain token costs a few length checks, not five decodes."""
    if "\n" in text:  # `_spellings`' block branch, each form's size checked before decoding
        lines = [line.strip() for line in text.splitlines()]
        stripped = "\n".join(lines)
        size = _size(stripped)  # and one more with a final newline
        if _size(text) in lengths:
            yield text
        if size in lengths:
            yield stripped
        if size >= 0 and size + 1 in lengths:
            yield stripped + "\n"
        joined = "".join([m.group(1) if (m := _WRAPPED_LINE.fullmatch(line)) else line
                          for line in lines])
        if joined != text:
            yield from _sized_spellings(joined, lengths)
        return
    if "\\" in text or "'" in text or "%" in text:
        yield from _sized_decoded(text, lengths)
        return
    size = _size(text)
    if size in lengths:
        yield text
        if "+" in text:
            yield text.replace("+", " ")  # unquote_plus of a text without %
    stripped = text.strip("=")
    chars = len(stripped)
    if chars >= 4 and chars % 4 != 1 and chars * 3 // 4 in lengths:
        padded = stripped + "=" * (-chars % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            with contextlib.suppress(ValueError, binascii.Error):
                yield decode(padded.encode())
    if len(text) % 2 == 0 and len(text) // 2 in lengths:
        with contextlib.suppress(ValueError):
            yield bytes.fromhex(text)


def _sized_decoded(text: str, lengths: frozenset[int]) -> Iterator[str | bytes]:
    """`_spellings` of a one-line ``text`` that can have one of ``lengths`` (in bytes): the
    same forms in the same order, each size checked as soon as it is known, and a form that
    cannot fit (base64 or hex of too few characters) not decoded."""
    if _size(text) in lengths:
        yield text
    if "\\" in text:
        form = _unescape_backslashes(text)
        if _size(form) in lengths:
            yield form
        try:
            decoded = json.loads(f'"{text}"')
        except ValueError:
            pass
        else:
            if isinstance(decoded, str) and _size(decoded) in lengths:
                yield decoded
    if "%" in text or "+" in text:
        for form in (unquote(text), unquote_plus(text)):
            if _size(form) in lengths:
                yield form
    if "'" in text:
        form = text.replace("'\\''", "'").replace("'\"'\"'", "'")
        if _size(form) in lengths:
            yield form
    if not lengths:
        return
    stripped = text.strip("=")
    # base64 decodes at most 3 bytes from 4 characters (padded; the others are skipped)
    if len(stripped) >= 4 and min(lengths) <= (len(stripped) + 3) * 3 // 4:
        try:
            padded = (stripped + "=" * (-len(stripped) % 4)).encode()
        except UnicodeEncodeError:  # a lone surrogate: as `_spellings`, no base64 form
            padded = b""
        # b64decode and urlsafe_b64decode (not validating), without their Python wrappers;
        # the second only when "-" or "_" make it differ from the first
        encoded = [padded, padded.translate(_URL_TO_STD_BYTES)] if (
            b"-" in padded or b"_" in padded) else [padded] if padded else []
        for standard in encoded:
            try:
                data = binascii.a2b_base64(standard)
            except (ValueError, binascii.Error):
                continue
            if len(data) in lengths:
                yield data
    if len(text) % 2 == 0 and len(text) >= 2 and min(lengths) <= len(text) // 2:
        try:
            data = bytes.fromhex(text)
        except ValueError:
            pass
        else:
            if len(data) in lengths:
                yield data


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
    if "://" in text:
        for pattern in (_DSN_FIRST, _DSN_LAST):
            for match in pattern.finditer(text):
                yield match.span(1)
    if "\n" in text:
        yield from _block_candidates(text)


def _block_candidates(text: str, shortest: int = 0) -> Iterator[tuple[int, int]]:
    """Spans of values written across lines: PEM blocks, and runs of wrapped base64/hex lines
    (a run ends after a line shorter than the run's second: the last line of a wrapped block).
    Each run is tried from its first line (or the tail of the line before it, ``KEY=MIIB…``,
    or after a ``KEY=`` on its first line) to every later line, and from every line to its end.
    With ``shortest``, only the runs' spans of that many characters or more (every spelling
    of a value is at least as long as the value has characters; a run is ASCII).
    """
    if "-----BEGIN " in text:
        for pem in _PEM.finditer(text):
            yield pem.span()
            if pem.group().endswith("\n"):
                yield pem.start(), pem.end() - 1
    if shortest:
        if _cutter is not None:  # the runs and their spans in C
            yield from _cutter.run_spans(text, shortest)
            return
        for run in _wrapped_runs(text):
            yield from ((a, b) for a, b in _run_spans(text, run) if b - a >= shortest)
        return
    for run in _wrapped_runs(text):
        yield from _run_spans(text, run)


def _wrapped_runs(text: str) -> Iterator[list[tuple[int, int]]]:
    """The runs of wrapped lines of `_block_candidates`: (start, end) of each line's base64."""
    run: list[tuple[int, int]] = []  # (start, end) of the base64 part of each line
    previous_end = -2
    for match in _WRAPPED_LINES.finditer(text):  # only the lines that fit, found in C
        if run and (match.start() != previous_end + 1 or len(run) >= _MAX_WRAPPED_LINES or (
                len(run) >= 2 and run[-1][1] - run[-1][0] < run[1][1] - run[1][0])):
            yield run
            run = []
        previous_end = match.end()
        run.append(match.span(1))
    if run:
        yield run


def _run_spans(text: str, run: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    if not run:
        return
    starts = [run[0][0]] if len(run) >= 2 else []
    head = text[run[0][0]:run[0][1]]
    inner = head.rstrip("=").find("=")
    if inner > 0 and len(run) >= 2:  # KEY=MIIB… on the first line
        starts.append(run[0][0] + inner + 1)
    line_start = text.rfind("\n", 0, run[0][0]) + 1
    if line_start > 0:  # the value starts at the end of the line before: `key: MIIB…`
        offset = text.rfind("\n", 0, line_start - 1) + 1
        before = text[offset:line_start - 1].rstrip("\r")
        kept = len(before.rstrip(_B64_LINE_CHARS))  # 8 or more of them end the line
        if len(before) - kept >= 8:
            yield offset + kept, run[0][1]
            starts.append(offset + kept)
    for start in starts:
        for _, end in run[1:]:
            yield start, end
    for start, _ in run[1:-1]:
        yield start, run[-1][1]


class _PlainBatches:
    """`Recogniser.words`' fast path for plain candidates (ASCII, no escape, quote, percent or
    newline): grouped by length, each length decoded only in the spellings that can have a
    recorded length (raw, ``+`` as a space, base64/base64url, hex), every group hashed by one
    C-level ``map`` over OpenSSL's HMAC; Python touches a candidate only when it matches.

    Args:
        key: the recognition key.
        digests: hex digests to find.
        shapes: every recorded shape (the shortest sets which words are cut at all).
        plain: the shapes whose plain spellings are looked for here.
    """

    def __init__(self, key: bytes, digests: frozenset[str], shapes: list[tuple[int, int, int]],
                 plain: list[tuple[int, int, int]]) -> None:
        self._hmac = _keyed(key)
        self._digests = frozenset(bytes.fromhex(d) for d in digests)
        shortest = min(min(chars, size) for size, _, chars in shapes)
        self.shortest = max(1, shortest)
        self.long_word = re.compile(rf"\S{{{self.shortest},}}")
        sizes = {size for size, _, _ in plain}
        self._ops: dict[int, tuple[bool, bool, bool]] = {}
        for n in sizes:
            for length in (n, (4 * n + 2) // 3, 4 * ((n + 2) // 3), 2 * n):
                self._ops[length] = (
                    length in sizes,
                    length % 4 != 1 and length * 3 // 4 in sizes,
                    length % 2 == 0 and length // 2 in sizes,
                )
        mask = bytearray(max(self._ops, default=0) + 1)
        for length in self._ops:
            mask[length] = 1
        #: ``mask[n]``: a plain candidate of ``n`` characters can spell a value looked for here
        self.lengths_mask = bytes(mask)

    def find(self, words: Iterable[str], found: dict[str, str]) -> None:
        """Add to ``found`` each of ``words`` (all plain) that spells a recorded value."""
        words = list(words)
        ordered = sorted(itertools.compress(words, map(self._ops.__contains__, map(len, words))),
                         key=len)
        for length, group in itertools.groupby(ordered, key=len):
            ops = self._ops.get(length)
            if ops is None:
                continue
            raw, b64, hexa = ops
            bucket = list(group)
            if raw:
                self._batch(bucket, map(str.encode, bucket), found)
                plus = [w for w in bucket if "+" in w]  # ``quote_plus`` of a value with spaces
                self._batch(plus, (w.replace("+", " ").encode() for w in plus), found)
            if b64:
                self._base64(list(filter(_B64_CHARS.fullmatch, bucket)), length, found)
            if hexa:
                hexes = list(filter(_HEX_CHARS.fullmatch, bucket))
                self._batch(hexes, map(bytes.fromhex, hexes), found)

    def _base64(self, words: list[str], length: int, found: dict[str, str]) -> None:
        if not words:
            return
        pad = "=" * (-length % 4)
        std = [w for w in words if "-" not in w and "_" not in w]
        url = [w for w in words if "-" in w or "_" in w]
        for group, convert in ((std, None), (url, _URL_TO_STD)):
            texts = [w + pad for w in group] if convert is None else [
                (w + pad).translate(convert) for w in group]
            try:
                data = list(map(binascii.a2b_base64, map(str.encode, texts)))
            except (binascii.Error, ValueError):  # one odd word: decode them one by one
                data = []
                kept = []
                for word, text in zip(group, texts, strict=True):
                    with contextlib.suppress(binascii.Error, ValueError):
                        data.append(binascii.a2b_base64(text.encode()))
                        kept.append(word)
                group = kept
            self._batch(group, data, found)

    def _batch(self, words: list[str], data: Iterable[bytes], found: dict[str, str]) -> None:
        if not words:
            return
        hashed = self._hmac(data)
        if self._digests.isdisjoint(hashed):
            return
        for word, value in zip(words, hashed, strict=True):
            if value in self._digests and word not in found:
                found[word] = value.hex()


class Recogniser:
    """Finds spellings of recorded values in text by their keyed digests.

    Args:
        key: the recognition key (`derive_key`, or the store's `recognition_key`).
        digests: recorded digests (`digest` of each value).
        shapes: the shape of every recorded value, when all are known: ``(bytes, words,
            characters)`` (`shape`). `words` then decodes and hashes a candidate only in the
            spellings that can have a recorded length, and tries runs of words only of the
            exact length of a recorded value with spaces (``keyroll scan``'s speed); None
            tries every spelling and every run of up to 8 words.
        plain_shapes: the shapes of the values `words` looks for in plain candidates (default:
            all; ``keyroll scan`` matches the values it can read literally instead).
        plain_tags: the recognition tags (`keyroll.recognise_tag`) of exactly those values,
            when all are known: the C cutter then hands on only the plain candidates with a
            spelling of one of these tags (None: every one of a length looked for).
        tags: the tags of every recorded value, when all are known: the C cutter then hands
            on only the candidates that need decoding with a spelling of one of these.
    """

    def __init__(self, key: bytes, digests: Iterable[str] = (), *,
                 shapes: Iterable[tuple[int, int, int]] | None = None,
                 plain_shapes: Iterable[tuple[int, int, int]] | None = None,
                 plain_tags: Iterable[int] | None = None,
                 tags: Iterable[int] | None = None) -> None:
        self._key = key
        # the C cutter's filters: the recorded sizes (for candidates that need decoding) and
        # the tag map (for plain ones); empty: off
        self._sizes_mask = self._raw_sizes_mask = b""
        self._tag_key = self._tag_map = self._all_tag_map = b""
        if _cutter is not None and (plain_tags is not None or tags is not None):
            self._tag_key = tag_key(key)
            self._tag_map = b"" if plain_tags is None else tag_map(set(plain_tags))
            self._all_tag_map = b"" if tags is None else tag_map(set(tags))
        self._hash = _keyed(key)
        self._digests = frozenset(digests)
        self._lengths: frozenset[int] | None = None
        self._windows = _WINDOWS
        self._widths: tuple[tuple[int, int], ...] = ()
        self._spaced_mask = b""
        self._spaced_min = _MAX_CANDIDATE + 1
        self._fast: _PlainBatches | None = None
        if shapes is not None:
            known = list(shapes)
            plain = known if plain_shapes is None else list(plain_shapes)
            self._lengths = frozenset(size for size, _, _ in known)
            sizes = bytearray(max(self._lengths, default=-1) + 1)
            for size in self._lengths:
                sizes[size] = 1
            self._sizes_mask = bytes(sizes)
            # a candidate's raw spelling, only at the sizes of the values not matched
            # literally (one of those, as written, is found by the caller's literal matcher)
            raw = bytearray(max((size for size, _, _ in plain), default=-1) + 1)
            for size, _, _ in plain:
                raw[size] = 1
            self._raw_sizes_mask = bytes(raw)
            spaced = sorted({chars for _, words, chars in plain if words > 1 and chars >= 3})
            self._windows = [re.compile(rf"(?<!\S)(?=(\S[^\n]{{{n - 2}}}\S)(?!\S))")
                             for n in spaced]
            # runs of words are tried at each (characters, words) of a value with spaces
            self._widths = tuple(sorted({(chars, words) for _, words, chars in plain
                                         if words > 1 and chars >= 3}))
            # a candidate holding whitespace can only spell a value with spaces: as written
            # (plain) at one of their lengths, escaped from the shortest one's characters
            mask = bytearray(max(spaced, default=0) + 1)
            for n in spaced:
                mask[n] = 1
            self._spaced_mask = bytes(mask)
            self._spaced_min = min((chars for _, words, chars in known if words > 1),
                                   default=_MAX_CANDIDATE + 1)
            if known:
                self._fast = _PlainBatches(key, self._digests, known, plain)

    def __len__(self) -> int:
        return len(self._digests)

    def knows(self, value: str | bytes) -> bool:
        """Whether ``value`` is one of the recorded values."""
        return self._which(value) is not None

    def _which(self, value: str | bytes) -> str | None:
        try:
            data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        except UnicodeEncodeError:  # a lone surrogate (JSON "\\ud800"): no value is spelled so
            return None
        found = self._hash([data])[0].hex()
        return found if found in self._digests else None

    def words(self, text: str) -> dict[str, str]:
        """`words_and_runs` without the runs."""
        return self.words_and_runs(text)[0]

    def words_and_runs(self, text: str, runs_min: int = 0
                       ) -> tuple[dict[str, str], tuple[bytes, bytes, bytes] | None]:
        """The distinct candidate strings of ``text`` that spell a recorded value, with the
        digest each matched: the candidates `matches` tries, cut as strings by regexes
        running in C and tried once each (``keyroll scan``'s pass; it locates the few hits
        afterwards).

        With shapes, only the whitespace-free words of ``text`` long enough to hold a
        recorded value are cut further; a plain candidate (ASCII, no escape, quote, percent
        or newline) is tried only at the lengths its spellings of a recorded length can have
        (``plain_shapes``: a caller that matches some values' plain spellings itself leaves
        them out), its raw, base64 and hex decodings computed and hashed in batches, one
        OpenSSL call each; every other candidate is decoded in every spelling of a recorded
        length, as `matches` does.

        With ``runs_min`` and the C cutter, also the whitespace-free runs of ``text`` of that
        many characters or more, cut in the same pass (`keyroll._cutter.long_runs`; the
        literal matcher of ``keyroll scan`` searches them), else None."""
        if not self._digests or not text:
            return {}, None
        if self._fast is None:
            return self._every_word(text), None
        fast = self._fast
        spaced = bool(self._widths) and (" " in text or "\t" in text)
        if _cutter is not None:
            escapes = "\\ " in text or "\\\t" in text  # printf %q keeps "\ " inside a word
            # only candidates with a spelling of a recorded size, or of a recorded tag
            plain, special, runs, pieced = _cutter.words(
                text, fast.shortest, fast.lengths_mask, self._spaced_mask, self._spaced_min,
                self._widths, spaced, escapes, self._sizes_mask, self._raw_sizes_mask,
                self._tag_key, self._tag_map, self._all_tag_map, runs_min)
        else:
            (plain, special), runs, pieced = self._cut(text, spaced), None, _pieced(text)
        if "\n" in text:
            blocks = list({text[a:b] for a, b in _block_candidates(text, fast.shortest)})
            if _cutter is not None and self._sizes_mask:  # those a recorded value can spell
                blocks = _cutter.blocks(blocks, self._sizes_mask, self._tag_key,
                                        self._all_tag_map)
            special.update(blocks)
        assert self._lengths is not None
        found: dict[str, str] = {}
        for word in special:
            if len(word) > _MAX_CANDIDATE:
                continue
            for form in _sized_spellings(word, self._lengths):
                if (d := self._which(form)) is not None:
                    found[word] = d
                    break
        fast.find(plain, found)
        self._pieced_lines(text, found, dict.fromkeys(pieced))
        return found, runs

    def _cut(self, text: str, spaced: bool) -> tuple[set[str], set[str]]:
        """`words`' candidates of ``text`` by regular expressions (what `keyroll._cutter`
        cuts in C, exactly): the whitespace-free words long enough to hold a recorded value,
        cut further (pieces, quoted strings, ``KEY=value`` tails, DSN passwords), runs of
        words of a recorded value's length (``spaced``), each also without the quotes,
        brackets, punctuation or base64 padding around it; kept when it needs decoding and
        has `shortest` characters, or is plain and of a length in ``lengths_mask``. Returns
        (plain, needing decoding)."""
        assert self._fast is not None
        fast = self._fast
        long_words = fast.long_word.findall(text)
        if "\\ " in text or "\\\t" in text:  # printf %q keeps "\ " inside one word
            for line in _ESCAPED_SPACE_LINE.findall(text):
                long_words += _WORD.findall(line)
        joined = "\n".join(long_words)  # no cutter below crosses a newline
        words = set(long_words)
        for pattern in (_ALPHABET, _PIECE):
            words.update(pattern.findall(joined))
        if '"' in joined:
            words.update(_DOUBLE_QUOTED.findall(joined))
        if "'" in joined:
            words.update(_SINGLE_QUOTED.findall(joined))
        if "=" in joined:
            words.update(map(str.strip, _AFTER_EQUALS.findall(joined)))
        if "://" in joined:
            words.update(_DSN_FIRST.findall(joined))
            words.update(_DSN_LAST.findall(joined))
        if spaced:  # values with spaces: runs of as many words and characters as one has
            for window in self._windows:
                words.update(w for w in window.findall(text)
                             if (len(w), len(w.split())) in self._widths)
            if '"' in text:
                words.update(_DOUBLE_QUOTED.findall(text))
            if "'" in text:
                words.update(_SINGLE_QUOTED.findall(text))
            if "=" in text:
                words.update(map(str.strip, _AFTER_EQUALS.findall(text)))
        words.update(list(map(str.strip, words, itertools.repeat(_TRIM))))
        # base64 padding: "…/L1s=" has no "="-free candidate when "/" cuts its pieces
        words.update(list(map(str.strip, filter(_EQUALS.search, words), itertools.repeat("="))))
        # every spelling is at least as long as its value has characters; one holding
        # whitespace can only spell a value with spaces
        full = set(filter(_NEEDS_FULL.search, words))
        white = set(filter(_WHITESPACE.search, words))
        mask, spaced_mask = fast.lengths_mask, self._spaced_mask
        plain = {w for w in words - full - white if len(w) < len(mask) and mask[len(w)]}
        plain |= {w for w in white - full if len(w) < len(spaced_mask) and spaced_mask[len(w)]}
        special = {w for w in full - white if len(w) >= fast.shortest}
        special |= {w for w in full & white if len(w) >= self._spaced_min}
        return plain, special

    def _every_word(self, text: str) -> dict[str, str]:
        """`words` for values whose shapes are not all known: every candidate of ``text``,
        decoded in every spelling."""
        words: set[str] = set()
        for pattern in (_WORD, _ALPHABET, _PIECE):
            words.update(pattern.findall(text))
        if '"' in text:
            words.update(_DOUBLE_QUOTED.findall(text))
        if "'" in text:
            words.update(_SINGLE_QUOTED.findall(text))
        if "=" in text:
            words.update(w.strip() for w in _AFTER_EQUALS.findall(text))
        if "://" in text:
            words.update(_DSN_FIRST.findall(text))
            words.update(_DSN_LAST.findall(text))
        if " " in text or "\t" in text:
            for window in self._windows:
                words.update(window.findall(text))
        words.update([w.strip(_TRIM) for w in words])
        if "\n" in text:
            words.update(text[a:b] for a, b in _block_candidates(text))
        words.discard("")
        lengths = self._lengths
        if lengths is not None:
            fits = self._plain_lengths()
            words = {w for w in words if len(w) in fits or _NEEDS_FULL.search(w)}
        found: dict[str, str] = {}
        for word in words:
            if len(word) > _MAX_CANDIDATE:
                continue
            forms = _spellings(word) if lengths is None else _sized_spellings(word, lengths)
            for form in forms:
                if (d := self._which(form)) is not None:
                    found[word] = d
                    break
        self._pieced_lines(text, found)
        return found

    def _pieced_lines(self, text: str, found: dict[str, str],
                      lines: Iterable[str] | None = None) -> None:
        for line in _pieced(text) if lines is None else lines:  # 'a'"'"'b', 'a'\''b
            if (d := self._shell_line(line)) is not None:
                found[line] = d

    def _plain_lengths(self) -> frozenset[int]:
        """Lengths a plain ASCII candidate (no ``=``, ``%``, ``+``, quote, backslash) may have
        to spell a value of a recorded length: raw, base64 (unpadded) or hex."""
        assert self._lengths is not None
        fits = set(self._lengths)
        for n in self._lengths:
            fits |= {(4 * n + 2) // 3, 4 * ((n + 2) // 3), 2 * n}
        return frozenset(fits)

    def _shell_line(self, line: str) -> str | None:
        try:
            words = shlex.split(line)
        except ValueError:
            return None
        words += [word.partition("=")[2] for word in words if "=" in word]
        if self._lengths is not None:
            words = [w for w in words if _size(w) in self._lengths]
        return next((d for w in words if (d := self._which(w)) is not None), None)

    def find(self, text: str) -> list[Span]:
        """Every span of ``text`` that spells a recorded value, longest first, not overlapping."""
        return _disjoint([span for span, _ in self.matches(text)])

    def matches(self, text: str) -> list[tuple[Span, str]]:
        """Every candidate span of ``text`` that spells a recorded value, with the digest it
        matched (possibly overlapping: `find` keeps the longest). Each distinct candidate
        string is decoded and hashed once per call, however often it occurs."""
        if not self._digests or not text:
            return []
        seen: set[tuple[int, int]] = set()
        known: dict[str, str | None] = {}
        hits: list[tuple[Span, str]] = []
        for start, end in _candidates(text):
            if (start, end) in seen or end - start > _MAX_CANDIDATE:
                continue
            seen.add((start, end))
            word = text[start:end]
            if word in known:
                found = known[word]
            else:
                forms = (_spellings(word) if self._lengths is None
                         else _sized_spellings(word, self._lengths))
                found = known[word] = next(
                    (d for form in forms if (d := self._which(form)) is not None), None)
            if found is not None:
                hits.append((Span(start, end), found))
        for line_start, line in _lines(text):
            if "'" in line or "\\" in line:
                # a shell line quoted in pieces ('a'"'"'b'): shlex rejoins them; mask the line
                try:
                    words = shlex.split(line)
                except ValueError:
                    continue
                words += [word.partition("=")[2] for word in words if "=" in word]
                if self._lengths is not None:
                    words = [w for w in words if _size(w) in self._lengths]
                found = next((d for w in words if (d := self._which(w)) is not None), None)
                if found is not None:
                    hits.append((Span(line_start, line_start + len(line)), found))
        return hits

    def redact(self, text: str, replace: Callable[[str], str]) -> str:
        """``text`` with each recognised span replaced by ``replace(span_text)``."""
        for span in sorted(self.find(text), key=lambda s: s.start, reverse=True):
            text = text[: span.start] + replace(text[span.start : span.end]) + text[span.end :]
        return text

    def __repr__(self) -> str:
        return f"Recogniser(digests={len(self._digests)})"


def _pieced(text: str) -> list[str]:
    """The lines of ``text`` (without their newline) holding a shell word quoted in pieces:
    found with `str.find`, a line once however many pieces it has."""
    lines: dict[str, None] = {}
    for piece in _PIECES:
        start = text.find(piece)
        for _ in range(len(text)):  # bounded: each turn moves past a line
            if start < 0:
                break
            first = text.rfind("\n", 0, start) + 1
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            lines[text[first:end]] = None
            start = text.find(piece, end)
    return list(lines)


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
