"""The audit journal: append-only, hash-chained records of everything keyroll did.

Each record is canonical JSON (sorted keys, no spaces) holding its own sequence number; its
hash is ``sha256(prev_hash || "\\n" || payload)`` and the first record links to 64 zeros. So an
edited record no longer matches its hash, and a deleted, inserted or reordered record breaks
either the numbering or the chain. `Journal.verify` walks the whole journal and names each
break. (A chain cannot prove that nothing was cut off the *end*: `verify` returns the head hash,
which you can pin elsewhere and pass back with ``expect_head``.)

Records hold fingerprints, never values. Evidence (hook output, probe results) is redacted by
the caller before it gets here.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyroll.errors import AuditTampered, Conflict, LeaseLost
from keyroll.model import SecretRef, utcnow
from keyroll.stores.base import AuditEntry, Fence, Store

__all__ = ["GENESIS", "AuditRecord", "ChainWalk", "Journal", "VerifyReport", "chain_hash",
           "current_actor", "record_matches"]

GENESIS = "0" * 64
_APPEND_ATTEMPTS = 20


def current_actor(environ: Mapping[str, str] | None = None) -> str:
    """Who is acting: ``KEYROLL_ACTOR`` if set (CI, bots), else the OS user."""
    env = os.environ if environ is None else environ
    if env.get("KEYROLL_ACTOR"):
        return env["KEYROLL_ACTOR"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid:{os.getuid()}"


def chain_hash(prev_hash: str, payload: str) -> str:
    """An entry's hash: ``sha256(prev_hash || "\\n" || payload)``, hex."""
    return hashlib.sha256(f"{prev_hash}\n{payload}".encode()).hexdigest()


_chain = chain_hash


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One thing that happened.

    Attributes:
        seq: position in the journal (1-based).
        time: when (UTC).
        actor: who (`current_actor`).
        action: what, dotted (``secret.generate``, ``rotation.promote``, ``hook.verify`` …).
        environment, secret: which secret, if any.
        version: which version, if any.
        fingerprints: fingerprints involved (never values).
        evidence: redacted proof: hook output, probe results, counts.
        outcome: ``ok``, ``failed``, ``refused``, ``rolled-back`` …
        rotation: the rotation id, if the action belongs to one.
    """

    seq: int
    time: datetime
    actor: str
    action: str
    environment: str | None = None
    secret: str | None = None
    version: int | None = None
    fingerprints: tuple[str, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = "ok"
    rotation: str | None = None

    def to_json(self) -> str:
        doc = {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "environment": self.environment,
            "secret": self.secret,
            "version": self.version,
            "fingerprints": list(self.fingerprints),
            "evidence": dict(self.evidence),
            "outcome": self.outcome,
            "rotation": self.rotation,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, payload: str) -> AuditRecord:
        doc = json.loads(payload)
        return cls(
            seq=int(doc["seq"]),
            time=datetime.fromisoformat(doc["time"]),
            actor=doc["actor"],
            action=doc["action"],
            environment=doc.get("environment"),
            secret=doc.get("secret"),
            version=doc.get("version"),
            fingerprints=tuple(doc.get("fingerprints") or ()),
            evidence=doc.get("evidence") or {},
            outcome=doc.get("outcome", "ok"),
            rotation=doc.get("rotation"),
        )


def record_matches(
    record: AuditRecord,
    *,
    environment: str | None = None,
    secret: str | None = None,
    rotation: str | None = None,
    action: str | None = None,
) -> bool:
    """Whether ``record`` passes every filter given (`Journal.select`'s rule)."""
    return ((environment is None or record.environment == environment)
            and (secret is None or record.secret == secret)
            and (rotation is None or record.rotation == rotation)
            and (action is None or record.action == action
                 or record.action.startswith(action + ".")))


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `Journal.verify` found: the record count, the head hash, and every break."""

    count: int
    head: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


class ChainWalk:
    """Checks entries fed in stored order against the chain, from genesis or from a verified
    point (``prev_hash`` = the hash of entry ``expected_seq - 1``).

    Args:
        prev_hash: the hash the first entry fed must link to.
        expected_seq: the sequence number the first entry fed must carry.
    """

    def __init__(self, prev_hash: str = GENESIS, expected_seq: int = 1) -> None:
        self.prev_hash = prev_hash
        self.expected_seq = expected_seq
        self.count = expected_seq - 1
        self.walked = 0
        self.problems: list[str] = []
        self.seen_heads = {prev_hash}

    def feed(self, entry: AuditEntry) -> None:
        """Check one entry (the next in stored order) and name what is wrong with it."""
        problems = self.problems
        expected_seq = self.expected_seq
        if entry.seq > expected_seq:
            gap = f"{expected_seq}" if entry.seq == expected_seq + 1 else (
                f"{expected_seq}-{entry.seq - 1}"
            )
            problems.append(f"record {gap} is missing: deleted from the journal")
        elif entry.seq < expected_seq:
            problems.append(
                f"record {entry.seq} appears again after record {expected_seq - 1}: "
                "inserted or reordered"
            )
        if _chain(entry.prev_hash, entry.payload) != entry.hash:
            problems.append(f"record {entry.seq} was edited: its content does not match its hash")
        else:
            try:
                inner = json.loads(entry.payload).get("seq")
            except (ValueError, AttributeError):
                inner = None
            if inner != entry.seq:
                problems.append(
                    f"record {entry.seq} carries sequence number {inner}: moved from its "
                    "place (inserted or reordered)"
                )
        if entry.prev_hash != self.prev_hash and entry.seq == expected_seq:
            problems.append(
                f"record {entry.seq} does not link to record {entry.seq - 1}: a record "
                "before it was edited, inserted or reordered"
            )
        self.prev_hash = entry.hash
        self.seen_heads.add(entry.hash)
        self.expected_seq = max(expected_seq, entry.seq) + 1
        self.walked += 1
        self.count += 1

    def report(self, *, expect_head: str | None = None) -> VerifyReport:
        """What the walk found (``expect_head``: a pinned head that must have been seen)."""
        problems = list(self.problems)
        if expect_head is not None and expect_head not in self.seen_heads:
            problems.append(
                f"the pinned head {expect_head[:16]}… is not in the journal: records were cut off "
                "the end or the journal was rewritten"
            )
        return VerifyReport(self.count, self.prev_hash, tuple(problems))


class Journal:
    """Appends to and verifies the journal kept in a `Store`.

    Args:
        store: where the entries live.
        actor: who acts (default `current_actor`).
        clock: the time source (default `utcnow`); tests pass a frozen one.
    """

    def __init__(
        self,
        store: Store,
        *,
        actor: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.actor = actor or current_actor()
        self.clock = clock

    def append(
        self,
        action: str,
        *,
        ref: SecretRef | None = None,
        version: int | None = None,
        fingerprints: Sequence[str] = (),
        evidence: Mapping[str, Any] | None = None,
        outcome: str = "ok",
        rotation: str | None = None,
        fence: Fence | None = None,
    ) -> AuditRecord:
        """Append one record, linked to the current tail. Retries when another writer wins.

        Args:
            fence: the secret and lease the caller works under (the store refuses the append
                once that lease is lost).

        Raises:
            Conflict: the journal kept moving for every attempt (heavy contention).
            LeaseLost: ``fence`` is no longer the secret's lock.
        """
        for _ in range(_APPEND_ATTEMPTS):
            tail = self.store.audit_tail()
            seq = 1 if tail is None else tail.seq + 1
            prev_hash = GENESIS if tail is None else tail.hash
            record = AuditRecord(
                seq=seq,
                time=self.clock(),
                actor=self.actor,
                action=action,
                environment=ref.environment if ref else None,
                secret=ref.name if ref else None,
                version=version,
                fingerprints=tuple(fingerprints),
                evidence=dict(evidence or {}),
                outcome=outcome,
                rotation=rotation,
            )
            payload = record.to_json()
            try:
                self.store.audit_append(AuditEntry(seq, payload, prev_hash, _chain(prev_hash, payload)),
                                        fence=fence)
            except LeaseLost:
                raise
            except Conflict:
                continue
            return record
        raise Conflict("the audit journal kept moving while appending; retry the command")

    def records(self) -> Iterator[AuditRecord]:
        """Every record in stored order (unverified: call `verify` to check the chain)."""
        for entry in self.store.audit_entries():
            yield AuditRecord.from_json(entry.payload)

    def select(
        self,
        *,
        environment: str | None = None,
        secret: str | None = None,
        rotation: str | None = None,
        action: str | None = None,
        limit: int | None = None,
    ) -> tuple[int, list[AuditRecord]]:
        """The records matching every filter given: how many there are, and the last
        ``limit`` of them (all when None) in stored order (unverified, like `records`).

        ``action`` matches itself and its dotted children (``rotation`` matches
        ``rotation.promote``). The dashboard's journal answers this from an index instead of
        reading every record.
        """
        kept: deque[AuditRecord] = deque(maxlen=limit)
        total = 0
        for record in self.records():
            if record_matches(record, environment=environment, secret=secret,
                              rotation=rotation, action=action):
                total += 1
                kept.append(record)
        return total, list(kept)

    def verify(self, *, expect_head: str | None = None) -> VerifyReport:
        """Walk the whole chain and name every break (reads every entry; writes nothing).

        `keyroll.audit_check` verifies only what follows a verified-head checkpoint, and runs
        this full walk on demand and on a schedule.

        Args:
            expect_head: a head hash pinned earlier; a journal whose chain does not contain it
                was truncated or rewritten.

        Returns:
            The report; `VerifyReport.ok` is False when anything is wrong.
        """
        walk = ChainWalk()
        for entry in self.store.audit_entries():
            walk.feed(entry)
        return walk.report(expect_head=expect_head)

    def check(self, *, expect_head: str | None = None) -> VerifyReport:
        """Like `verify`, but raise `AuditTampered` naming the first break."""
        report = self.verify(expect_head=expect_head)
        if not report.ok:
            more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
            raise AuditTampered(f"audit journal tampered: {report.problems[0]}{more}")
        return report
