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
  it, the redactor's compiled trie regex. With the C cutter, the spellings without whitespace
  are searched only in the text's whitespace-free runs long enough to hold one (which the
  recogniser's pass copies out), those with whitespace by a second automaton over the whole
  text. It finds what candidates cannot cut out (a value
  glued inside a word) and every single-line spelling of a readable value, so the digest pass
  then tries plain candidates only at the lengths of the values it cannot read (destroyed
  ones), and only those with a spelling of one of their recorded tags
  (`keyroll.recognise_tag`): with 1,000 current values and a few destroyed ones, few
  candidates are hashed. The
  digest pass still sees every candidate that needs decoding (escapes, percent-encoding,
  blocks across lines) for every version. Spellings shorter than 8 characters count only as
  whole tokens, as the redactor masks them.

Every hit is exact: a digest match is a spelling of a known value with the certainty of
HMAC-SHA256, a literal match is the value's own spelling. There is no pattern and no entropy
guess, so nothing else is ever reported.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from keyroll.recognise import Recogniser, cutter_module
from keyroll.scan.index import Entry, ScanIndex
from keyroll.spellings import trie_regex, value_forms

__all__ = ["Hit", "Matcher"]

_MIN_LITERAL = 8
_FIND_AT_MOST = 16  # words located by str.find; more, by one Aho-Corasick pass
_WORD_CHAR = re.compile(r"[A-Za-z0-9]")
_WORD_BYTE = re.compile(rb"[A-Za-z0-9]")

#: Whitespace-free runs of a text (`keyroll._cutter.long_runs`), or None.
Runs = tuple[bytes, bytes, bytes] | None
#: A literal matcher: the (1-based line, entry) of each hit in a text, given its runs.
Literal = Callable[[str, Runs], list[tuple[int, Entry]]]


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
        self._runs_min = 0  # the literal matcher's runs, cut by the recogniser's pass
        self.engine = "digests"
        plain, tags = index.shapes, index.tags
        if literal and index.values:
            name, self._literal, self._runs_min = _literal_matcher(index)
            self.engine += f"+{name}"
            plain, tags = index.unread_shapes, index.unread_tags
        self._recogniser = Recogniser(index.key, index.digests, shapes=index.shapes,
                                      plain_shapes=plain if index.shapes is not None else None,
                                      plain_tags=tags if plain is not None else None,
                                      tags=index.tags)

    def find(self, text: str) -> list[Hit]:
        """Each version found in ``text``, once per line, in line order."""
        if not text:
            return []
        words, runs = self._recogniser.words_and_runs(text, self._runs_min)
        found = [(start, self.index.digests[words[word]]) for start, word in _locate(text, words)]
        hits: dict[tuple[int, Entry], None] = {}
        if found:
            lines = _line_numbers(text, [offset for offset, _ in found])
            for offset, entry in found:
                hits[(lines[offset], entry)] = None
        if self._literal is not None:
            for line, entry in self._literal(text, runs):
                hits[(line, entry)] = None
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


def _literal_matcher(index: ScanIndex) -> tuple[str, Literal, int]:
    """The name of the engine, the matcher, and the length of the runs it searches (0: none,
    it searches the whole text)."""
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
        return "none", lambda _text, _runs: [], 0
    try:
        import ahocorasick_rs
    except ImportError:
        regex = re.compile(trie_regex(by_form))

        def alone(text: str, start: int, end: int) -> bool:
            before = start > 0 and _WORD_CHAR.match(text[start - 1]) is not None
            after = end < len(text) and _WORD_CHAR.match(text[end]) is not None
            return not (before or after)

        def with_regex(text: str, _runs: Runs) -> list[tuple[int, Entry]]:
            found = []
            for match in regex.finditer(text):
                form = match.group()
                if form in short and not alone(text, match.start(), match.end()):
                    continue
                found.append((match.start(), by_form[form]))
            lines = _line_numbers(text, [offset for offset, _ in found])
            return [(lines[offset], entry) for offset, entry in found]

        return "trie", with_regex, 0

    # with the C cutter, the spellings without whitespace are looked for only inside the
    # text's whitespace-free runs long enough to hold one (`_cutter.long_runs`: a fraction of
    # a text's bytes), the others (values with spaces, PEM blocks) in the whole text
    cutter = cutter_module()
    runs = cutter.long_runs if cutter is not None else None
    spaced = sorted(f for f in by_form if runs is None or any(c.isspace() for c in f))
    solid = sorted(set(by_form) - set(spaced))
    shortest = min(map(len, solid), default=0)

    def automaton(forms: list[str]) -> tuple[Any, list[tuple[Entry, bool]]] | None:
        if not forms:
            return None
        return (ahocorasick_rs.BytesAhoCorasick([_utf8(form) for form in forms]),
                [(by_form[form], form in short) for form in forms])

    whole, inside = automaton(spaced), automaton(solid)

    def alone_bytes(data: bytes, start: int, end: int) -> bool:
        before = start > 0 and _WORD_BYTE.match(data, start - 1) is not None
        after = end < len(data) and _WORD_BYTE.match(data, end) is not None
        return not (before or after)

    def search(found: Any, data: bytes) -> list[tuple[int, Entry]]:
        matcher, entries = found
        hits = []
        for number, start, end in matcher.find_matches_as_indexes(data, overlapping=True):
            entry, is_short = entries[number]
            if not is_short or alone_bytes(data, start, end):
                hits.append((start, entry))
        return hits

    def with_automaton(text: str, cut: Runs) -> list[tuple[int, Entry]]:
        lined: list[tuple[int, Entry]] = []
        if whole is not None:
            data = _utf8(text)
            hits = search(whole, data)
            lines = _line_numbers(data, [offset for offset, _ in hits])
            lined += [(lines[offset], entry) for offset, entry in hits]
        if inside is not None and runs is not None:
            data, in_data, in_text = cut if cut is not None else runs(text, shortest)
            hits = search(inside, data)
            if hits:  # each hit's offset in the text: its run's start + the characters before
                starts, offsets = memoryview(in_data).cast("q"), memoryview(in_text).cast("q")
                located = []
                for offset, entry in hits:
                    run = bisect.bisect_right(starts, offset) - 1
                    before = data[starts[run]:offset].decode("utf-8", "surrogateescape")
                    located.append((offsets[run] + len(before), entry))
                lines = _line_numbers(text, [offset for offset, _ in located])
                lined += [(lines[offset], entry) for offset, entry in located]
        return lined

    return "aho-corasick", with_automaton, shortest if inside is not None else 0
