"""Find every version of a `ScanIndex` in a text, in one pass per text for all values.

Two matchers share the pass:

- **digests** (always): the recogniser's candidate tokens (`keyroll.recognise`,
  `Recogniser.words`: words, pieces between delimiters such as a DSN's ``user:PASSWORD@host``,
  quoted strings, ``KEY=value`` tails, runs of words, PEM blocks and wrapped base64/hex
  blocks), each distinct candidate decoded in the spellings that can have a recorded length
  and looked up by its keyed digest in a set: the cost per candidate is constant, whatever the
  number of values. The few candidates that match are then located (every occurrence) for
  their line numbers. This is how retired values and a baseline are matched.
- **literals** (store mode, values it can read): every spelling of every readable value
  (`keyroll.spellings.value_forms`, the redactor's) in one Aho–Corasick automaton over the
  text's UTF-8 bytes (``ahocorasick-rs``, extra ``scan``: Rust, well over 100 MB/s) or, without
  it, the redactor's compiled trie regex. It finds what candidates cannot cut out (a value
  glued inside a word) and every single-line spelling of a readable value, so the digest pass
  then tries plain candidates only at the lengths of the values it cannot read (destroyed
  ones): with 1,000 current values and a few destroyed ones, few candidates are hashed. The
  digest pass still sees every candidate that needs decoding (escapes, percent-encoding,
  blocks across lines) for every version. Spellings shorter than 8 characters count only as
  whole tokens, as the redactor masks them.

Every hit is exact: a digest match is a spelling of a known value with the certainty of
HMAC-SHA256, a literal match is the value's own spelling. There is no pattern and no entropy
guess, so nothing else is ever reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from keyroll.recognise import Recogniser
from keyroll.scan.index import Entry, ScanIndex
from keyroll.spellings import trie_regex, value_forms

__all__ = ["Hit", "Matcher"]

_MIN_LITERAL = 8
_FIND_AT_MOST = 16  # words located by str.find; more, by one Aho-Corasick pass
_WORD_CHAR = re.compile(r"[A-Za-z0-9]")
_WORD_BYTE = re.compile(rb"[A-Za-z0-9]")

#: A literal matcher: (start, end, entry) of each hit, and whether offsets count UTF-8 bytes.
Literal = Callable[[str], tuple[list[tuple[int, int, Entry]], bool]]


@dataclass(frozen=True, slots=True)
class Hit:
    """A version found at a 1-based line of a text."""

    line: int
    entry: Entry


class Matcher:
    """Finds the versions of ``index`` in texts.

    Args:
        index: what to look for.
        literal: also match readable values as literals (glued inside words); ignored for a
            baseline, which holds no value.
    """

    def __init__(self, index: ScanIndex, *, literal: bool = True) -> None:
        self.index = index
        self._literal: Literal | None = None
        self.engine = "digests"
        plain = index.shapes
        if literal and index.values:
            name, self._literal = _literal_matcher(index)
            self.engine += f"+{name}"
            plain = index.unread_shapes
        self._recogniser = Recogniser(index.key, index.digests, shapes=index.shapes,
                                      plain_shapes=plain if index.shapes is not None else None)

    def find(self, text: str) -> list[Hit]:
        """Each version found in ``text``, once per line, in line order."""
        if not text:
            return []
        words = self._recogniser.words(text)
        found = [(start, self.index.digests[words[word]]) for start, word in _locate(text, words)]
        hits: dict[tuple[int, Entry], None] = {}
        if found:
            lines = _line_numbers(text, [offset for offset, _ in found])
            for offset, entry in found:
                hits[(lines[offset], entry)] = None
        if self._literal is not None:
            literal, in_bytes = self._literal(text)
            if literal:
                data = _utf8(text) if in_bytes else None
                lines = (_line_numbers(data, [hit[0] for hit in literal]) if data is not None
                         else _line_numbers(text, [hit[0] for hit in literal]))
                for offset, _end, entry in literal:
                    hits[(lines[offset], entry)] = None
        return [Hit(line, entry) for line, entry in sorted(hits, key=lambda h: (h[0], h[1].name,
                                                                                  h[1].version))]


def _locate(text: str, words: Collection[str]) -> list[tuple[int, str]]:
    """Every occurrence (overlapping ones too) of each of ``words`` in ``text``: one
    Aho–Corasick pass when there are many (``ahocorasick-rs``), else ``str.find`` per word
    (a few C searches cost less than building an automaton)."""
    if len(words) > _FIND_AT_MOST:
        try:
            import ahocorasick_rs
        except ImportError:
            pass
        else:
            ordered = list(words)
            automaton = ahocorasick_rs.AhoCorasick(ordered)
            return [(start, ordered[number]) for number, start, _end
                    in automaton.find_matches_as_indexes(text, overlapping=True)]
    located = []
    for word in words:
        start = text.find(word)
        for _ in range(len(text)):  # every occurrence (bounded by the text's length)
            if start < 0:
                break
            located.append((start, word))
            start = text.find(word, start + 1)
    return located


def _line_numbers(haystack: str | bytes, offsets: list[int]) -> dict[int, int]:
    """The 1-based line of each offset of ``haystack``: newlines counted once, in order, from
    one offset to the next (no list of every newline of a large text)."""
    newline: Any = "\n" if isinstance(haystack, str) else b"\n"
    lines: dict[int, int] = {}
    line, previous = 1, 0
    for offset in sorted(set(offsets)):
        line += haystack.count(newline, previous, offset)
        lines[offset] = line
        previous = offset
    return lines


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _literal_matcher(index: ScanIndex) -> tuple[str, Literal]:
    by_form: dict[str, Entry] = {}
    short: set[str] = set()
    for value, entry in index.values:
        text = value.reveal()
        if not text:
            continue
        for form in value_forms(text):
            by_form.setdefault(form, entry)
            if len(form) < _MIN_LITERAL:
                short.add(form)

    if not by_form:  # only empty values: nothing to match literally
        return "none", lambda _text: ([], False)
    try:
        import ahocorasick_rs
    except ImportError:
        regex = re.compile(trie_regex(by_form))

        def alone(text: str, start: int, end: int) -> bool:
            before = start > 0 and _WORD_CHAR.match(text[start - 1]) is not None
            after = end < len(text) and _WORD_CHAR.match(text[end]) is not None
            return not (before or after)

        def with_regex(text: str) -> tuple[list[tuple[int, int, Entry]], bool]:
            found = []
            for match in regex.finditer(text):
                form = match.group()
                if form in short and not alone(text, match.start(), match.end()):
                    continue
                found.append((match.start(), match.end(), by_form[form]))
            return found, False

        return "trie", with_regex

    forms = sorted(by_form)
    automaton = ahocorasick_rs.BytesAhoCorasick([_utf8(form) for form in forms])
    entries = [(by_form[form], form in short) for form in forms]

    def alone_bytes(data: bytes, start: int, end: int) -> bool:
        before = start > 0 and _WORD_BYTE.match(data, start - 1) is not None
        after = end < len(data) and _WORD_BYTE.match(data, end) is not None
        return not (before or after)

    def with_automaton(text: str) -> tuple[list[tuple[int, int, Entry]], bool]:
        data = _utf8(text)
        found = []
        for number, start, end in automaton.find_matches_as_indexes(data, overlapping=True):
            entry, is_short = entries[number]
            if is_short and not alone_bytes(data, start, end):
                continue
            found.append((start, end, entry))
        return found, True

    return "aho-corasick", with_automaton
