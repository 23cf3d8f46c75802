"""Reminders to a real (loopback) webhook receiver and a real (loopback) SMTP listener."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from keyroll.errors import UsageError
from keyroll.inventory import parse_inventory
from keyroll.notify import send_reminders
from tests.leaks import assert_no_leak
from tests.unit.conftest import INVENTORY, T0, World


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, str]]] = []
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"bodies": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib.send_message: greets, accepts, keeps the DATA."""

    messages: ClassVar[list[str]] = []

    def handle(self) -> None:
        self.wfile.write(b"220 localhost test\r\n")
        data: list[str] = []
        in_data = False
        for _ in range(10_000):
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if in_data:
                if line == ".":
                    in_data = False
                    type(self).messages.append("\n".join(data))
                    data = []
                    self.wfile.write(b"250 ok\r\n")
                else:
                    data.append(line)
                continue
            verb = line.split(" ", 1)[0].upper()
            if verb == "DATA":
                in_data = True
                self.wfile.write(b"354 go on\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            elif verb == "EHLO":
                self.wfile.write(b"250 localhost\r\n")
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp() -> Iterator[tuple[int, list[str]]]:
    handler = type("Handler", (_SMTPHandler,), {"messages": []})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server.server_address[1], handler.messages
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


NOTIFY = '\n[notify]\nwebhook_url_env = "TEST_HOOK_URL"\n'


def test_one_digest_per_run_once_a_day(world: World, webhook: tuple[str, type]) -> None:
    url, receiver = webhook
    world.inventory = parse_inventory(INVENTORY + NOTIFY, world.path / "keyroll.toml")
    ref = world.seed("jwt-access")
    secret = world.store.read_value(ref, 1).reveal()
    world.seed("opaque")
    env = {"TEST_HOOK_URL": url}
    report = send_reminders(world.store, world.inventory, T0 + timedelta(days=85), env)
    assert report.sent == ("dev/jwt-access", "dev/opaque")
    assert len(receiver.bodies) == 1
    digest = receiver.bodies[0]["text"]
    assert digest.startswith("test: 2 secret(s) due, 1 overdue:")
    assert "jwt-access in dev" in digest and "OVERDUE" in digest
    again = send_reminders(world.store, world.inventory, T0 + timedelta(days=85, hours=3), env)
    assert again.sent == () and len(receiver.bodies) == 1
    assert_no_leak([json.dumps(receiver.bodies)], [secret], where="reminders")


def test_one_message_per_due_secret_once_a_day(world: World, webhook: tuple[str, type]) -> None:
    url, receiver = webhook
    world.inventory = parse_inventory(INVENTORY + NOTIFY + "digest = false\n",
                                      world.path / "keyroll.toml")
    ref = world.seed("jwt-access")  # created at T0, cadence 90 days, warn 7 days
    secret = world.store.read_value(ref, 1).reveal()
    world.seed("opaque")  # cadence 30 days
    env = {"TEST_HOOK_URL": url}

    early = send_reminders(world.store, world.inventory, T0 + timedelta(days=10), env)
    assert early.sent == ()
    report = send_reminders(world.store, world.inventory, T0 + timedelta(days=85), env)
    assert report.sent == ("dev/jwt-access", "dev/opaque")
    texts = [b["text"] for b in receiver.bodies]
    assert "jwt-access in dev" in texts[0] and "due 2027-01-30 (in 5 days)" in texts[0]
    assert "OVERDUE" in texts[1]
    again = send_reminders(world.store, world.inventory, T0 + timedelta(days=85, hours=3), env)
    assert again.sent == () and len(again.already_sent) == 2
    assert len(receiver.bodies) == 2
    nextday = send_reminders(world.store, world.inventory, T0 + timedelta(days=86), env)
    assert len(nextday.sent) == 2
    assert_no_leak([json.dumps(receiver.bodies)], [secret], where="reminders")


def test_smtp_channel(world: World, smtp: tuple[int, list[str]]) -> None:
    port, messages = smtp
    text = INVENTORY + f'\n[notify]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\n' \
        'smtp_to = ["oncall@example.test"]\n'
    world.inventory = parse_inventory(text, world.path / "keyroll.toml")
    world.seed("opaque")
    report = send_reminders(world.store, world.inventory, T0 + timedelta(days=31), {})
    assert report.channels == ("smtp",)
    assert len(messages) == 1
    assert "Subject: [keyroll] test: 1 secret(s) due, 1 overdue" in messages[0]


def test_no_channel_or_failing_channel(world: World, webhook: tuple[str, type],
                                       tmp_path: Path) -> None:
    url, receiver = webhook
    with pytest.raises(UsageError, match="no reminder channel configured"):
        send_reminders(world.store, world.inventory, T0, {})
    world.inventory = parse_inventory(INVENTORY + NOTIFY, world.path / "keyroll.toml")
    world.seed("opaque")
    receiver.status = 500
    with pytest.raises(UsageError, match="HTTP 500"):
        send_reminders(world.store, world.inventory, T0 + timedelta(days=40), {"TEST_HOOK_URL": url})
    # nothing was marked as sent: tomorrow's retry (or a fixed URL) still sends it
    receiver.status = 200
    report = send_reminders(world.store, world.inventory, T0 + timedelta(days=40),
                            {"TEST_HOOK_URL": url})
    assert report.sent == ("dev/opaque",)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    with pytest.raises(UsageError, match="cannot reach the reminder webhook"):
        send_reminders(world.store, world.inventory, T0 + timedelta(days=41),
                       {"TEST_HOOK_URL": f"http://127.0.0.1:{dead}/"})
