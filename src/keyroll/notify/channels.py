"""Where notifications go: a Slack-compatible webhook, SMTP, and a signed generic webhook.

Every URL and credential is read from an env var the inventory names (a webhook URL is a
credential too), and no error message quotes one. The generic webhook is signed
Standard-Webhooks style with keyroll's own `WebhookKeyRing` (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``), so a receiver verifies it with the same class.
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import EmailMessage

from keyroll.errors import UsageError
from keyroll.inventory import NotifyConfig
from keyroll.model import SecretValue
from keyroll.runtime.keysource import StaticKeySource
from keyroll.runtime.webhooks import WebhookKeyRing

__all__ = ["chat_url", "event_signer", "event_url", "post_chat", "post_signed", "send_mail"]


def _url(environ: Mapping[str, str], var: str | None) -> str:
    url = environ.get(var, "").strip() if var else ""
    if url and not url.startswith(("http://", "https://")):
        raise UsageError(f"{var} must be an http(s) URL")
    return url


def chat_url(cfg: NotifyConfig, environ: Mapping[str, str]) -> str:
    """The Slack-compatible webhook's URL ("" when not configured)."""
    return _url(environ, cfg.webhook_url_env)


def event_url(cfg: NotifyConfig, environ: Mapping[str, str]) -> str:
    """The generic (signed) event webhook's URL ("" when not configured)."""
    return _url(environ, cfg.event_webhook_url_env)


def event_signer(cfg: NotifyConfig, environ: Mapping[str, str]) -> WebhookKeyRing:
    """The ring that signs event webhooks: the secrets in ``event_webhook_secret_env``
    (``whsec_…``; several separated by spaces while the receiver's secret rotates: the first
    is current, every one signs).

    Raises:
        UsageError: the variable is not named, empty, or holds no webhook secret.
    """
    var = cfg.event_webhook_secret_env
    words = environ.get(var, "").split() if var else []
    if not words:
        raise UsageError("[notify] event_webhook_url_env needs a signing secret: set "
                         "event_webhook_secret_env and that variable (whsec_ + base64, "
                         "`keyroll generate`)")
    return WebhookKeyRing(StaticKeySource.of(*(SecretValue(w) for w in words)))


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float, what: str) -> None:
    request = urllib.request.Request(  # noqa: S310  (http(s) checked in _url)
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            if reply.status >= 300:
                raise UsageError(f"the {what} answered HTTP {reply.status}")
    except urllib.error.HTTPError as exc:
        raise UsageError(f"the {what} answered HTTP {exc.code}: check the URL") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc.__class__.__name__)
        raise UsageError(f"cannot reach the {what}: {reason}") from None


def post_chat(url: str, text: str, timeout: float, *, what: str = "chat webhook") -> None:
    """POST ``{"text": …}`` (Slack, Mattermost, Rocket.Chat, Teams workflows)."""
    _post(url, json.dumps({"text": text}).encode(), {}, timeout, what)


def post_signed(url: str, ring: WebhookKeyRing, msg_id: str, body: bytes, timeout: float) -> None:
    """POST ``body`` with Standard Webhooks headers signed by every secret of ``ring``."""
    _post(url, body, ring.sign(msg_id, body), timeout, "event webhook")


def send_mail(cfg: NotifyConfig, environ: Mapping[str, str], subject: str, text: str,
              timeout: float, *, what: str = "notification mail") -> None:
    """Send one plain-text mail to ``smtp_to``."""
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
            f"cannot send {what} via {cfg.smtp_host}:{cfg.smtp_port}: {exc.__class__.__name__}"
        ) from None
