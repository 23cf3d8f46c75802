"""Reminders: one message per secret that is due (inside its warn window) or overdue.

Seed 003 asks for a 30-day cadence with an alert 7 days ahead; the warn window is the
environment's ``warn_days``. Messages go to a Slack-compatible webhook (``{"text": …}``) and/or
SMTP; the webhook URL and SMTP credentials are read from env vars named in the inventory (a
webhook URL is a credential too). Sending is idempotent per day: what went out is recorded in
the store's bookkeeping under ``notify:<date>`` and not sent again that day.
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from keyroll.errors import UsageError
from keyroll.inventory import Inventory
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


def _post_webhook(url: str, text: str, timeout: float) -> None:
    data = json.dumps({"text": text}).encode()
    request = urllib.request.Request(  # noqa: S310  (scheme checked by the caller)
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            if reply.status >= 300:
                raise UsageError(f"the reminder webhook answered HTTP {reply.status}")
    except urllib.error.HTTPError as exc:
        raise UsageError(f"the reminder webhook answered HTTP {exc.code}: check the URL") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc.__class__.__name__)
        raise UsageError(f"cannot reach the reminder webhook: {reason}") from None


def _send_mail(inventory: Inventory, environ: Mapping[str, str], subject: str, text: str,
               timeout: float) -> None:
    cfg = inventory.notify
    assert cfg.smtp_host is not None
    mail = EmailMessage()
    mail["Subject"] = subject
    mail["From"] = cfg.smtp_from or "keyroll@localhost"
    mail["To"] = ", ".join(cfg.smtp_to)
    mail.set_content(text)
    try:
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=timeout) as smtp:
            if cfg.smtp_starttls:
                smtp.starttls()
            if cfg.smtp_user_env and cfg.smtp_password_env:
                smtp.login(environ.get(cfg.smtp_user_env, ""),
                           environ.get(cfg.smtp_password_env, ""))
            smtp.send_message(mail)
    except (smtplib.SMTPException, OSError) as exc:
        raise UsageError(
            f"cannot send reminder mail via {cfg.smtp_host}:{cfg.smtp_port}: "
            f"{exc.__class__.__name__}"
        ) from None


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
    url = environ.get(cfg.webhook_url_env, "") if cfg.webhook_url_env else ""
    channels = []
    if url:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"{cfg.webhook_url_env} must be an http(s) URL")
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
    sent, skipped = [], []
    for row in rows:
        tag = f"{row.ref}:{row.state.value}"
        if tag in sent_today:
            skipped.append(str(row.ref))
            continue
        text = message_for(row, inventory.project)
        if url:
            _post_webhook(url, text, timeout)
        if "smtp" in channels:
            _send_mail(inventory, environ, f"[keyroll] {row.ref} is {row.state.value}", text,
                       timeout)
        sent_today.add(tag)
        store.put_meta(key, json.dumps(sorted(sent_today)))
        sent.append(str(row.ref))
    return NotifyReport(tuple(sent), tuple(skipped), tuple(channels))
