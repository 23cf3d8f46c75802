"""Redis as a rotation target, through its ACL users (Redis 6+).

Two ways to rotate without a failed login:

* **dual-password**: one user holds two passwords during the overlap. Apply with
  `RedisTarget.add_password`, test with `RedisTarget.check_login`, retire with
  `RedisTarget.remove_password`. Connections stay on the one user, so the overlap cannot be
  measured per password: it ends by deadline.
* **alternating-users**: two users with the same permissions (``<name>_a``, ``<name>_b``,
  `RedisTarget.ensure_users`); apply with `RedisTarget.set_password` on the idle one, overlap
  until `RedisTarget.connection_count` of the old one is 0, retire with
  `RedisTarget.disable_user`; incident: `RedisTarget.kill_connections`.

Passwords are sent as their SHA-256 (``#<hex>`` to add, ``!<hex>`` to remove), the form Redis
stores, so the plaintext never reaches the server, its slowlog or ``MONITOR``.

Every change is persisted so a restart does not bring an old password back (`Persistence`):
a server that keeps users in an ACL file (``CONFIG GET aclfile``) gets ``ACL SAVE``; one
started from a config file (``INFO server`` ``config_file``) gets ``CONFIG REWRITE``, which
writes the ``user`` lines into it; one with neither (``redis-server --requirepass …``, as a
Compose ``command:`` often is) cannot be persisted from here, and `RedisTarget.persistence`
says so. redis-py is imported lazily; its exceptions become `TargetError` here and nowhere
else.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from keyroll._compat import StrEnum
from keyroll.errors import TargetError
from keyroll.model import SecretValue
from keyroll.targets._redact import target_error

if TYPE_CHECKING:
    import redis

__all__ = ["Persistence", "RedisTarget", "password_hash"]

_SYSTEM = "Redis"
# Rule tokens that touch passwords or the on/off switch: keyroll sets those itself.
_FORBIDDEN_RULES = ("on", "off", "nopass", "resetpass", "reset")
_FORBIDDEN_PREFIXES = (">", "<", "#", "!")


def _redis() -> ModuleType:
    try:
        import redis
        import redis.backoff
        import redis.retry
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise TargetError("Redis targets need redis-py: pip install 'keyroll[redis]'") from None
    return redis


def password_hash(password: SecretValue) -> str:
    """The lowercase hex SHA-256 of a password: how Redis stores and compares it."""
    return hashlib.sha256(password.reveal_bytes()).hexdigest()


class Persistence(StrEnum):
    """Where a Redis server keeps its users across a restart, and how keyroll saves them."""

    ACL_FILE = "acl-file"  #: ``aclfile`` is set: ``ACL SAVE``
    CONFIG_FILE = "config-file"  #: started from a redis.conf: ``CONFIG REWRITE``
    NONE = "none"  #: neither (``--requirepass`` on the command line): memory only

    @property
    def command(self) -> str | None:
        """The command that saves the users (None: nothing can)."""
        return {"acl-file": "ACL SAVE", "config-file": "CONFIG REWRITE"}.get(self.value)


def _check_user(user: str) -> str:
    if not isinstance(user, str) or not user or any(ch.isspace() for ch in user) \
            or "\x00" in user:
        raise TargetError(f"Redis user name {user!r} is empty or contains whitespace")
    return user


def _acl_setuser(client: redis.Redis, user: str, *rules: str) -> None:
    """Raw ``ACL SETUSER user rule…``: redis-py's typed ``acl_setuser`` cannot add a hashed
    password while keeping the others, and cannot reset keys without resetting passwords."""
    client.execute_command("ACL", "SETUSER", user, *rules)  # type: ignore[no-untyped-call]


class RedisTarget:
    """Administers the ACL users of one Redis server.

    Args:
        host: server address.
        port: server port.
        admin_user: a user allowed to run ``ACL`` and ``CLIENT`` (``default`` if the server
            uses ``requirepass``).
        admin_password: its password (None for a server without auth).
        tls: connect with TLS.
        timeout: socket and connect timeout, seconds.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        admin_user: str = "default",
        admin_password: SecretValue | None = None,
        tls: bool = False,
        timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.admin_user = admin_user
        self._admin_password = admin_password
        self._tls = tls
        self._timeout = timeout
        self.where = f"{host}:{port}"

    def __repr__(self) -> str:
        return f"RedisTarget({self.where!r}, admin_user={self.admin_user!r})"

    # connections -------------------------------------------------------------------------

    def _client(
        self, user: str | None, password: SecretValue | None, *, name: str | None = None
    ) -> redis.Redis:
        rd = _redis()
        client: redis.Redis = rd.Redis(
            host=self.host, port=self.port, username=user,
            password=password.reveal() if password is not None else None,
            ssl=self._tls, socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout, decode_responses=True,
            client_name=name, protocol=2,
            # One attempt: a refused login must fail now, not after retries that hide it.
            retry=rd.retry.Retry(rd.backoff.NoBackoff(), 0),
        )
        return client

    def _secrets(self, *values: SecretValue | None) -> list[str]:
        return [v.reveal() for v in (*values, self._admin_password) if v is not None]

    @contextlib.contextmanager
    def _admin(self, step: str, *secrets: SecretValue) -> Iterator[redis.Redis]:
        rd = _redis()
        client = self._client(self.admin_user, self._admin_password, name="keyroll")
        try:
            yield client
        except rd.exceptions.AuthenticationError as exc:
            raise target_error(
                _SYSTEM, self.where, step, "the admin credential was refused",
                "check the admin user and password keyroll uses for this server", cause=exc,
                secrets=self._secrets(*secrets),
            ) from None
        except rd.exceptions.ConnectionError as exc:
            raise target_error(
                _SYSTEM, self.where, step, "cannot reach the server",
                "check that Redis runs and the address is right; the step can be retried",
                cause=exc, secrets=self._secrets(*secrets),
            ) from None
        except rd.exceptions.RedisError as exc:
            raise target_error(
                _SYSTEM, self.where, step, "the server refused",
                "the admin user needs +@admin (ACL, CLIENT, CONFIG GET)", cause=exc,
                secrets=self._secrets(*secrets),
            ) from None
        finally:
            client.close()

    def _setuser(self, client: redis.Redis, user: str, *rules: str) -> None:
        _acl_setuser(client, user, *rules)
        self._save(client)

    @staticmethod
    def _mode(client: redis.Redis) -> Persistence:
        if client.config_get("aclfile").get("aclfile"):
            return Persistence.ACL_FILE
        info = client.info("server")
        if str(info.get("config_file") or ""):
            return Persistence.CONFIG_FILE
        return Persistence.NONE

    def _save(self, client: redis.Redis) -> Persistence:
        mode = self._mode(client)
        if mode is Persistence.ACL_FILE:
            client.acl_save()
        elif mode is Persistence.CONFIG_FILE:
            client.config_rewrite()
        return mode

    def _require_user(self, client: redis.Redis, user: str, step: str) -> dict[str, Any]:
        info = client.acl_getuser(user)
        if not info:
            raise target_error(
                _SYSTEM, self.where, step, "the user does not exist",
                "create it first (ensure_users, or ACL SETUSER by hand) and check the name",
            )
        return dict(info)

    # plan / test --------------------------------------------------------------------------

    def check_login(self, user: str, password: SecretValue) -> None:
        """Authenticate as ``user`` on a fresh connection and ``PING`` (needs only ``+ping``).

        Raises:
            TargetError: the credential is refused or the server is unreachable.
        """
        _check_user(user)
        rd = _redis()
        step = f"login as user {user!r}"
        client = self._client(user, password)
        try:
            client.ping()
        except rd.exceptions.AuthenticationError as exc:
            raise target_error(
                _SYSTEM, self.where, step, "the credential was refused",
                "do not rotate until the store and Redis agree (check user and password)",
                cause=exc, secrets=self._secrets(password),
            ) from None
        except rd.exceptions.RedisError as exc:
            raise target_error(
                _SYSTEM, self.where, step, "cannot log in",
                "check that Redis runs, the address, and the user's +ping permission",
                cause=exc, secrets=self._secrets(password),
            ) from None
        finally:
            client.close()

    def user_exists(self, user: str) -> bool:
        """Whether the ACL user exists."""
        _check_user(user)
        with self._admin(f"look up user {user!r}") as client:
            return bool(client.acl_getuser(user))

    def has_password(self, user: str, password: SecretValue) -> bool:
        """Whether ``password`` is one of ``user``'s passwords (compares hashes, not values).

        Lets a resumed step see that it already ran.
        """
        _check_user(user)
        step = f"read passwords of user {user!r}"
        with self._admin(step, password) as client:
            info = self._require_user(client, user, step)
        return password_hash(password) in [str(h) for h in info.get("passwords") or []]

    # dual-password mode -------------------------------------------------------------------

    def add_password(self, user: str, password: SecretValue) -> None:
        """Add a password to an existing user, keeping its others (dual-password apply).

        Raises:
            TargetError: the user does not exist (keyroll never creates it by accident) or
                the server refused.
        """
        _check_user(user)
        step = f"add password to user {user!r}"
        with self._admin(step, password) as client:
            self._require_user(client, user, step)
            self._setuser(client, user, "#" + password_hash(password))

    def remove_password(self, user: str, password: SecretValue) -> None:
        """Remove one password of ``user`` (dual-password retire). No-op if it is not set.

        Raises:
            TargetError: it is the user's only password (the user would be locked out), the
                user does not exist, or the server refused.
        """
        _check_user(user)
        step = f"remove password from user {user!r}"
        digest = password_hash(password)
        with self._admin(step, password) as client:
            info = self._require_user(client, user, step)
            hashes = [str(h) for h in info.get("passwords") or []]
            if digest not in hashes:
                return
            if len(hashes) == 1:
                raise target_error(
                    _SYSTEM, self.where, step, "it is the user's only password",
                    "add the new password first (add_password); refusing to lock the user out",
                )
            self._setuser(client, user, "!" + digest)

    # alternating-users mode ---------------------------------------------------------------

    def ensure_users(self, users: Sequence[str], rules: Sequence[str]) -> None:
        """Give each user exactly these permission rules; create missing users disabled.

        Existing users keep their passwords and on/off state; their key, channel and command
        permissions are reset to ``rules`` in one ``ACL SETUSER`` (atomic per user).

        Args:
            users: the user names (``app_a``, ``app_b``).
            rules: ACL rules without password or on/off tokens, e.g.
                ``["~cache:*", "&*", "+@read", "+@write", "-@dangerous"]``.

        Raises:
            TargetError: a rule touches passwords or on/off, a name is invalid, or the server
                refused a rule.
        """
        for user in users:
            _check_user(user)
        for rule in rules:
            if not rule or rule.lower() in _FORBIDDEN_RULES or rule.startswith(
                _FORBIDDEN_PREFIXES
            ):
                raise TargetError(
                    f"Redis ACL rule {rule!r} is not allowed in the inventory: keyroll "
                    "manages passwords and on/off itself; give key, channel and command rules"
                )
        with self._admin(f"ensure users {', '.join(map(repr, users))}") as client:
            for user in users:
                base = ["resetkeys", "resetchannels", "-@all"]
                if not client.acl_getuser(user):
                    base = ["off", "resetpass", *base]
                _acl_setuser(client, user, *base, *rules)
            self._save(client)

    def permissions_of(self, user: str) -> list[str]:
        """The key, channel and command rules of ``user`` (as ``ACL LIST`` shows them).

        Feed them to `ensure_users` to give an alternating pair exactly the permissions an
        existing single user has. Password hashes and on/off are left out.

        Raises:
            TargetError: the user does not exist, or uses selectors (``(…)``), which keyroll
                does not copy.
        """
        _check_user(user)
        step = f"read permissions of user {user!r}"
        with self._admin(step) as client:
            self._require_user(client, user, step)
            lines = [str(line) for line in client.acl_list()]
        prefix = f"user {user} "
        line = next((item for item in lines if item.startswith(prefix)), None)
        if line is None:
            raise target_error(_SYSTEM, self.where, step, "ACL LIST does not show the user",
                               "check the name")
        rest = line[len(prefix):]
        if "(" in rest:
            raise target_error(
                _SYSTEM, self.where, step, "the user has selectors",
                "give the rules for the alternating users explicitly in the inventory")
        return [
            token for token in rest.split()
            if token.lower() not in _FORBIDDEN_RULES and not token.startswith(_FORBIDDEN_PREFIXES)
        ]

    def set_password(self, user: str, password: SecretValue) -> None:
        """Make ``password`` the only password of ``user`` and enable it (alternating apply).

        Call it on the idle user only: a session authenticated with the old password keeps
        working, but new logins with it are refused.
        """
        _check_user(user)
        step = f"set password of user {user!r}"
        with self._admin(step, password) as client:
            self._require_user(client, user, step)
            self._setuser(client, user, "resetpass", "#" + password_hash(password), "on")

    def disable_user(self, user: str) -> None:
        """Remove every password of ``user`` and switch it off (alternating retire).

        Connections already authenticated as the user stay open: `kill_connections` ends them.
        """
        _check_user(user)
        step = f"disable user {user!r}"
        with self._admin(step) as client:
            self._require_user(client, user, step)
            self._setuser(client, user, "resetpass", "off")

    def connection_count(self, user: str) -> int:
        """Client connections now authenticated as ``user`` (``CLIENT LIST``), ours excluded."""
        _check_user(user)
        with self._admin(f"count connections of user {user!r}") as client:
            own = client.client_id()
            return sum(
                1 for entry in client.client_list()
                if entry.get("user") == user and str(entry.get("id")) != str(own)
            )

    def kill_connections(self, user: str) -> int:
        """Close every connection authenticated as ``user`` (incident mode); return how many."""
        _check_user(user)
        with self._admin(f"kill connections of user {user!r}") as client:
            killed = client.client_kill_filter(user=user, skipme=True)
        return int(killed)

    def persistence(self) -> Persistence:
        """How this server keeps its users across a restart (changes nothing)."""
        with self._admin("find where users persist (CONFIG GET aclfile, INFO server)") as client:
            return self._mode(client)

    def persist(self) -> Persistence:
        """Save the users where the server keeps them (``ACL SAVE`` or ``CONFIG REWRITE``);
        return how. `Persistence.NONE`: nothing was saved (memory only).

        Every change above already does this; the plan step calls it to prove the save works
        (a read-only ACL or config file fails here, before anything changed), and it can be
        called after changing users by hand.

        Raises:
            TargetError: the save was refused (e.g. the file is not writable).
        """
        with self._admin("persist users (ACL SAVE / CONFIG REWRITE)") as client:
            return self._save(client)
