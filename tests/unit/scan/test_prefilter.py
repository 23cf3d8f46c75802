"""The C cutter's prefilters (recognition tags, recorded sizes) and the runs it cuts.

The filters may only drop a candidate none of whose spellings (as `keyroll.recognise` computes
them) can be a recorded value: each test compares what the C module drops with what Python
would have tried, on hostile text with dense tag maps (a third of all tags), so that a filter
dropping too much fails here. SipHash is checked, in C and in Python, against the reference
vectors of the SipHash paper.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import random
import re
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keyroll.recognise as recognise
from keyroll import _cutter
from keyroll.model import SecretRef, SecretValue
from keyroll.recognise import Recogniser, derive_key, digest, shape
from keyroll.recognise_tag import siphash24, tag, tag_key, tag_map
from keyroll.scan import Entry, Matcher, ScanIndex, ValueState
from keyroll.stores import open_store
from keyroll.stores.base import RECOGNISE_TAG_PREFIX
from keyroll.stores.masterkey import create_key_file
from tests.scan_corpus import spellings

KEY = derive_key(b"p" * 32)
TAGS = tag_key(KEY)
#: SipHash-2-4 under the key 00 01 … 0f of the messages 00 01 … (n-1): the paper's vectors
#: (Aumasson and Bernstein, "SipHash: a fast short-input PRF", appendix A, and its
#: reference implementation's vectors.h)
VECTORS = {0: 0x726FDB47DD0E0E31, 1: 0x74F839C593DC67FD, 2: 0x0D6C8009D9A94F5A,
           7: 0xAB0200F58B01D137, 8: 0x93F5F5799A932462, 15: 0xA129CA6149BE45E5,
           16: 0x3F2ACC7F57C29BDB, 32: 0x7127512F72F27CCE, 63: 0x958A324CEB064572}


def test_siphash_in_c_and_in_python_gives_the_reference_vectors() -> None:
    key = bytes(range(16))
    for length, expected in VECTORS.items():
        assert siphash24(key, bytes(range(length))) == expected
        assert _cutter.siphash24(key, bytes(range(length))) == expected
    rng = random.Random(5)
    for _ in range(300):
        key, data = rng.randbytes(16), rng.randbytes(rng.randrange(0, 80))
        assert _cutter.siphash24(key, data) == siphash24(key, data)
    import keyroll.recognise_tag as module

    with_c = [tag(TAGS, word) for word in ("", "Pq7$x9a2f", "wörd", "\udcff")]
    with pytest.MonkeyPatch.context() as patch:  # the tag where the C module is not built
        patch.setattr(module, "_fast", None)
        assert [tag(TAGS, word) for word in ("", "Pq7$x9a2f", "wörd", "\udcff")] == with_c
    with pytest.raises(ValueError):
        siphash24(b"short", b"")
    with pytest.raises(ValueError):
        _cutter.siphash24(b"short", b"")
    with pytest.raises(ValueError):
        tag_map({1 << 16})


# --- the filters drop only what Python could not have matched -------------------------------

_PIECES = [*"aZ09+/=_-%.~\"'`:@,;&?#<>()[]{}|\\$", " ", "\t", "é", "€", "😀", "\udcff",
           "\ud800", "%2F", "%41", "%C3%A9", "%zz", "\\u0041", "\\u00e9", "\\ud83d\\ude00",
           "\\n", "\\\\", "\\'", "'\\''", "'\"'\"'", "QUJDREVGR0g=", "QUJD", "-_-_", "abcd",
           "0123456789abcdef", "://u:p@h", "a=b", "+"]


@functools.cache
def _dense_tags(seed: int) -> frozenset[int]:
    return frozenset(random.Random(seed).sample(range(1 << 16), 22_000))


def _tag(form: str | bytes) -> int:
    """`tag` by the C SipHash (the first test checks it against Python's)."""
    data = form if isinstance(form, bytes) else form.encode("utf-8", "surrogateescape")
    return _cutter.siphash24(TAGS, data) & 0xFFFF


def _cut(text: str, recogniser: Recogniser, filtered: bool
         ) -> tuple[set[str], set[str]]:
    fast = recogniser._fast
    assert fast is not None
    spaced = bool(recogniser._widths) and (" " in text or "\t" in text)
    escapes = "\\ " in text or "\\\t" in text
    args = ((recogniser._sizes_mask, recogniser._raw_sizes_mask, recogniser._tag_key,
             recogniser._tag_map, recogniser._all_tag_map) if filtered
            else (b"", b"", b"", b"", b""))
    plain, special, _, _ = _cutter.words(text, fast.shortest, fast.lengths_mask,
                                         recogniser._spaced_mask, recogniser._spaced_min,
                                         recogniser._widths, spaced, escapes, *args, 0)
    return plain, special


def _plain_spellings(word: str) -> list[bytes]:
    """What `_PlainBatches.find` may hash for a plain word (at some length it looks for)."""
    forms = [word.encode(), word.replace("+", " ").encode()]
    if re.fullmatch(r"[A-Za-z0-9+/_-]+", word) and len(word) % 4 != 1:
        padded = word + "=" * (-len(word) % 4)
        forms.append(binascii.a2b_base64(padded.translate(str.maketrans("-_", "+/"))))
    if re.fullmatch(r"[0-9A-Fa-f]+", word) and len(word) % 2 == 0:
        forms.append(bytes.fromhex(word))
    return forms


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.sampled_from(_PIECES), max_size=80),
       sizes=st.lists(st.tuples(st.integers(2, 14), st.integers(1, 2)), min_size=1, max_size=5),
       read=st.integers(0, 5), seed=st.integers(0, 3))
def test_the_filters_drop_only_candidates_without_a_spelling_of_a_recorded_size_and_tag(
        chunks: list[str], sizes: list[tuple[int, int]], read: int, seed: int) -> None:
    _check_filters("".join(chunks), sizes, read, seed)


def test_the_filters_on_long_hostile_texts() -> None:
    rng = random.Random(11)
    dropped = 0
    for round_ in range(40):
        text = "".join(rng.choice(_PIECES) for _ in range(600))
        sizes = [(rng.randrange(3, 16), rng.choice((1, 1, 2))) for _ in range(rng.randrange(1, 5))]
        dropped += _check_filters(text, sizes, rng.randrange(0, 3), round_ % 4)
    assert dropped > 1000  # the property is of something


def _check_filters(text: str, sizes: list[tuple[int, int]], read: int, seed: int) -> int:
    """Check what the filters drop from ``text``'s candidates; the number dropped."""
    shapes = [(chars, words, chars) for chars, words in sizes]
    plain_shapes = shapes[read:] or shapes[:1]  # the others "matched literally"
    plain_tags, every_tag = set(_dense_tags(seed)), set(_dense_tags(seed + 10))
    recogniser = Recogniser(KEY, ["0" * 64], shapes=shapes, plain_shapes=plain_shapes,
                            plain_tags=plain_tags, tags=every_tag)
    lengths = frozenset(size for size, _, _ in shapes)
    raw_sizes = {size for size, _, _ in plain_shapes}
    all_plain, all_special = _cut(text, recogniser, filtered=False)
    kept_plain, kept_special = _cut(text, recogniser, filtered=True)
    assert kept_plain <= all_plain and kept_special <= all_special
    # a spelling can only be a recorded value if it has a recorded size
    for word in all_plain - kept_plain:
        assert not any(_tag(form) in plain_tags for form in _plain_spellings(word)
                       if len(form) in raw_sizes), word
    for word in all_special - kept_special:
        for form in recognise._sized_spellings(word, lengths):
            if recognise._size(form) not in lengths:
                continue
            if form == word:  # as written: the literal matcher's, but for the plain values
                assert not (recognise._size(word) in raw_sizes and _tag(word) in plain_tags), word
            else:
                assert _tag(form) not in every_tag, (word, form)
    return len(all_plain - kept_plain) + len(all_special - kept_special)


def test_the_filters_keep_every_spelling_of_a_recorded_value() -> None:
    """With the exact tags of the values (as a store records them), every spelling planted in
    code is found, read or destroyed: the filters cut candidates, not findings."""
    values = ["Pq7$x9a2f", 'pa:ss@w/rd"with\'quotes\\and$dollars-0123', "wörd-ünïcode-€-01",
              "correct horse battery staple 1234", base64.b64encode(os.urandom(32)).decode()]
    code = Path(recognise.__file__).read_text().splitlines()[:150]
    for read in (set(), {0, 2, 4}):
        index = ScanIndex(KEY, tags=set(), unread_tags=set())
        for number, value in enumerate(values):
            entry = Entry(f"c{number}", "prod", 1, ValueState.CURRENT, f"{number:016x}")
            index.digests[digest(KEY, value)] = entry
            index._add_shape(" ".join(map(str, shape(value))), read=number in read)
            index._add_tag(f"{tag(TAGS, value):04x}", read=number in read)
            if number in read:
                index.values.append((SecretValue(value), entry))
        matcher = Matcher(index)
        assert matcher._recogniser._tag_map and matcher._recogniser._all_tag_map
        for number, value in enumerate(values):
            for form, lines in spellings(value).items():
                text = "\n".join([*code[:70], *lines, *code[70:]]) + "\n"
                found = {h.entry.name for h in matcher.find(text)}
                assert found == {f"c{number}"}, (value, form, read)


_LINES = ["QUJDREVGR0hJSktM", "  MDEyMzQ1Njc4OQ==", "KEY=QUJDREVG", "abcd\"',", "-----BEGIN X-----",
          "-----END X-----", "", "  ", "a'b", "x\\y", "%41%42", "é€😀", "\udcff", "0123456789abcdef",
          "ab cd", "+/+/", "-_-_", "==", "\\u0041bc"]
_BREAKS = ["\n", "\r\n", "\r", "\x0b", "\x1c", "\u2028", "\n\n"]


def test_the_block_filter_drops_only_blocks_without_a_spelling_of_a_recorded_size_and_tag(
        ) -> None:
    """Candidates across lines (`_cutter.blocks`): each dropped one has no spelling, as
    `_sized_spellings` computes them (stripped lines, joined base64 in every one-line
    spelling), of a recorded size and tag."""
    rng = random.Random(12)
    dropped = kept = 0
    for round_ in range(60):
        every_tag = set(_dense_tags(round_ % 4 + 20))
        sizes = sorted({rng.randrange(3, 30) for _ in range(rng.randrange(1, 6))})
        lengths = frozenset(sizes)
        recogniser = Recogniser(KEY, ["0" * 64], shapes=[(n, 1, n) for n in sizes],
                                tags=every_tag)
        texts = []
        for _ in range(60):
            parts = [rng.choice(_LINES) + rng.choice(["", rng.choice(_PIECES)])
                     for _ in range(rng.randrange(2, 6))]
            texts.append("".join(part + rng.choice(_BREAKS) for part in parts[:-1]) + parts[-1])
        texts = [t for t in texts if "\n" in t]
        survivors = set(_cutter.blocks(texts, recogniser._sizes_mask, recogniser._tag_key,
                                       recogniser._all_tag_map))
        assert survivors <= set(texts)
        for text in texts:
            if text in survivors:
                kept += 1
                continue
            dropped += 1
            for form in recognise._sized_spellings(text, lengths):
                if recognise._size(form) in lengths:
                    assert _tag(form) not in every_tag, (text, form)
    assert dropped > 300 and kept > 300, (dropped, kept)
    with pytest.raises(ValueError):
        _cutter.blocks(["a\nb"], b"\x01", b"", b"\x01" * 8192)
    with pytest.raises(TypeError):
        _cutter.blocks([b"a\nb"], b"\x01", b"", b"")  # type: ignore[list-item]


# --- the store records tags; an old record without one turns the prefilter off -------------

@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KEYROLL_MASTER_KEY", "")
    create_key_file(tmp_path / "master.key")
    return f"sqlite:{tmp_path / 'store.db'}"


def test_a_destroyed_version_keeps_its_tag_and_an_old_one_without_is_still_found(
        store_url: str) -> None:
    ref = SecretRef("prod", "api")
    secret = "Zq9$short"
    with open_store(store_url) as store:
        first = store.put_version(ref, SecretValue(secret)).number
        store.put_version(ref, SecretValue("x" * 40))
        store.destroy_version(ref, first)
        recorded = store.get_meta(f"{RECOGNISE_TAG_PREFIX}prod/api/{first}")
        assert recorded == f"{tag(tag_key(store.recognition_key()), secret):04x}"
        index = ScanIndex.from_store(store)
        assert index.unread_tags == {int(recorded, 16)}
        assert index.tags is not None and len(index.tags) == 2
        text = f"x = 1\ntoken: {secret}\n"
        assert [h.line for h in Matcher(index).find(text)] == [2]
        store.put_meta(f"{RECOGNISE_TAG_PREFIX}prod/api/{first}", None)  # as before tags
        old = ScanIndex.from_store(store)
        assert old.tags is None and old.unread_tags is None
        matcher = Matcher(old)
        assert matcher._recogniser._tag_map == b""
        assert [h.line for h in matcher.find(text)] == [2]


# --- runs and hostile text ------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.sampled_from([*string.printable, "é", "\xa0", "\u2003", "😀",
                                        "\udcff", "\ud800", "abcdefghij"]), max_size=200),
       minimum=st.integers(-1, 12))
def test_runs_are_the_whitespace_free_runs_of_the_text(chunks: list[str], minimum: int) -> None:
    text = "".join(chunks)
    data, in_data, in_text = _cutter.long_runs(text, minimum)
    runs = [(m.start(), m.group()) for m in re.finditer(rf"\S{{{max(1, minimum)},}}", text)]
    expected = b"".join(run.encode("utf-8", "surrogatepass") + b"\n" for _, run in runs)
    assert data == expected.replace("\udcff".encode("utf-8", "surrogatepass"), b"\xff")
    assert list(memoryview(in_text).cast("q")) == [start for start, _ in runs]
    starts = list(memoryview(in_data).cast("q"))
    assert [data[a:].split(b"\n", 1)[0] for a in starts] == [
        run.encode("utf-8", "surrogatepass").replace(
            "\udcff".encode("utf-8", "surrogatepass"), b"\xff") for _, run in runs]


def test_a_json_escaped_lone_surrogate_is_no_crash() -> None:
    """``\\ud800`` decodes (JSON) to a string no value can be: it once raised
    UnicodeEncodeError out of the scan and out of the hook redactor."""
    value = "abcdefghi"
    fast = Recogniser(KEY, [digest(KEY, value)], shapes=[shape(value)])
    slow = Recogniser(KEY, [digest(KEY, value)])
    text = 'x \\ud800bcdefg "\\udc00abc\\ud83d" y ' + value
    assert set(fast.words(text)) == {value}
    at = text.index(value)  # the line is a shell line (a backslash): masked whole
    assert [(s.start, s.end) for s in slow.find(text)] == [(0, len(text))]
    assert value not in slow.redact(text, lambda _: "***") and at > 0


def test_the_literal_matcher_searches_runs_cut_on_their_own_when_the_recogniser_does_not() -> None:
    """Shapes unknown (an old store): the recogniser tries every candidate without the C pass
    that copies the runs out, and the literal matcher cuts them itself (`long_runs`)."""
    readable, destroyed = "sk_live_0123456789abcdef0123", "gone-value-01234"
    index = ScanIndex(KEY)
    read = Entry("read", "prod", 2, ValueState.CURRENT, "f" * 16)
    index.digests[digest(KEY, readable)] = read
    index.values.append((SecretValue(readable), read))
    index._add_shape(" ".join(map(str, shape(readable))), read=True)
    index.digests[digest(KEY, destroyed)] = Entry("gone", "prod", 1, ValueState.RETIRED, "0" * 16)
    index._add_shape(None)  # destroyed before shapes were recorded
    matcher = Matcher(index)
    assert matcher._recogniser._fast is None and matcher._runs_min > 0
    text = f"x = 1\nglued{readable}glued and é\nthen {destroyed}\n😀 {readable}\n"
    assert [(h.line, h.entry.name) for h in matcher.find(text)] == [
        (2, "read"), (3, "gone"), (4, "read")]
