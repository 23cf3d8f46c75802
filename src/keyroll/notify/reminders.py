"""Reminders: the secrets that are due (inside their warn window) or overdue, in one digest.

Seed 003 asks for a 30-day cadence with an alert 7 days ahead; the warn window is the
environment's ``warn_days``. Messages go to a Slack-compatible webhook (``{"text": …}``) and/or
SMTP; the webhook URL and SMTP credentials are read from env vars named in the inventory (a
webhook URL is a credential too). One run sends one digest (``[notify] digest = false``: one
message per secret). Sending is idempotent per day: what went out is recorded in the store's
bookkeeping under ``notify:<date>`` and not sent again that day.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from keyroll.errors import UsageError
from keyroll.inventory import Inventory
from keyroll.notify.channels import chat_url, post_chat, send_mail
from keyroll.status import SecretStatus, State, statuses
from keyroll.stores.base import Store

__all__ = ["NotifyReport", "message_for", "send_reminders"]


@dataclass(frozen=True, slots=True)
class NotifyReport:
    """What `send_reminders` did."""

    sent: tuple[str, ...]
    already_sent: tuple[str, ...]
    channels: tuple[str, ...]


def message_for(row: SecretStatus, project: str) -> str:
    """One reminder line (fingerprint, never value)."""
    assert row.due_at is not None
    if row.state is State.OVERDUE:
        when = f"OVERDUE since {row.due_at:%Y-%m-%d} ({-(row.days_left or 0)} days)"
    else:
        when = f"due {row.due_at:%Y-%m-%d} (in {row.days_left} days)"
    return (
        f"[{project}] {row.cls.name} in {row.ref.environment} ({row.cls.tier.value} tier, owner "
        f"{row.cls.owner}) is {when}: version {row.version}, fingerprint {row.fingerprint}. "
        f"Rotate: keyroll rotate {row.cls.name} --env {row.ref.environment}"
    )


def send_reminders(
    store: Store,
    inventory: Inventory,
    now: datetime,
    environ: Mapping[str, str],
    *,
    environment: str | None = None,
    timeout: float = 10.0,
) -> NotifyReport:
    """Send one message per due/overdue secret not yet reminded today.

    Raises:
        UsageError: no channel is configured, or a channel fails (nothing is marked as sent).
    """
    cfg = inventory.notify
    url = chat_url(cfg, environ)
    channels = []
    if url:
        channels.append("webhook")
    if cfg.smtp_host and cfg.smtp_to:
        channels.append("smtp")
    if not channels:
        hint = f"set {cfg.webhook_url_env}" if cfg.webhook_url_env else (
            "set [notify] webhook_url_env or smtp_host/smtp_to in keyroll.toml")
        raise UsageError(f"no reminder channel configured: {hint}")
    key = f"notify:{now:%Y-%m-%d}"
    sent_today = set(json.loads(store.get_meta(key) or "[]"))
    rows = [r for r in statuses(store, inventory, now, environment=environment)
            if r.state in (State.DUE, State.OVERDUE)]
    sent, skipped, lines, tags = [], [], [], []
    for row in rows:
        tag = f"{row.ref}:{row.state.value}"
        if tag in sent_today:
            skipped.append(str(row.ref))
            continue
        text = message_for(row, inventory.project)
        if not cfg.digest:
            _deliver(inventory, environ, url, channels,
                     f"[keyroll] {row.ref} is {row.state.value}", text, timeout)
            sent_today.add(tag)
            store.put_meta(key, json.dumps(sorted(sent_today)))
        lines.append(text)
        tags.append(tag)
        sent.append(str(row.ref))
    if cfg.digest and lines:
        overdue = sum(1 for t in tags if t.endswith(":overdue"))
        subject = (f"[keyroll] {inventory.project}: {len(lines)} secret(s) due"
                   + (f", {overdue} overdue" if overdue else ""))
        _deliver(inventory, environ, url, channels, subject,
                 "\n".join([subject.removeprefix("[keyroll] ") + ":", *lines]), timeout)
        sent_today.update(tags)
        store.put_meta(key, json.dumps(sorted(sent_today)))
    return NotifyReport(tuple(sent), tuple(skipped), tuple(channels))


def _deliver(inventory: Inventory, environ: Mapping[str, str], url: str, channels: list[str],
             subject: str, text: str, timeout: float) -> None:
    if url:
        post_chat(url, text, timeout, what="reminder webhook")
    if "smtp" in channels:
        send_mail(inventory.notify, environ, subject, text, timeout, what="reminder mail")
