"""Rotation events out: `EventNotifier` observes the engine and tells people what needs them.

The engine emits `Event`s and knows no network (it imports nothing of this package); the CLI
and ``keyroll serve`` attach an `EventNotifier`, which turns the events that need a person
into `Notice`s (`keyroll.inventory.NOTIFY_KINDS`: approval requested, manual step waiting,
step failed, rolled back, retired, overlap stalled past its max, journal check failed) and
sends them at `flush` to every configured channel:

- the Slack-compatible webhook of ``[notify] webhook_url_env`` (``{"text": …}``),
- SMTP (``smtp_host``, ``smtp_to``),
- a generic webhook (``event_webhook_url_env``), its JSON body signed Standard-Webhooks style
  with `WebhookKeyRing` under ``event_webhook_secret_env``, and carrying the journal's head
  hash and length, so a receiver can pin the journal outside the store.

Idempotent: a notice's id is derived from what it reports (rotation, kind, step), each
channel's delivery is recorded in the store's bookkeeping (``notify:event:<id>:<channel>``),
and nothing recorded is sent again, by this process or any other. The signed webhook's
``webhook-id`` is that id, so a receiver can deduplicate too. A channel that fails keeps its
notices for the next `flush`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyroll.audit import VerifyReport
from keyroll.errors import KeyrollError, NotFound, UsageError
from keyroll.inventory import NOTIFY_KINDS, Inventory
from keyroll.model import utcnow
from keyroll.notify.channels import (
    chat_url,
    event_signer,
    event_url,
    post_chat,
    post_signed,
    send_mail,
)
from keyroll.rotation.events import Event
from keyroll.rotation.record import Rotation
from keyroll.stores.base import Store

__all__ = ["EventNotifier", "FlushReport", "Notice"]

_META = "notify:event:"


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification (no value: the engine's messages and evidence never hold one).

    Attributes:
        id: stable id of what it reports (``evt_`` + 24 hex digits): the idempotency key.
        kind: one of `NOTIFY_KINDS`.
        message: one human line.
        at: when it happened.
        rotation, environment, secret, step: what it concerns, where that applies.
        details: small extra facts (the approvals required, the step a person must confirm).
    """

    id: str
    kind: str
    message: str
    at: datetime
    rotation: str | None = None
    environment: str | None = None
    secret: str | None = None
    step: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def payload(self, project: str, head: str, count: int, owner: str | None) -> dict[str, Any]:
        """The signed webhook's JSON body (Standard Webhooks ``type``/``timestamp``/``data``)."""
        return {
            "type": f"keyroll.{self.kind}",
            "timestamp": self.at.isoformat(),
            "data": {"id": self.id, "kind": self.kind, "project": project,
                     "rotation": self.rotation, "environment": self.environment,
                     "secret": self.secret, "step": self.step, "owner": owner,
                     "message": self.message, "details": dict(self.details),
                     "journal": {"head": head, "records": count}},
        }

    def text(self, project: str) -> str:
        where = f" {self.environment}/{self.secret}" if self.secret else ""
        return f"[{project}] {self.kind}{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class FlushReport:
    """What `EventNotifier.flush` did: ids sent, ids already sent before, failures."""

    sent: tuple[str, ...] = ()
    already_sent: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


def _notice_id(*parts: object) -> str:
    return "evt_" + hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()[:24]


class EventNotifier:
    """An engine observer that sends the events that need people (see the module docstring).

    Args:
        store: where deliveries are recorded (and rotation records read).
        inventory: the ``[notify]`` section, owners, overlap maxima.
        environ: where the URLs and secrets named in ``[notify]`` are read.
        timeout: per delivery.
        clock: the wall clock (the webhook timestamp).

    Raises:
        UsageError: a configured URL is not http(s), or the signed webhook has no secret.
    """

    def __init__(
        self,
        store: Store,
        inventory: Inventory,
        environ: Mapping[str, str],
        *,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        cfg = inventory.notify
        self.store = store
        self.inventory = inventory
        self.environ = environ
        self.timeout = timeout
        self.clock = clock
        self.kinds = frozenset(cfg.events if cfg.events is not None else NOTIFY_KINDS)
        self._chat = chat_url(cfg, environ) if cfg.events_to_chat else ""
        self._mail = bool(cfg.events_to_mail and cfg.smtp_host and cfg.smtp_to)
        self._hook = event_url(cfg, environ)
        self._signer = event_signer(cfg, environ) if self._hook else None
        self._queue: dict[str, Notice] = {}

    @property
    def channels(self) -> tuple[str, ...]:
        """The configured channels (empty: the notifier sends nothing)."""
        return tuple(name for name, on in (("chat", bool(self._chat)), ("smtp", self._mail),
                                           ("webhook", bool(self._hook))) if on)

    @property
    def pending(self) -> tuple[Notice, ...]:
        return tuple(self._queue.values())

    # --- from events to notices -----------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """The observer: queue a notice for an event that needs a person."""
        notice = self._notice(event)
        if notice is not None:
            self.add(notice)

    def add(self, notice: Notice) -> None:
        if notice.kind in self.kinds and self.channels:
            self._queue.setdefault(notice.id, notice)

    def _notice(self, event: Event) -> Notice | None:
        kind: str | None = None
        key: tuple[object, ...] = ()
        details: dict[str, Any] = {}
        step = str(event.step) if event.step is not None else None
        if event.kind == "approval" and event.evidence.get("requested"):
            kind, details = "approval.requested", {
                "approvals_required": event.evidence.get("approvals_required")}
        elif event.kind == "paused":
            kind, details = "manual.waiting", {"awaiting": event.evidence.get("awaiting")}
            key = (event.evidence.get("awaiting"),)
        elif event.kind == "step.failed":
            kind, key = "step.failed", (step,)
        elif event.kind == "rolled-back":
            kind = "rolled-back"
        elif event.kind == "step.finished" and step == "retire":
            kind = "retired"
        elif event.kind == "waiting" and step == "overlap" and self._stalled(event):
            kind = "overlap.stalled"
        if kind is None:
            return None
        return Notice(_notice_id(kind, event.rotation, *key), kind, event.message, event.at,
                      rotation=event.rotation, environment=event.ref.environment,
                      secret=event.ref.name, step=step, details=details)

    def _stalled(self, event: Event) -> bool:
        """The overlap still waits longer than the class's ``overlap.max`` after promote."""
        try:
            record = Rotation.parse(self.store.get_rotation(event.rotation))
            cls, _ = self.inventory.resolve(event.ref.name, event.ref.environment)
        except (NotFound, KeyrollError):
            return False
        started = record.body.overlap_started
        return started is not None and event.at - started > cls.overlap.max

    def journal_failed(self, report: VerifyReport) -> None:
        """Queue a ``journal.failed`` notice (once per head and first problem)."""
        if report.ok:
            return
        self.add(Notice(_notice_id("journal.failed", report.head, report.problems[0]),
                        "journal.failed", f"audit journal check failed: {report.problems[0]}"
                        + (f" (and {len(report.problems) - 1} more)"
                           if len(report.problems) > 1 else ""),
                        self.clock(), details={"problems": len(report.problems)}))

    # --- sending --------------------------------------------------------------------------

    def _owner(self, notice: Notice) -> str | None:
        if notice.secret is None:
            return None
        cls = self.inventory.classes.get(notice.secret)
        return cls.owner if cls is not None else None

    def flush(self) -> FlushReport:
        """Send every queued notice not sent yet, on every channel; record each delivery.

        Returns:
            What was sent; a failing channel's notices stay queued and are named in
            ``failed`` (one line each, no URL).
        """
        sent: list[str] = []
        already: list[str] = []
        failed: list[str] = []
        if not self._queue:
            return FlushReport()
        tail = self.store.audit_tail()
        head, count = (tail.hash, tail.seq) if tail is not None else ("0" * 64, 0)
        project = self.inventory.project
        for notice in list(self._queue.values()):
            done = True
            fresh = False
            for channel in self.channels:
                key = f"{_META}{notice.id}:{channel}"
                if self.store.get_meta(key) is not None:
                    continue
                try:
                    self._send(channel, notice, project, head, count)
                except UsageError as exc:
                    failed.append(f"{notice.kind} via {channel}: {exc}")
                    done = False
                    continue
                self.store.put_meta(key, json.dumps({"at": self.clock().isoformat(),
                                                     "kind": notice.kind}))
                fresh = True
            if done:
                del self._queue[notice.id]
            if fresh:
                sent.append(notice.id)
            elif done:
                already.append(notice.id)
        return FlushReport(tuple(sent), tuple(already), tuple(failed))

    def _send(self, channel: str, notice: Notice, project: str, head: str, count: int) -> None:
        text = notice.text(project)
        if channel == "chat":
            post_chat(self._chat, text, self.timeout, what="event chat webhook")
        elif channel == "smtp":
            send_mail(self.inventory.notify, self.environ, f"[keyroll] {notice.kind}"
                      + (f" {notice.environment}/{notice.secret}" if notice.secret else ""),
                      text + f"\n\njournal head {head} ({count} records)", self.timeout,
                      what="event mail")
        else:
            assert self._signer is not None
            body = json.dumps(notice.payload(project, head, count, self._owner(notice)),
                              sort_keys=True, separators=(",", ":"), default=str).encode()
            post_signed(self._hook, self._signer, notice.id, body, self.timeout)
