"""Find every version of a `ScanIndex` in a text, in one pass per text for all values.

Two matchers share the pass:

- **digests** (always): the recogniser's candidate tokens (`keyroll.recognise`,
  `Recogniser.words`: words, pieces between delimiters such as a DSN's ``user:PASSWORD@host``,
  quoted strings, ``KEY=value`` tails, runs of words, PEM blocks and wrapped base64/hex
  blocks), each distinct candidate decoded in the spellings that can have a recorded length
  and looked up by its keyed digest in a set: the cost per candidate is constant, whatever the
  number of values. The few candidates that match are then located (every occurrence) for
  their line numbers. This is how retired values and a baseline are matched.
- **literals** (store mode, values it can read): every spelling of every readable value in one
  Aho–Corasick automaton (``pyahocorasick``, extra ``scan``) or, without it, the redactor's
  compiled trie regex. It adds what candidates cannot cut out: a value glued inside a word.
  Spellings shorter than 8 characters count only as whole tokens, as the redactor masks them.

Every hit is exact: a digest match is a spelling of a known value with the certainty of
HMAC-SHA256, a literal match is the value's own spelling. There is no pattern and no entropy
guess, so nothing else is ever reported.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from keyroll.recognise import Recogniser
from keyroll.runtime.redaction import _forms, _trie_regex  # the redactor's own spellings
from keyroll.scan.index import Entry, ScanIndex

__all__ = ["Hit", "Matcher"]

_MIN_LITERAL = 8
_WORD_CHAR = re.compile(r"[A-Za-z0-9]")


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
        self._recogniser = Recogniser(index.key, index.digests, shapes=index.shapes)
        self._literal: Callable[[str], list[tuple[int, int, Entry]]] | None = None
        self.engine = "digests"
        if literal and index.values:
            name, self._literal = _literal_matcher(index)
            self.engine += f"+{name}"

    def find(self, text: str) -> list[Hit]:
        """Each version found in ``text``, once per line, in line order."""
        if not text:
            return []
        found: list[tuple[int, Entry]] = []
        for word, digest in self._recogniser.words(text).items():
            entry = self.index.digests[digest]
            start = text.find(word)
            for _ in range(len(text)):  # every occurrence (bounded by the text's length)
                if start < 0:
                    break
                found.append((start, entry))
                start = text.find(word, start + len(word))
        if self._literal is not None:
            found += [(start, entry) for start, _end, entry in self._literal(text)]
        if not found:
            return []
        newlines = [m.start() for m in re.finditer("\n", text)]
        hits: dict[tuple[int, Entry], None] = {}
        for offset, entry in found:
            hits[(bisect.bisect_right(newlines, offset - 1) + 1, entry)] = None
        return [Hit(line, entry) for line, entry in sorted(hits, key=lambda h: (h[0], h[1].name,
                                                                                  h[1].version))]


def _literal_matcher(index: ScanIndex) -> tuple[str, Callable[[str], list[tuple[int, int, Entry]]]]:
    by_form: dict[str, Entry] = {}
    short: set[str] = set()
    for value, entry in index.values:
        text = value.reveal()
        if not text:
            continue
        for form in _forms(text):
            by_form.setdefault(form, entry)
            if len(form) < _MIN_LITERAL:
                short.add(form)

    def alone(text: str, start: int, end: int) -> bool:
        before = start > 0 and _WORD_CHAR.match(text[start - 1]) is not None
        after = end < len(text) and _WORD_CHAR.match(text[end]) is not None
        return not (before or after)

    try:
        import ahocorasick
    except ImportError:
        regex = re.compile(_trie_regex(by_form))

        def with_regex(text: str) -> list[tuple[int, int, Entry]]:
            found = []
            for match in regex.finditer(text):
                form = match.group()
                if form in short and not alone(text, match.start(), match.end()):
                    continue
                found.append((match.start(), match.end(), by_form[form]))
            return found

        return "trie", with_regex

    automaton = ahocorasick.Automaton()
    for form, entry in by_form.items():
        automaton.add_word(form, (len(form), form in short, entry))
    automaton.make_automaton()

    def with_automaton(text: str) -> list[tuple[int, int, Entry]]:
        found = []
        for last, (length, is_short, entry) in automaton.iter(text):
            start, end = last + 1 - length, last + 1
            if is_short and not alone(text, start, end):
                continue
            found.append((start, end, entry))
        return found

    return "aho-corasick", with_automaton
