"""A real RabbitMQ broker for the tests: Debian's ``rabbitmq-server`` with the management plugin.

Everything lives in one temporary folder: the generated ``rabbitmq.conf`` (AMQP and management
listeners on free 127.0.0.1 ports, an administrator with a random password as the default user),
``enabled_plugins`` (``rabbitmq_management``), the Mnesia and log folders, and ``HOME`` with the
broker's own random Erlang cookie (mode 0400), so nothing in ``/var/lib/rabbitmq`` or the
caller's home is read or written.

Parallel runs (another test session, CI, a broker started by the system) must not collide. An
Erlang node registers its name with *epmd*, which normally listens on port 4369 for every node of
the machine and is started detached, outliving whoever started it. Here each broker gets its own
epmd, started by this module in the foreground on a free loopback port (``ERL_EPMD_PORT``,
``-address 127.0.0.1``) and stopped by its PID; the node is told not to start one of its own
(``-start_epmd false``), gets a unique name (``kr<random>@localhost``) and its distribution
listener is pinned to one free loopback port (``-kernel inet_dist_listen_min/max``,
``inet_dist_use_interface``).

The broker runs in the foreground as ``erl`` itself (``RABBITMQ_ALLOW_INPUT`` makes the start
script ``exec`` the VM, ``-noinput`` keeps it off stdin), so the PID this module holds is the
VM's, and SIGTERM to it is a clean shutdown. Every wait is bounded in count and in time; a broker
that dies early fails the test with the tail of its log. A missing binary raises
`ServerUnavailable` naming the package (``make system-deps`` installs it): never a skip.

Startup takes 10-40 s on a busy machine, so the fixture is session-scoped: one broker per test
session, users and vhosts made per test.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from tests.servers import ServerUnavailable, find_binary, free_port

__all__ = ["RabbitMQServer"]

START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
POLL = 0.25
_SBIN = (Path("/usr/lib/rabbitmq/bin"),)  # the start scripts proper, not the su wrappers


def _stop_pid(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Signal our own child by its PID, wait (bounded), SIGKILL if it is still there."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)


class RabbitMQServer:
    """A throwaway RabbitMQ node on loopback, with the management HTTP API.

    Attributes:
        admin_user: the administrator (``default_user`` in rabbitmq.conf).
        admin_password: its random password.
        amqp_port, management_port, epmd_port, dist_port: the node's loopback ports.
        nodename: ``kr<random>@localhost``.
        dir: the temporary folder (removed by `stop`).
    """

    def __init__(self) -> None:
        """Find the binaries or raise `ServerUnavailable` naming the apt package."""
        self.server = find_binary("rabbitmq-server", "rabbitmq-server", _SBIN, search_path=False)
        self.epmd = find_binary("epmd", "rabbitmq-server", (Path("/usr/bin"),))
        self.dir = Path(tempfile.mkdtemp(prefix="keyroll-rabbitmq-"))
        self.admin_user = "kr_admin"
        # with characters that need URL-encoding, so the admin URL's decoding is exercised
        self.admin_password = secrets.token_urlsafe(18) + "%$"
        self.nodename = f"kr{secrets.token_hex(4)}@localhost"
        self.amqp_port = self.management_port = self.epmd_port = self.dist_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.epmd_proc: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []
        self.log_path = self.dir / "server.log"

    # start / stop --------------------------------------------------------------------------

    def _write_config(self) -> dict[str, str]:
        (self.dir / "rabbitmq.conf").write_text("\n".join([
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            f"management.tcp.port = {self.management_port}",
            "management.tcp.ip = 127.0.0.1",
            # the admin is not limited to localhost connections (everything is on loopback
            # anyway); the built-in guest account is not created at all
            "loopback_users = none",
            f"default_user = {self.admin_user}",
            f"default_pass = {self.admin_password}",
            "default_user_tags.administrator = true",
            "default_permissions.configure = .*",
            "default_permissions.read = .*",
            "default_permissions.write = .*",
            "log.file.level = info",
            "log.console = false",
        ]) + "\n")
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(20))
            cookie.chmod(0o400)
        erl_args = (
            "-noinput -start_epmd false "
            f"-kernel inet_dist_listen_min {self.dist_port} "
            f"-kernel inet_dist_listen_max {self.dist_port} "
            "-kernel inet_dist_use_interface {127,0,0,1}"
        )
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),  # absent
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),  # absent: not /etc
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbitmq.pid"),
            "RABBITMQ_ALLOW_INPUT": "true",  # exec the VM: our PID is the broker's
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": erl_args,
        }

    def _spawn(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        out = log.open("ab")
        self._logs.append(out)
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=self.dir, env=env,
                                start_new_session=True)

    def start(self) -> RabbitMQServer:
        """Start epmd and the broker; return once the management API and AMQP answer."""
        for attempt in range(3):
            self.amqp_port, self.management_port = free_port(), free_port()
            self.epmd_port, self.dist_port = free_port(), free_port()
            env = self._write_config()
            self.epmd_proc = self._spawn(
                [str(self.epmd), "-port", str(self.epmd_port), "-address", "127.0.0.1"], env,
                self.dir / "epmd.log")
            self.proc = self._spawn([str(self.server)], env, self.log_path)
            try:
                self._wait_ready()
            except ServerUnavailable:
                self._stop_processes(signal.SIGKILL)
                if attempt == 2:
                    raise
                shutil.rmtree(self.dir / "mnesia", ignore_errors=True)
            else:
                return self
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        assert self.proc is not None and self.epmd_proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer"
        for _ in range(int(START_TIMEOUT / POLL) + 1):
            for proc, what in ((self.proc, "rabbitmq-server"), (self.epmd_proc, "epmd")):
                if proc.poll() is not None:
                    raise ServerUnavailable(f"{what} exited with code {proc.returncode} at "
                                            f"startup; its log:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/overview", timeout=2)
                with socket.create_connection(("127.0.0.1", self.amqp_port), 1):
                    return
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                break
            time.sleep(POLL)
        raise ServerUnavailable(f"RabbitMQ did not answer within {START_TIMEOUT:.0f}s ({last}); "
                                f"its log:\n{self.log_tail()}")

    def _stop_processes(self, sig: int = signal.SIGTERM) -> None:
        _stop_pid(self.proc, sig)
        _stop_pid(self.epmd_proc, signal.SIGTERM)
        self.proc = self.epmd_proc = None
        for log in self._logs:
            log.close()
        self._logs = []

    def stop(self) -> None:
        """SIGTERM to the broker's VM (a clean shutdown), then to its epmd, both by PID; then
        remove the folder."""
        self._stop_processes()
        shutil.rmtree(self.dir, ignore_errors=True)

    # reading it ----------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the broker, its start script and its epmd wrote so far."""
        parts = []
        for path in [self.log_path, self.dir / "epmd.log",
                     *sorted((self.dir / "log").glob("*.log*"))]:
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def management_url(self, *, credentials: bool = True) -> str:
        """``http://ADMIN:PASSWORD@127.0.0.1:PORT`` (the password URL-encoded)."""
        if not credentials:
            return f"http://127.0.0.1:{self.management_port}"
        return (f"http://{self.admin_user}:{quote(self.admin_password, safe='')}"
                f"@127.0.0.1:{self.management_port}")

    def api(self, method: str, path: str, body: Any = None, *, timeout: float = 10) -> Any:
        """One management API call as the administrator (the standard library's client, so
        the fixture does not depend on the code under test); the JSON answer or None."""
        token = base64.b64encode(f"{self.admin_user}:{self.admin_password}".encode()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.management_port}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
        with opener.open(request, timeout=timeout) as answer:
            content = answer.read()
        return json.loads(content) if content else None
