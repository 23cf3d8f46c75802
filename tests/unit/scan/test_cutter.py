"""The C candidate cutter (`keyroll._cutter`) against the regular expressions it replaces.

`Recogniser.words` cuts its candidates with `keyroll._cutter` when the package was built with
it, else with `Recogniser._cut` (regular expressions): both must cut exactly the same
candidates, on code, on the scan corpus and on hostile text (every whitespace Python knows,
backslashes, quotes, DSNs, tabs, ``\\r``, non-ASCII), and a value must be found on its line in
every spelling, read or destroyed, in store and baseline mode, with the cutter and without.
"""

from __future__ import annotations

import random
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keyroll.recognise as recognise
from keyroll import _cutter  # the dev install builds it: a failed build fails here
from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.recognise import Recogniser, derive_key, digest, shape
from keyroll.scan import Entry, Matcher, ScanIndex, ValueState
from tests.scan_corpus import noise, spellings

KEY = derive_key(b"c" * 32)
ROOT = Path(__file__).resolve().parents[3]
VALUES = [
    "Pq7$x9a2f",                                       # short, with "$"
    'pa:ss@w/rd"with\'quotes\\and$dollars-0123',       # every delimiter, quote and backslash
    "correct horse battery staple 1234",               # with spaces
    "sk_live_" + "0123456789abcdef" * 2 + "0a1b",      # an API key
    "wörd-ünïcode-välue-€-0123456789",                 # non-ASCII
    generate("ed25519").reveal(),                      # a PEM block, across lines
]


def _cut_both(recogniser: Recogniser, text: str) -> tuple[tuple[set[str], set[str]], ...]:
    fast = recogniser._fast
    assert fast is not None
    spaced = bool(recogniser._widths) and (" " in text or "\t" in text)
    escapes = "\\ " in text or "\\\t" in text
    plain, special, _, pieced = _cutter.words(text, fast.shortest, fast.lengths_mask,
                                              recogniser._spaced_mask, recogniser._spaced_min,
                                              recogniser._widths, spaced, escapes, b"", b"", b"",
                                              b"", b"", 0)
    assert set(pieced) == set(recognise._pieced(text))  # the shell lines quoted in pieces
    return (plain, special), recogniser._cut(text, spaced)


def _blocks_both(text: str, shortest: int, monkeypatch: pytest.MonkeyPatch
                 ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    by_c = list(recognise._block_candidates(text, shortest))
    with monkeypatch.context() as patch:
        patch.setattr(recognise, "_cutter", None)
        by_regex = list(recognise._block_candidates(text, shortest))
    return by_c, by_regex


def _shortest(recogniser: Recogniser) -> int:
    assert recogniser._fast is not None
    return recogniser._fast.shortest


def _recognisers(values: list[str]) -> list[Recogniser]:
    digests = [digest(KEY, v) for v in values]
    shapes = [shape(v) for v in values]
    return [Recogniser(KEY, digests, shapes=shapes),                    # baseline mode
            Recogniser(KEY, digests, shapes=shapes, plain_shapes=shapes[:1])]  # store mode


def _planted_text(rng: random.Random) -> str:
    filler = noise(rng, [])
    lines = [next(filler) for _ in range(400)]
    for value in VALUES:
        for body in spellings(value).values():
            lines[rng.randrange(len(lines)):0] = body
    return "\n".join(lines)


def test_the_cutter_is_the_one_in_use() -> None:
    assert recognise._cutter is _cutter


def test_c_and_regex_cut_the_same_candidates_in_code_and_in_the_scan_corpus(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sources = sorted((ROOT / "src" / "keyroll").rglob("*.py"))
    texts = [p.read_text() for p in sources[:40]] + [_planted_text(random.Random(2))]
    cut = 0
    for recogniser in _recognisers(VALUES):
        for text in texts:
            by_c, by_regex = _cut_both(recogniser, text)
            assert by_c == by_regex
            cut += len(by_c[0]) + len(by_c[1])
            c_blocks, regex_blocks = _blocks_both(text, _shortest(recogniser), monkeypatch)
            assert c_blocks == regex_blocks
    assert cut > 1000  # the comparison is of something


_PIECES = [*"aZ09+/=_-%.~\"'`:@,;&?#<>()[]{}|\\$", " ", "\t", "\r", "\n", "\x0b", "\x1c",
           "\xa0", "\u2003", "\u2028", "é", "€", "😀", "://", "u:p@h", "a=b", "\\ ", "'\\''",
           "'\"'\"'", "=\n", "abcd", "QUJDRA==", "0123456789abcdef", "-----BEGIN X-----\n",
           "postgresql://app:p@ss@db:5432/x", "://u:a@b@c"]


@settings(max_examples=400, deadline=None)
@given(chunks=st.lists(st.sampled_from(_PIECES), max_size=120),
       sizes=st.lists(st.tuples(st.integers(2, 12), st.integers(1, 3)), min_size=1, max_size=4))
def test_c_and_regex_cut_the_same_candidates_in_hostile_text(
        chunks: list[str], sizes: list[tuple[int, int]]) -> None:
    text = "".join(chunks)
    shapes = [(chars, words, chars) for chars, words in sizes]
    recogniser = Recogniser(KEY, ["0" * 64], shapes=shapes)
    by_c, by_regex = _cut_both(recogniser, text)
    assert by_c == by_regex
    with pytest.MonkeyPatch.context() as patch:
        c_blocks, regex_blocks = _blocks_both(text, _shortest(recogniser), patch)
    assert c_blocks == regex_blocks


def _index(read: set[int], source: str) -> ScanIndex:
    index = ScanIndex(KEY, source=source)
    for number, value in enumerate(VALUES, start=1):
        entry = Entry(f"c{number}", "prod", 1, ValueState.CURRENT, f"{number:016x}")
        index.digests[digest(KEY, value)] = entry
        index._add_shape(" ".join(map(str, shape(value))), read=number in read)
        if number in read:
            index.values.append((SecretValue(value), entry))
    return index


@pytest.mark.parametrize("cutter", ["c", "regex"])
@pytest.mark.parametrize(("source", "read"), [("baseline", set()), ("store", set()),
                                              ("store", {1, 2, 3, 4, 5, 6})])
def test_every_spelling_planted_in_code_is_found_on_its_line_and_nothing_else(
        cutter: str, source: str, read: set[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted among this repository's own sources (where most lines hold no word long enough
    for a value), each spelling of each value is found on its own line, whether the value is
    readable (literal matcher) or destroyed / in a baseline (digests only)."""
    if cutter == "regex":
        monkeypatch.setattr(recognise, "_cutter", None)
    matcher = Matcher(_index(read, source))
    code = (ROOT / "src" / "keyroll" / "recognise.py").read_text().splitlines()[:200]
    for number, value in enumerate(VALUES, start=1):
        for form, lines in spellings(value).items():
            text = "\n".join([*code[:100], *lines, *code[100:]]) + "\n"
            hits = matcher.find(text)
            first = 102 if lines[0].endswith("|") else 101
            assert {h.entry.name for h in hits} == {f"c{number}"}, form
            assert min(h.line for h in hits) == first, form
            assert max(h.line for h in hits) <= 100 + len(lines), form


def test_windows_need_as_many_words_as_the_value() -> None:
    """Runs of words are tried at a value's length and word count only: a 33-character run of
    three words is no candidate for a five-word value of 33 characters, one of five words is."""
    value = VALUES[2]
    assert shape(value) == (33, 5, 33)
    recogniser = Recogniser(KEY, [digest(KEY, value)], shapes=[shape(value)])
    three, five = "abcdefghijk lmnopqrstuv wxyz01234", "abcde fghij klmno pqrst 012345678"
    assert len(three) == len(five) == 33
    plain, _ = _cut_both(recogniser, f"x {three} y\nx {five} y\n")[0]
    assert five in plain
    assert three not in plain


def test_bad_arguments_raise_instead_of_crashing() -> None:
    with pytest.raises(TypeError):
        _cutter.words("text", 3, b"", b"", 3, ((1,),), True, False,  # type: ignore[arg-type]
                      b"", b"", b"", b"", b"", 0)
    with pytest.raises(ValueError):
        _cutter.words("text", 3, b"", b"", 3, ((1, 1),), True, False, b"", b"", b"", b"", b"", 0)
    with pytest.raises(ValueError, match="65,536-bit map"):
        _cutter.words("text", 3, b"", b"", 3, (), True, False, b"", b"", b"k" * 16, b"\xff", b"",
                      0)
    with pytest.raises(ValueError, match="65,536-bit map"):
        _cutter.words("text", 3, b"", b"", 3, (), True, False, b"", b"", b"k", bytes(8192), b"",
                      0)
    assert _cutter.words("", 3, b"\x01" * 8, b"", 3, (), False, False, b"", b"", b"", b"",
                         b"", 0) == (set(), set(), None, [])
    assert _cutter.runs("", 3) == []
    text = "".join(random.Random(1).choice(string.printable) for _ in range(20_000))
    assert _cutter.words(text, 1, b"\x01" * 64, b"\x01" * 64, 1, ((5, 2),), True, True,
                         b"\x01" * 64, b"\x01" * 8, b"k" * 16, b"\xff" * 8192,
                         b"\x01" * 8192, 4)


@settings(max_examples=400, deadline=None)
@given(chunks=st.lists(st.sampled_from([*string.printable.replace("\n", ""), "é", "€",
                                        "\udcff", "%2F", "%3D", "\\/", "'\\''", "\\u00e9",
                                        "QUJD", "-_"]), min_size=1, max_size=30),
       lengths=st.frozensets(st.integers(1, 40), min_size=1, max_size=8))
def test_sized_decoding_yields_the_spellings_of_a_recorded_size(chunks: list[str],
                                                                lengths: frozenset[int]) -> None:
    """The decoding fast path (sizes checked as forms come, base64 without its wrappers) finds
    exactly the spellings of `_spellings` that have a recorded size."""
    text = "".join(chunks) + "%"  # a candidate that needs decoding
    expected = {form for form in recognise._spellings(text) if recognise._size(form) in lengths}
    assert set(recognise._sized_decoded(text, lengths)) == expected


_FUZZ = r'''
import random, sys
from keyroll import _cutter
try:  # a window of fewer than 2 words once crashed the module
    _cutter.words("\t", 4, b"&", b"", 19, ((5, 0),), True, True, b"", b"", b"", b"", b"", 0)
except ValueError as error:
    assert "at least 2 characters and 2 words" in str(error), error
else:
    raise AssertionError("a window of 0 words was accepted")
rng = random.Random(int(sys.argv[1]))
alphabet = "ab=/+-_%\\\"' \t\n\r\x00\u00e9\u20ac\U0001f600:@$.;,()[]{}<>|`#?&-----BEGIN KEY-----"
for _ in range(3000):
    text = "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 2, 5, 50, 500])))
    masks = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 64, 512])))
             for _ in range(2)]
    windows = tuple((rng.randrange(-2, 50), rng.randrange(-2, 50))
                    for _ in range(rng.randrange(0, 4)))
    sizes = [bytes(rng.randrange(2) for _ in range(rng.choice([0, 1, 64, 300])))
             for _ in range(2)]
    tags = bytes(rng.randrange(256) for _ in range(8192)) if rng.random() < .5 else b""
    try:
        _cutter.words(text, rng.choice([-1, 0, 1, 4, 9, 40]), masks[0], masks[1],
                      rng.randrange(-1, 20), windows, rng.random() < .5, rng.random() < .5,
                      sizes[0], sizes[1], b"k" * 16 if tags else b"", tags,
                      tags[::-1], rng.choice([-1, 0, 1, 9]))
    except ValueError:
        pass
    _cutter.long_runs(text, rng.choice([-1, 0, 1, 4, 9]))
    _cutter.runs(text, rng.choice([-1, 0, 1, 4, 9]))
'''


@pytest.mark.parametrize("seed", [7, 8])
def test_arguments_outside_what_recognise_passes_raise_and_never_crash(seed: int) -> None:
    """The C module checks its arguments (in a child: a crash must fail the test, not the
    suite)."""
    done = subprocess.run([sys.executable, "-c", _FUZZ, str(seed)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]  # a segfault is -11
