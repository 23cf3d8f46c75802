"""The scan matcher: every spelling, the fast path agreeing with the redactor's path, shapes
unknown (old stores), baselines refused when malformed, SARIF levels by state."""

from __future__ import annotations

import base64
import json
import random
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from keyroll.errors import UsageError
from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.recognise import Recogniser, derive_key, digest, shape
from keyroll.scan import Entry, Finding, Matcher, ScanIndex, ScanResult, ValueState, load_baseline
from tests.scan_corpus import noise, spellings

KEY = derive_key(b"s" * 32)
VALUES = [
    base64.b64encode(random.Random(1).randbytes(48)).decode(),
    'pa:ss@w/rd"with\'quotes\\and$dollars-0123',
    "correct horse battery staple 1234",
    generate("ed25519").reveal(),  # a PKCS#8 PEM block, generated at run time
]


def _index(shapes: bool = True) -> ScanIndex:
    index = ScanIndex(KEY, source="baseline")
    for number, value in enumerate(VALUES, start=1):
        entry = Entry(f"c{number}", "prod", 1, ValueState.CURRENT, f"{number:016x}")
        index.digests[digest(KEY, value)] = entry
        index._add_shape(" ".join(map(str, shape(value))) if shapes else None)
    return index


@pytest.mark.parametrize("shapes", [True, False])
def test_every_spelling_of_every_value_is_found_on_its_line(shapes: bool) -> None:
    matcher = Matcher(_index(shapes))
    for number, value in enumerate(VALUES, start=1):
        for form, lines in spellings(value).items():
            text = "first line\n" + "\n".join(lines) + "\nlast line\n"
            hits = matcher.find(text)
            assert {h.entry.name for h in hits} == {f"c{number}"}, form
            first = 3 if lines[0].endswith("|") else 2
            assert min(h.line for h in hits) == first, form


def test_words_finds_what_matches_finds_on_noise_with_planted_values() -> None:
    shapes = [shape(v) for v in VALUES]
    fast = Recogniser(KEY, [digest(KEY, v) for v in VALUES], shapes=shapes)
    slow = Recogniser(KEY, [digest(KEY, v) for v in VALUES])
    rng = random.Random(4)
    filler = noise(rng, [])
    lines = [next(filler) for _ in range(500)]
    for value in VALUES:
        for body in spellings(value).values():
            lines[rng.randrange(len(lines)):0] = body
    text = "\n".join(lines)
    assert set(fast.words(text).values()) == {d for _, d in slow.matches(text)}


def _store_index(read: set[int]) -> ScanIndex:
    """A store-mode index: the values numbered in ``read`` readable (literal matcher), the
    others destroyed (digest and shape only)."""
    index = ScanIndex(KEY, source="store")
    for number, value in enumerate(VALUES, start=1):
        entry = Entry(f"c{number}", "prod", 1, ValueState.CURRENT, f"{number:016x}")
        index.digests[digest(KEY, value)] = entry
        index._add_shape(" ".join(map(str, shape(value))), read=number in read)
        if number in read:
            index.values.append((SecretValue(value), entry))
    return index


@pytest.mark.parametrize("engine", ["aho-corasick", "trie"])
@pytest.mark.parametrize("read", [{1, 2}, {3, 4}, {1, 2, 3, 4}])
def test_store_mode_finds_read_and_destroyed_values_in_every_spelling(
        engine: str, read: set[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Readable values are matched literally and their plain spellings skipped by the digest
    pass, destroyed ones by digest only: together every spelling of each is still found."""
    if engine == "trie":
        monkeypatch.setitem(sys.modules, "ahocorasick_rs", None)  # the extra not installed
    matcher = Matcher(_store_index(read))
    assert matcher.engine == f"digests+{engine}"
    rng = random.Random(5)
    filler = noise(rng, [])
    for number, value in enumerate(VALUES, start=1):
        for form, lines in spellings(value).items():
            text = "\n".join([next(filler), *lines, next(filler)]) + "\n"
            hits = matcher.find(text)
            assert {h.entry.name for h in hits} == {f"c{number}"}, (form, number in read)
            first = 3 if lines[0].endswith("|") else 2
            assert min(h.line for h in hits) == first, form


def test_the_digest_pass_skips_plain_spellings_the_literal_matcher_covers() -> None:
    """With ``plain_shapes`` empty, a raw value is left to the literal matcher, while its
    escaped or wrapped spellings are still recognised by digest."""
    digests = [digest(KEY, v) for v in VALUES]
    covered = Recogniser(KEY, digests, shapes=[shape(v) for v in VALUES], plain_shapes=[])
    assert covered.words(f"token {VALUES[0]} end") == {}
    wrapped = "\n".join(spellings(VALUES[0])["base64-wrapped"])
    assert set(covered.words(f"x\n{wrapped}\ny\n").values()) == {digests[0]}
    escaped = spellings(VALUES[1])["json"][0]
    assert set(covered.words(escaped).values()) == {digests[1]}
    every = Recogniser(KEY, digests, shapes=[shape(v) for v in VALUES])
    assert set(every.words(f"token {VALUES[0]} end").values()) == {digests[0]}


def test_padded_base64_cut_by_a_slash_is_found_by_the_fast_path() -> None:
    """A base64 spelling with "/" inside and "=" padding has no "="-free piece of its full
    length: the fast path strips the padding itself (a regression the bench caught)."""
    value = "+:lfZ`(Z*_gZMnafy8],h#*{W{s;<?/["
    b64 = base64.b64encode(value.encode()).decode()
    assert "/" in b64 and b64.endswith("=")
    fast = Recogniser(KEY, [digest(KEY, value)], shapes=[shape(value)])
    assert fast._fast is not None
    assert fast.words(f"b64: {b64}\nnext line") == {b64.rstrip("="): digest(KEY, value)}


def test_nothing_is_found_in_noise_and_look_alikes() -> None:
    matcher = Matcher(_index())
    rng = random.Random(9)
    near = [VALUES[0][:-1], VALUES[0][:10] + "X" + VALUES[0][11:], quote(VALUES[1][:-2])]
    text = "\n".join([next(noise(rng, [])) for _ in range(3000)] + near)
    assert matcher.find(text) == []


def test_a_baseline_that_is_not_one_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "b.json"
    for content in ("not json", json.dumps({"format": "x"}),
                    json.dumps({"format": "keyroll-scan-baseline/1", "key": "!!", "versions": []}),
                    json.dumps({"format": "keyroll-scan-baseline/1", "key": "QUJDREVGR0hJSktMTU5PUA==",
                                "versions": [{"class": "a"}]})):
        bad.write_text(content)
        with pytest.raises(UsageError):
            load_baseline(bad)
    with pytest.raises(UsageError, match="export one"):
        load_baseline(tmp_path / "missing.json")


def test_exit_codes_and_sarif_levels_follow_the_state() -> None:
    def result(state: ValueState) -> ScanResult:
        entry = Entry("api", "prod", 3, state, "0123456789abcdef")
        return ScanResult(findings=[Finding("a.txt", 1, entry)])

    assert result(ValueState.CURRENT).exit_code(fail_on_retired=False) == 1
    assert result(ValueState.PENDING).exit_code(fail_on_retired=False) == 1
    assert result(ValueState.RETIRED).exit_code(fail_on_retired=False) == 0
    assert result(ValueState.RETIRED).exit_code(fail_on_retired=True) == 1
    assert result(ValueState.CURRENT).hints() == ["keyroll rotate api --env prod --incident"]
    levels = {s: result(s).to_sarif()["runs"][0]["results"][0]["level"]  # type: ignore[index]
              for s in ValueState}
    assert levels == {ValueState.CURRENT: "error", ValueState.PENDING: "error",
                      ValueState.PREVIOUS: "warning", ValueState.RETIRED: "note"}
