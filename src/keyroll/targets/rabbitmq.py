"""RabbitMQ as a rotation target: users through the management HTTP API, logins over AMQP.

RabbitMQ keeps one password per user, so a password cannot change under running clients
without failing their next login. Two users with the same permissions alternate (the
``rabbitmq-user`` strategy): `RabbitMQTarget.set_password` gives the idle one a password and
the active user's tags, `RabbitMQTarget.mirror` copies the active user's permissions, topic
permissions and user limits onto it (and removes any it has beyond them), `RabbitMQTarget.grants_of` reads
both so the test step can compare them, `RabbitMQTarget.check_login` opens a real AMQP
connection, `RabbitMQTarget.connection_count` counts the old user's open connections and
`RabbitMQTarget.close_connections` ends them in an incident (both through
``/api/connections/username/{user}``, the broker's connection tracking: the statistics
database behind ``/api/connections`` lists a new connection only seconds later).

Passwords reach the broker as salted hashes in RabbitMQ's own format (``password_hash`` with
``hashing_algorithm``: base64 of a 4-byte salt and SHA-256 or SHA-512 of salt + password),
computed here, so the plaintext never travels to the management API nor sits in its request
logs; only the AMQP login sends it (SASL PLAIN, as every client does).

httpx and pika are imported lazily (extra ``rabbitmq``); their exceptions become `TargetError`
here and nowhere else, with every secret known to the call cut out of the library's text.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from keyroll.errors import TargetError
from keyroll.model import SecretValue
from keyroll.scrub import dsn_secret_parts
from keyroll.targets._redact import target_error

__all__ = [
    "ADMIN_URL_SHAPE",
    "AMQP_URL_SHAPE",
    "AmqpEndpoint",
    "RabbitMQTarget",
    "UserGrants",
    "parse_admin_url",
    "parse_amqp_url",
    "password_hash",
]

_SYSTEM = "RabbitMQ"
_INSTALL = "RabbitMQ targets need httpx and pika: pip install 'keyroll[rabbitmq]'"

#: What `parse_admin_url` accepts (for messages: the URL itself holds a password).
ADMIN_URL_SHAPE = "http://ADMIN:PASSWORD@HOST:15672 (https:// for TLS)"
#: What `parse_amqp_url` accepts: no credentials in it.
AMQP_URL_SHAPE = "amqp://HOST:5672/VHOST (amqps:// for TLS; no user or password in it)"

_HASHES = {
    "rabbit_password_hashing_sha256": hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
}
_DEFAULT_HASH = "rabbit_password_hashing_sha256"


def _httpx() -> ModuleType:
    try:
        import httpx
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise TargetError(_INSTALL) from None
    return httpx


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's trust store, verified hostnames: built once per process (building it reads
    every CA certificate, ~50 ms, which per API call made a rotation seconds slower)."""
    return ssl.create_default_context()


def _pika() -> ModuleType:
    try:
        import pika
        import pika.exceptions
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise TargetError(_INSTALL) from None
    module: ModuleType = pika  # untyped library: its calls are Any below
    return module


def password_hash(password: SecretValue, algorithm: str = _DEFAULT_HASH,
                  salt: bytes | None = None) -> str:
    """RabbitMQ's stored form of a password: base64(salt + H(salt + password)).

    Args:
        password: the password.
        algorithm: ``rabbit_password_hashing_sha256`` (default) or ``…_sha512``.
        salt: 4 bytes (random by default; given only by known-answer tests).
    """
    digest = _HASHES[algorithm]
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + digest(salt + password.reveal_bytes()).digest()).decode()


def parse_admin_url(url: str) -> tuple[str, str, SecretValue] | None:
    """(base URL without credentials, admin user, password) of a management API URL.

    The user and password may be URL-encoded (``pa%24s`` is ``pa$s``). Returns None when ``url``
    is not `ADMIN_URL_SHAPE`; the caller names the variable and never shows the text.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or not parts.username \
            or parts.password is None or parts.query or parts.fragment:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    base = f"{parts.scheme}://{host}" + (f":{port}" if port else "") + parts.path.rstrip("/")
    return base, unquote(parts.username), SecretValue(unquote(parts.password))


@dataclass(frozen=True, slots=True)
class AmqpEndpoint:
    """Where clients open AMQP connections (no credentials)."""

    host: str
    port: int
    vhost: str
    tls: bool

    def __str__(self) -> str:
        scheme = "amqps" if self.tls else "amqp"
        return f"{scheme}://{self.host}:{self.port}/{quote(self.vhost, safe='')}"


def parse_amqp_url(url: str) -> AmqpEndpoint | None:
    """An `AmqpEndpoint` from `AMQP_URL_SHAPE`, or None (a URL carrying a user or password is
    refused too: credentials never sit in the inventory). An empty path is the vhost ``/``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname or parts.username \
            or parts.password is not None or parts.query or parts.fragment:
        return None
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if "/" in path:
        return None  # a vhost named "/" is written %2F
    tls = parts.scheme == "amqps"
    return AmqpEndpoint(parts.hostname, port or (5671 if tls else 5672),
                        unquote(path) if path else "/", tls)


Grant = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class UserGrants:
    """What a user may do: the part of a user that two alternating users must share.

    Attributes:
        tags: sorted tags (``administrator``, ``monitoring``, ``management`` …).
        permissions: sorted (vhost, configure, write, read) regexes.
        topic_permissions: sorted (vhost, exchange, write, read) regexes.
        limits: sorted user limits (``max-connections``, ``max-channels``) and their values.
    """

    tags: tuple[str, ...]
    permissions: tuple[Grant, ...]
    topic_permissions: tuple[Grant, ...]
    limits: tuple[tuple[str, int], ...] = ()

    def diff(self, other: UserGrants, mine: str, theirs: str) -> list[str]:
        """One line per difference (empty when equal), naming vhosts and regexes, never a
        password (grants hold none)."""
        lines = []
        if self.tags != other.tags:
            lines.append(f"tags: {list(self.tags)} on {mine!r}, {list(other.tags)} on {theirs!r}")
        if self.limits != other.limits:
            lines.append(f"limits: {dict(self.limits)} on {mine!r}, {dict(other.limits)} on "
                         f"{theirs!r}")
        for what, left, right in (("permissions", self.permissions, other.permissions),
                                  ("topic permissions", self.topic_permissions,
                                   other.topic_permissions)):
            for grant in sorted(set(left) - set(right)):
                lines.append(f"{what} {grant!r} only on {mine!r}")
            for grant in sorted(set(right) - set(left)):
                lines.append(f"{what} {grant!r} only on {theirs!r}")
        return lines


def _tags(value: object) -> tuple[str, ...]:
    """Tags as the API gives them: a list (3.9+) or a comma-separated string (older)."""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = [str(v) for v in value]
    else:
        items = []
    return tuple(sorted({t.strip() for t in items if t.strip()}))


def _check_name(name: str, what: str = "user") -> str:
    if not isinstance(name, str) or not name or len(name) > 255 \
            or any(ord(ch) < 32 for ch in name):
        raise TargetError(f"RabbitMQ {what} name {name!r} is empty, too long or has control "
                          "characters")
    return name


def _seg(text: str) -> str:
    """One URL path segment (a vhost ``/`` is ``%2F``)."""
    return quote(text, safe="")


class RabbitMQTarget:
    """Administers the users of one RabbitMQ broker through its management HTTP API.

    Args:
        base_url: the management API's base URL, without credentials (`parse_admin_url`).
        admin_user: a user with the ``administrator`` tag.
        admin_password: its password.
        amqp: where `check_login` opens AMQP connections.
        timeout: HTTP and socket timeout, seconds.
    """

    def __init__(self, base_url: str, *, admin_user: str, admin_password: SecretValue,
                 amqp: AmqpEndpoint, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_user = admin_user
        self._admin_password = admin_password
        self.amqp = amqp
        self._timeout = timeout
        self.where = self.base_url.split("://", 1)[-1]
        self._session: Any = None  # one HTTP client (keep-alive) inside ``with target:``

    def __repr__(self) -> str:
        return f"RabbitMQTarget({self.where!r}, admin_user={self.admin_user!r})"

    def __enter__(self) -> RabbitMQTarget:
        """Reuse one HTTP connection for the calls made inside the block (a step makes
        several); outside a block each call opens and closes its own."""
        if self._session is None:
            self._session = self._new_client()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the block's HTTP client, if any. Idempotent."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _new_client(self) -> Any:
        return _httpx().Client(base_url=self.base_url, timeout=self._timeout,
                               verify=_tls_context(),
                               auth=(self.admin_user, self._admin_password.reveal()),
                               headers={"content-type": "application/json"})

    # the management API ------------------------------------------------------------------

    def _secrets(self, *values: SecretValue | str) -> list[str]:
        found = [self._admin_password.reveal(), quote(self._admin_password.reveal(), safe="")]
        for value in values:
            text = value.reveal() if isinstance(value, SecretValue) else value
            found += [text, quote(text, safe=""), *dsn_secret_parts(text)]
        return found

    @contextlib.contextmanager
    def _client(self, step: str, *secrets: SecretValue | str) -> Iterator[Any]:
        httpx = _httpx()
        client = self._session or self._new_client()
        try:
            yield client
        except httpx.HTTPError as exc:
            raise target_error(
                _SYSTEM, self.where, step, "cannot reach the management API",
                "check that the broker runs with the rabbitmq_management plugin and that the "
                "admin URL's host and port are right; the step can be retried",
                cause=exc, secrets=self._secrets(*secrets)) from None
        finally:
            if client is not self._session:
                client.close()

    def _call(self, step: str, method: str, path: str, body: Any = None, *,
              missing_ok: bool = False, secrets: tuple[SecretValue | str, ...] = ()) -> Any:
        """One API call; its JSON answer (None when empty, or 404 with ``missing_ok``)."""
        with self._client(step, *secrets) as client:
            answer = client.request(method, path, json=body)
        status = answer.status_code
        if status == 404 and missing_ok:
            return None
        if status < 300:
            return answer.json() if answer.content else None
        reason = ""
        with contextlib.suppress(ValueError, AttributeError):
            reason = str(answer.json().get("reason") or "")
        if status == 401:
            problem, hint = ("the admin credential was refused",
                             "check the admin user and password in the admin URL")
        elif status == 403:
            problem, hint = ("the admin user may not do this",
                             "give the admin user the administrator tag")
        elif status == 404:
            problem, hint = "not found", "check the user and vhost names"
        else:
            problem, hint = f"the management API answered {status}", "see the broker's log"
        raise target_error(_SYSTEM, self.where, step, problem, hint, cause=reason or None,
                           secrets=self._secrets(*secrets))

    def check_admin(self) -> None:
        """The admin credential works and carries the ``administrator`` tag.

        Raises:
            TargetError: it does not (nothing was changed).
        """
        who = self._call("check admin", "GET", "/api/whoami")
        if "administrator" not in _tags((who or {}).get("tags")):
            raise TargetError(f"RabbitMQ {self.where}: check admin: user {self.admin_user!r} "
                              "lacks the administrator tag, which managing users needs. Add it "
                              "(rabbitmqctl set_user_tags USER administrator)")

    def user_exists(self, user: str) -> bool:
        """Whether the broker has the user."""
        _check_name(user)
        return self._call(f"read user {user!r}", "GET", f"/api/users/{_seg(user)}",
                          missing_ok=True) is not None

    def hashing_algorithm(self, user: str) -> str:
        """The user's password hashing algorithm when keyroll can compute it, else SHA-256."""
        info = self._call(f"read user {user!r}", "GET", f"/api/users/{_seg(user)}",
                          missing_ok=True) or {}
        algorithm = str(info.get("hashing_algorithm") or "")
        return algorithm if algorithm in _HASHES else _DEFAULT_HASH

    def grants_of(self, user: str) -> UserGrants:
        """The user's tags, permissions and topic permissions.

        Raises:
            TargetError: the user does not exist, or the API failed.
        """
        _check_name(user)
        step = f"read grants of user {user!r}"
        info = self._call(step, "GET", f"/api/users/{_seg(user)}")
        perms = self._call(step, "GET", f"/api/users/{_seg(user)}/permissions") or []
        topics = self._call(step, "GET", f"/api/users/{_seg(user)}/topic-permissions") or []
        limits = info.get("limits")
        return UserGrants(
            limits=tuple(sorted((str(k), int(v)) for k, v in limits.items()))
            if isinstance(limits, dict) else (),
            tags=_tags(info.get("tags")),
            permissions=tuple(sorted((str(p["vhost"]), str(p["configure"]), str(p["write"]),
                                      str(p["read"])) for p in perms)),
            topic_permissions=tuple(sorted((str(p["vhost"]), str(p["exchange"]),
                                            str(p["write"]), str(p["read"])) for p in topics)),
        )

    def set_password(self, user: str, password: SecretValue, tags: tuple[str, ...], *,
                     algorithm: str = _DEFAULT_HASH) -> None:
        """Create the user or replace its password (as a salted hash) and its tags.

        Open connections of the user stay open: RabbitMQ checks a password at login only.
        """
        _check_name(user)
        hashed = password_hash(password, algorithm)
        self._call(f"set password of user {user!r}", "PUT", f"/api/users/{_seg(user)}",
                   {"password_hash": hashed, "hashing_algorithm": algorithm,
                    "tags": ",".join(tags)},
                   secrets=(password, hashed))

    def mirror(self, source: str, dest: str) -> UserGrants:
        """Give ``dest`` exactly ``source``'s permissions, topic permissions and user limits.

        Idempotent: grants ``dest`` already has are rewritten, grants it has beyond
        ``source``'s are removed. Tags travel with `set_password`.

        Returns:
            ``source``'s grants, as copied.
        """
        _check_name(dest)
        want = self.grants_of(source)
        have = self.grants_of(dest)
        step = f"copy the grants of user {source!r} to {dest!r}"
        wanted_vhosts = {g[0] for g in want.permissions}
        for vhost, configure, write, read in want.permissions:
            self._call(step, "PUT", f"/api/permissions/{_seg(vhost)}/{_seg(dest)}",
                       {"configure": configure, "write": write, "read": read})
        for vhost in sorted({g[0] for g in have.permissions} - wanted_vhosts):
            self._call(step, "DELETE", f"/api/permissions/{_seg(vhost)}/{_seg(dest)}",
                       missing_ok=True)
        # topic permissions: the API deletes them per vhost, so clear a vhost whose set differs
        # and write it again
        for vhost in sorted({g[0] for g in (*want.topic_permissions, *have.topic_permissions)}):
            mine = {g for g in want.topic_permissions if g[0] == vhost}
            theirs = {g for g in have.topic_permissions if g[0] == vhost}
            if mine == theirs:
                continue
            if theirs:
                self._call(step, "DELETE", f"/api/topic-permissions/{_seg(vhost)}/{_seg(dest)}",
                           missing_ok=True)
            for _, exchange, write, read in sorted(mine):
                self._call(step, "PUT", f"/api/topic-permissions/{_seg(vhost)}/{_seg(dest)}",
                           {"exchange": exchange, "write": write, "read": read})
        wanted_limits = dict(want.limits)
        for name, value in sorted(wanted_limits.items()):
            if dict(have.limits).get(name) != value:
                self._call(step, "PUT", f"/api/user-limits/{_seg(dest)}/{_seg(name)}",
                           {"value": value})
        for name in sorted(set(dict(have.limits)) - set(wanted_limits)):
            self._call(step, "DELETE", f"/api/user-limits/{_seg(dest)}/{_seg(name)}",
                       missing_ok=True)
        return want

    def _connections(self, user: str) -> list[str]:
        _check_name(user)
        # the broker's connection tracking (every node of a cluster), current at once: the
        # statistics database behind GET /api/connections lists a new connection only after
        # collect_statistics_interval (5 s) or more, and cannot close it before that either
        rows = self._call(f"list connections of user {user!r}", "GET",
                          f"/api/connections/username/{_seg(user)}") or []
        return [str(row.get("name")) for row in rows if row.get("user") == user]

    def connection_count(self, user: str) -> int:
        """How many client connections are open under ``user`` right now."""
        return len(self._connections(user))

    def close_connections(self, user: str, reason: str = "credential revoked by keyroll") -> int:
        """Close every connection of ``user`` (incident mode); how many were open."""
        names = self._connections(user)
        if names:
            step = f"close connections of user {user!r}"
            with self._client(step) as client:
                answer = client.request("DELETE", f"/api/connections/username/{_seg(user)}",
                                        headers={"X-Reason": reason})
            if answer.status_code >= 300:
                raise target_error(_SYSTEM, self.where, step,
                                   f"the management API answered {answer.status_code}",
                                   "give the admin user the administrator tag",
                                   secrets=self._secrets())
        return len(names)

    # AMQP ---------------------------------------------------------------------------------

    def check_login(self, user: str, password: SecretValue) -> None:
        """Open an AMQP connection as ``user`` to the endpoint's vhost, then close it.

        Raises:
            TargetError: the login or the vhost was refused, or the broker cannot be reached.
        """
        pika = _pika()
        _check_name(user)
        amqp = self.amqp
        step = f"AMQP login as {user!r} to vhost {amqp.vhost!r}"
        ssl_options = pika.SSLOptions(_tls_context(), amqp.host) if amqp.tls else None
        params = pika.ConnectionParameters(
            host=amqp.host, port=amqp.port, virtual_host=amqp.vhost,
            credentials=pika.PlainCredentials(user, password.reveal(), erase_on_connect=True),
            ssl_options=ssl_options, connection_attempts=1, retry_delay=0,
            socket_timeout=self._timeout, stack_timeout=self._timeout,
            blocked_connection_timeout=self._timeout, heartbeat=0,
            client_properties={"connection_name": "keyroll check"},
        )
        where = f"{amqp.host}:{amqp.port}"
        errors = pika.exceptions
        try:
            connection = pika.BlockingConnection(params)
        except (errors.ProbableAuthenticationError, errors.AuthenticationError) as exc:
            raise target_error(_SYSTEM, where, step, "the login was refused",
                               "the password or the user is wrong", cause=exc,
                               secrets=self._secrets(password)) from None
        except errors.ProbableAccessDeniedError as exc:
            raise target_error(_SYSTEM, where, step, "the user may not open the vhost",
                               "grant the user permissions on the vhost", cause=exc,
                               secrets=self._secrets(password)) from None
        except errors.AMQPError as exc:
            raise target_error(_SYSTEM, where, step, "cannot connect",
                               "check that the broker runs and the AMQP URL is right; the "
                               "step can be retried", cause=_amqp_cause(exc),
                               secrets=self._secrets(password)) from None
        with contextlib.suppress(errors.AMQPError):
            connection.close()


def _amqp_cause(exc: BaseException) -> str:
    """pika's connection errors wrap a tuple of causes: name the innermost, briefly."""
    for _ in range(5):  # bounded: AMQPConnectionError(AMQPConnectorSocketConnectError(OSError))
        wrapped = getattr(exc, "exception", None)  # pika's per-phase connector errors
        inner = [wrapped] if isinstance(wrapped, BaseException) else list(exc.args)
        if not inner or not isinstance(inner[-1], BaseException):
            break
        exc = inner[-1]
    text = repr(exc) if isinstance(exc, OSError) else (str(exc) or type(exc).__name__)
    return (text.splitlines() or [type(exc).__name__])[0][:200]
