"""Notifications: reminders of due secrets (`reminders`), rotation events (`events`), and the
channels both use (`channels`: Slack-compatible webhook, SMTP, signed generic webhook)."""

from keyroll.notify.events import EventNotifier as EventNotifier
from keyroll.notify.events import FlushReport as FlushReport
from keyroll.notify.events import Notice as Notice
from keyroll.notify.reminders import NotifyReport as NotifyReport
from keyroll.notify.reminders import message_for as message_for
from keyroll.notify.reminders import send_reminders as send_reminders

__all__ = ["EventNotifier", "FlushReport", "Notice", "NotifyReport", "message_for",
           "send_reminders"]
