"""Checking the journal at scale: a verified-head checkpoint, incremental and full checks.

A full check (`check_full`) walks the whole hash chain, as `Journal.verify` does. At 100,000
records that is every entry read and hashed, too slow for every dashboard page and every
``/metrics`` scrape. So a full check that passes (and every incremental check run by a writer:
``keyroll audit verify``, each ``keyroll serve`` tick) stores a **checkpoint**: the sequence
number and hash of the last entry it verified, when, and a MAC. An incremental check
(`check_recent`) then reads only the checkpoint's own entry and what follows it:

- the checkpoint's entry must still be there with the hash the checkpoint names, so a rewrite
  of any record before it (recomputing the hashes up to the head, or cutting the journal back)
  that reaches the checkpoint's entry is found;
- every entry after it is checked as the full walk checks it.

What a checkpoint does **not** prove: that nothing before it was edited since it was made. An
edit of a record before the checkpoint that leaves the checkpoint's entry alone (its hash no
longer matching, or the link to it broken) is found only by the next full check; that is why
`keyroll serve` runs one on a schedule (``--full-check-every``, default 1 h) and every check's
result says when the last full check ran and what it found. A full check that fails leaves the
checkpoint where it was and is reported by every later incremental check until a full check
passes again (after the journal was restored).

The checkpoint and the last full check's result are kept in the store's bookkeeping
(`CHECKPOINT_KEY`, `FULL_CHECK_KEY`) with an HMAC-SHA256 under a key derived from the store's
recognition key (`Store.recognition_key`): on the local store that key comes from the master
key, so someone who can edit the SQLite file but lacks the master key cannot move the
checkpoint past an edit or forge a "full check passed"; a checkpoint that fails its MAC is
reported as tampering and the check falls back to the full walk. On OpenBao the key is kept in
the bookkeeping area, as protected as the journal itself: a token that can rewrite the journal
can rewrite the checkpoint too, which the full check still finds unless the whole chain was
rebuilt from genesis. Against that (on any store) pin the head hash elsewhere and pass it back
(``keyroll audit verify --expect-head``; the notify events carry it).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keyroll.audit import ChainWalk, Journal, VerifyReport, chain_hash
from keyroll.errors import KeyrollError, StoreForbidden
from keyroll.model import utcnow
from keyroll.stores.base import Store

__all__ = ["CHECKPOINT_KEY", "FULL_CHECK_KEY", "Checkpoint", "FullCheck", "JournalCheck",
           "check_full", "check_recent", "last_full_check"]

#: Bookkeeping key of the verified-head checkpoint.
CHECKPOINT_KEY = "journal:checkpoint"
#: Bookkeeping key of the last full check's result.
FULL_CHECK_KEY = "journal:last-full-check"
_MAC_CONTEXT = b"keyroll journal checkpoint v1"
_SHOWN_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Entries 1 … ``seq`` were verified at ``at``; entry ``seq`` had hash ``hash``."""

    seq: int
    hash: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "at": self.at.isoformat()}

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Checkpoint:
        return cls(int(doc["seq"]), str(doc["hash"]), datetime.fromisoformat(doc["at"]))


@dataclass(frozen=True, slots=True)
class FullCheck:
    """The result of the last full check: when, by whom, and what it found."""

    at: datetime
    ok: bool
    count: int
    head: str
    problems: tuple[str, ...]
    by: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "ok": self.ok, "count": self.count,
                "head": self.head, "problems": list(self.problems), "by": self.by}

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> FullCheck:
        return cls(datetime.fromisoformat(doc["at"]), bool(doc["ok"]), int(doc["count"]),
                   str(doc["head"]), tuple(str(p) for p in doc["problems"]), str(doc["by"]))


@dataclass(frozen=True, slots=True)
class JournalCheck:
    """What a check found.

    Attributes:
        report: count, head hash and every problem (``report.ok``: nothing wrong).
        mode: ``full`` (the whole chain walked) or ``incremental`` (from ``since`` on).
        since: the checkpoint's sequence number the walk started after (0 for a full walk).
        walked: how many entries were read and checked.
        last_full: the last recorded full check (None: never ran, or unreadable).
        checkpoint: the verified head after this check (the caller may keep it as an anchor
            for its next check); None when the check failed.
    """

    report: VerifyReport
    mode: str
    since: int
    walked: int
    last_full: FullCheck | None
    checkpoint: Checkpoint | None

    @property
    def ok(self) -> bool:
        return self.report.ok

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "count": self.report.count, "head": self.report.head,
                "problems": list(self.report.problems), "mode": self.mode, "since": self.since,
                "walked": self.walked,
                "last_full_check": self.last_full.to_json() if self.last_full else None,
                "checkpoint": self.checkpoint.to_json() if self.checkpoint else None}


def _mac_key(store: Store) -> bytes:
    return hmac.new(store.recognition_key(), _MAC_CONTEXT, hashlib.sha256).digest()


def _sealed(store: Store, doc: dict[str, Any]) -> str:
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    mac = hmac.new(_mac_key(store), body.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"doc": doc, "mac": mac}, sort_keys=True, separators=(",", ":"))


class _Forged(Exception):
    """A bookkeeping value that fails its MAC or does not parse."""


def _opened(store: Store, key: str) -> dict[str, Any] | None:
    text = store.get_meta(key)
    if text is None:
        return None
    try:
        outer = json.loads(text)
        doc = outer["doc"]
        body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        want = hmac.new(_mac_key(store), body.encode(), hashlib.sha256).hexdigest()
        if not isinstance(outer["mac"], str) or not hmac.compare_digest(want, outer["mac"]):
            raise _Forged(key)
    except (ValueError, KeyError, TypeError):
        raise _Forged(key) from None
    if not isinstance(doc, dict):
        raise _Forged(key)
    return doc


def _stored_checkpoint(store: Store) -> Checkpoint | None:
    doc = _opened(store, CHECKPOINT_KEY)
    try:
        return Checkpoint.parse(doc) if doc is not None else None
    except (ValueError, KeyError, TypeError):
        raise _Forged(CHECKPOINT_KEY) from None


def last_full_check(store: Store) -> FullCheck | None:
    """The last recorded full check, or None (never ran, or its record fails its MAC: a
    check reports that as a problem)."""
    try:
        doc = _opened(store, FULL_CHECK_KEY)
        return FullCheck.parse(doc) if doc is not None else None
    except (_Forged, ValueError, KeyError, TypeError):
        return None


def _write_checkpoint(store: Store, point: Checkpoint) -> None:
    """Store ``point`` unless the stored checkpoint is already as far (last writer wins
    otherwise: a lower checkpoint written by a slower checker only means more work later)."""
    try:
        current = _stored_checkpoint(store)
    except _Forged:
        current = None
    if current is not None and current.seq >= point.seq:
        return
    store.put_meta(CHECKPOINT_KEY, _sealed(store, point.to_json()))


def check_full(journal: Journal, *, record: bool = True, now: datetime | None = None
               ) -> JournalCheck:
    """Walk the whole chain; with ``record``, store the result and, when it passes,
    re-anchor the checkpoint at the head (see the module docstring).

    Args:
        journal: the journal (its ``actor`` is recorded as who ran the check).
        record: write the result and the checkpoint (False: read-only, e.g. the dashboard).
        now: when (default: now).
    """
    store = journal.store
    moment = now or utcnow()
    report = journal.verify()
    result = FullCheck(moment, report.ok, report.count, report.head,
                       report.problems[:_SHOWN_PROBLEMS], journal.actor)
    point = Checkpoint(report.count, report.head, moment) if report.ok else None
    if record:
        try:
            store.put_meta(FULL_CHECK_KEY, _sealed(store, result.to_json()))
            if point is not None:
                store.put_meta(CHECKPOINT_KEY, _sealed(store, point.to_json()))
        except StoreForbidden:  # a read-only handle: the walk's result stands, unrecorded
            return JournalCheck(report, "full", 0, report.count, last_full_check(store), point)
    return JournalCheck(report, "full", 0, report.count, result if record else
                        last_full_check(store), point)


def check_recent(
    journal: Journal,
    *,
    anchor: Checkpoint | None = None,
    advance: bool = False,
    now: datetime | None = None,
) -> JournalCheck:
    """Verify only what follows the checkpoint (or ``anchor``, if later); the whole chain
    when there is no checkpoint yet.

    Args:
        journal: the journal.
        anchor: a checkpoint this process verified itself (kept in memory, so unsigned): the
            dashboard passes the previous request's, so a store whose stored checkpoint lags
            is not re-read from it on every page.
        advance: store the new verified head as the checkpoint when the check passes (writers:
            ``keyroll audit verify``, ``keyroll serve``; never the read-only dashboard).
        now: when (default: now).

    Returns:
        The check; its problems include a failed last full check and a forged checkpoint.
    """
    store = journal.store
    moment = now or utcnow()
    problems: list[str] = []
    try:
        stored = _stored_checkpoint(store)
    except _Forged:
        stored = None
        problems.append("the verified-head checkpoint fails its MAC: it was edited outside "
                        "keyroll; the whole chain was checked instead")
    try:
        full_doc = _opened(store, FULL_CHECK_KEY)
        last_full = FullCheck.parse(full_doc) if full_doc is not None else None
    except (_Forged, ValueError, KeyError, TypeError):
        last_full = None
        problems.append("the record of the last full check fails its MAC: it was edited "
                        "outside keyroll; run `keyroll audit verify --full`")
    start = stored
    if anchor is not None and (start is None or anchor.seq > start.seq):
        start = anchor
    if start is None:
        # nothing verified yet: this is a full check (recorded as one by a writer)
        full = check_full(journal, record=advance, now=moment)
        report = full.report
        merged = VerifyReport(report.count, report.head, (*problems, *report.problems))
        return JournalCheck(merged, "full", 0, full.walked, full.last_full,
                            full.checkpoint if merged.ok else None)
    walk = ChainWalk(start.hash, start.seq + 1)
    mode, since = "incremental", start.seq
    # one range read from the verified head on: its record first (still what was verified?),
    # then what follows it
    entries = iter(store.audit_entries(max(start.seq, 1)))
    if start.seq > 0:
        found = next(entries, None)
        if found is not None and found.seq != start.seq:  # the head's record is gone
            entries = itertools.chain([found], entries)
            found = None
        if (found is None or found.hash != start.hash
                or chain_hash(found.prev_hash, found.payload) != start.hash):
            problems.append(
                f"record {start.seq}, verified at {start.at:%Y-%m-%d %H:%M:%S} UTC, is no "
                "longer what was verified (edited, removed, or the journal before it "
                "rewritten): run `keyroll audit verify --full`"
            )
    for entry in entries:
        walk.feed(entry)
    report = walk.report()
    if last_full is not None and not last_full.ok:
        first = last_full.problems[0] if last_full.problems else "problems"
        problems.append(f"the last full check ({last_full.at:%Y-%m-%d %H:%M:%S} UTC) failed: "
                        f"{first}")
    merged = VerifyReport(report.count, report.head, (*problems, *report.problems))
    point = Checkpoint(report.count, report.head, moment) if merged.ok else None
    if advance and point is not None:
        with contextlib.suppress(KeyrollError):  # a read-only handle: the check stands
            _write_checkpoint(store, point)
    return JournalCheck(merged, mode, since, walk.walked, last_full, point)
