"""Rotation events out: every kind reaches a real loopback receiver, signed, and verifies with
`WebhookKeyRing`; SMTP through a real aiosmtpd server; each notice is sent once."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest

from keyroll.audit import Journal
from keyroll.errors import StepFailed, UsageError
from keyroll.inventory import NOTIFY_KINDS, parse_inventory
from keyroll.model import SecretValue
from keyroll.notify import EventNotifier
from keyroll.runtime.keysource import StaticKeySource
from keyroll.runtime.webhooks import WebhookKeyRing
from tests.leaks import assert_no_leak
from tests.unit.conftest import INVENTORY, World


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    handler = type("Receiver", (_Receiver,), {"received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/keyroll", handler.received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


NOTIFY = """
[notify]
event_webhook_url_env = "EVENTS_URL"
event_webhook_secret_env = "EVENTS_SECRET"
"""


def _secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _notifier(world: World, url: str, signing: str, extra: str = "") -> EventNotifier:
    world.inventory = parse_inventory(INVENTORY + NOTIFY + extra, world.path / "keyroll.toml")
    return EventNotifier(world.store, world.inventory,
                         {"EVENTS_URL": url, "EVENTS_SECRET": signing})


def test_every_event_kind_reaches_the_receiver_signed(
    world: World, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    signing = _secret()
    notifier = _notifier(world, url, signing)
    planted: list[str] = [signing]
    for name, env in (("jwt-access", "prod"), ("vnpay", "dev"), ("jwt-access", "dev"),
                      ("field", "dev")):
        ref = world.seed(name, env)
        planted.append(world.store.read_value(ref, 1).reveal())
    engine = world.engine()
    engine.observers.append(notifier)

    # approval requested (prod needs two people)
    engine.start("jwt-access", "prod")
    # a manual step waits for a person (the provider's portal)
    engine.run(engine.start("vnpay", "dev").id)
    # a step fails after promote (verify hook), the rotation turns back, retires, rolls back
    (world.path / "verify-fails").touch()
    back = engine.run(engine.start("jwt-access", "dev").id)
    assert back.reverted
    world.clock.tick(timedelta(hours=2))
    assert engine.run(back.id).state == "rolled-back"
    # an encryption key's overlap waits on rows past its max (45 days by default)
    (world.path / "remaining.txt").write_text("12\n")
    field = engine.run(engine.start("field", "dev").id)
    world.clock.tick(timedelta(days=46))
    assert engine.run(field.id).state == "overlap"
    # the journal's chain breaks
    db = world.path / ".keyroll" / "store.db"
    with sqlite3.connect(db) as conn:
        payload = conn.execute("SELECT payload FROM audit WHERE seq=2").fetchone()[0]
        conn.execute("UPDATE audit SET payload=? WHERE seq=2",
                     (payload.replace('"alice"', '"mallory"'),))
    notifier.journal_failed(Journal(world.store).verify())

    report = notifier.flush()
    assert not report.failed
    ring = WebhookKeyRing(StaticKeySource.of(SecretValue(signing)))
    kinds = []
    tail = world.store.audit_tail()
    assert tail is not None
    for headers, body in received:
        ring.verify(body, headers)  # raises InvalidToken unless signed with our secret
        doc: dict[str, Any] = json.loads(body)
        assert doc["type"] == f"keyroll.{doc['data']['kind']}"
        assert headers["webhook-id"] == doc["data"]["id"]
        assert doc["data"]["journal"] == {"head": tail.hash, "records": tail.seq}
        kinds.append(doc["data"]["kind"])
    assert set(kinds) == set(NOTIFY_KINDS)
    assert len(kinds) == len(set(zip(kinds, [json.loads(b)["data"]["rotation"]
                                              for _, b in received], strict=True)))
    # a tampered body or another secret does not verify
    headers, body = received[0]
    other = WebhookKeyRing(StaticKeySource.of(SecretValue(_secret())))
    with pytest.raises(Exception, match="invalid webhook signature"):
        other.verify(body, headers)
    with pytest.raises(Exception, match="invalid webhook signature"):
        ring.verify(body.replace(b"keyroll.", b"keyroll!"), headers)
    assert_no_leak([b for _, b in received] + [json.dumps(h) for h, _ in received], planted,
                   where="event webhooks")

    # idempotent: the same events again (another tick, another process) send nothing
    count = len(received)
    again = EventNotifier(world.store, world.inventory, {"EVENTS_URL": url,
                                                         "EVENTS_SECRET": signing})
    engine.observers.append(again)
    world.clock.tick(timedelta(days=1))
    engine.run(field.id)
    again.journal_failed(Journal(world.store).verify())
    assert again.flush().sent == ()
    assert len(received) == count


def test_only_the_chosen_kinds_and_a_failing_channel_retries(
    world: World, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    signing = _secret()
    notifier = _notifier(world, "http://127.0.0.1:9/dead", signing,
                         'events = ["manual.waiting"]\n')
    world.seed("vnpay", "dev")
    world.seed("jwt-access", "prod")
    engine = world.engine()
    engine.observers.append(notifier)
    engine.start("jwt-access", "prod")  # approval.requested: not chosen
    engine.run(engine.start("vnpay", "dev").id)
    assert [n.kind for n in notifier.pending] == ["manual.waiting"]
    failed = notifier.flush()
    assert failed.sent == () and len(failed.failed) == 1
    assert "cannot reach the event webhook" in failed.failed[0]
    assert signing not in failed.failed[0]
    notifier._hook = url  # the receiver is back (same notifier: its queue kept the notice)
    assert len(notifier.flush().sent) == 1
    assert len(received) == 1


def test_bad_event_config_is_one_line(world: World) -> None:
    with pytest.raises(Exception, match="unknown event 'rotated'"):
        parse_inventory(INVENTORY + NOTIFY + 'events = ["rotated"]\n', world.path / "k.toml")
    world.inventory = parse_inventory(INVENTORY + NOTIFY, world.path / "keyroll.toml")
    with pytest.raises(UsageError, match="needs a signing secret"):
        EventNotifier(world.store, world.inventory, {"EVENTS_URL": "http://127.0.0.1:1/"})
    with pytest.raises(UsageError, match="must be an http"):
        EventNotifier(world.store, world.inventory, {"EVENTS_URL": "file:///etc/passwd",
                                                     "EVENTS_SECRET": _secret()})


def test_events_by_mail_through_a_real_smtp_server(world: World) -> None:
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[bytes] = []

        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
            self.messages.append(envelope.content)
            return "250 OK"

    inbox = Inbox()
    with socket.socket() as probe:  # aiosmtpd's controller needs its port up front
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        world.inventory = parse_inventory(
            INVENTORY + f'\n[notify]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\n'
            'smtp_to = ["oncall@example.test"]\n', world.path / "keyroll.toml")
        notifier = EventNotifier(world.store, world.inventory, {})
        assert notifier.channels == ("smtp",)
        ref = world.seed("vnpay", "dev")
        engine = world.engine()
        engine.observers.append(notifier)
        engine.run(engine.start("vnpay", "dev").id)
        assert len(notifier.flush().sent) == 1
    finally:
        controller.stop()
    assert len(inbox.messages) == 1
    mail = inbox.messages[0].decode()
    assert "Subject: [keyroll] manual.waiting dev/vnpay" in mail
    assert "journal head" in mail
    assert_no_leak([mail], [world.store.read_value(ref, 1).reveal()], where="event mail")


def test_a_failure_stops_the_notice_not_the_rotation(world: World) -> None:
    """An observer that cannot send never breaks a rotation (the engine swallows it)."""
    world.seed("opaque")
    engine = world.engine()
    engine.observers.append(lambda _event: (_ for _ in ()).throw(StepFailed("display broke")))
    assert engine.run(engine.start("opaque", "dev").id).state in ("overlap", "done")
