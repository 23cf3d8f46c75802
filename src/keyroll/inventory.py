"""The inventory, ``keyroll.toml``: which secrets exist, where, how often they rotate, who owns them.

It holds secret *classes* (seed 004 §1: JWT keys, field encryption, payment providers, bank
webhook, database and Redis passwords, OAuth secrets, object storage keys, notification tokens)
and per-environment policy (approvals, warn window, automatic rotation). It never holds a secret
value, and config that is not secret (URLs, model names) does not belong in it.

Parsed with the standard library's TOML reader and validated with pydantic; every error names
the file, the class and the field, and what is allowed (`load_inventory`).
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from keyroll.durations import format_duration, parse_duration
from keyroll.errors import InventoryError, UnknownSecret
from keyroll.generate import Format
from keyroll.jwk import DEFAULT_FORMAT_FOR_ALGORITHM, algorithm_problem
from keyroll.layout import DEFAULT_LAYOUT, VarNames, check_layout
from keyroll.model import Kind, SecretRef, Tier
from keyroll.window import ChangeWindow, parse_window

__all__ = [
    "DEFAULT_FILE",
    "DEFAULT_MIN_LENGTH",
    "HOOK_ACTIONS",
    "NOTIFY_KINDS",
    "BackupCommand",
    "EncryptionColumn",
    "EnvironmentPolicy",
    "EscrowConfig",
    "ExpectJson",
    "Hook",
    "Hooks",
    "Inventory",
    "JwtRequest",
    "KVDelivery",
    "KubernetesSecret",
    "NotifyConfig",
    "Overlap",
    "Preflight",
    "Rehearsal",
    "Rollout",
    "RolloutStatus",
    "SealedSecretHook",
    "SecretClass",
    "find_inventory",
    "load_inventory",
    "parse_inventory",
]

DEFAULT_FILE = "keyroll.toml"
#: the kubelet's default sync period (1 min) plus its Secret cache TTL and a margin: how long a
#: changed Secret takes to reach a mounted volume
MOUNTED_PROPAGATION = timedelta(seconds=90)
#: what a hook may do: exactly one of these per hook
HOOK_ACTIONS = ("run", "http", "jwt_request", "rollout_status", "write_dotenv", "write_jwks",
                "scan", "kubernetes_secret", "rollout", "sealed_secret", "kv_delivery",
                "write_tls")
def _at_most(limit: timedelta, hint: str) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if value > limit:
            raise ValueError(f"{format_duration(value)} is too long: at most {hint}")
        return value

    return AfterValidator(check)


# Ranges keep every sum of a time and a duration far from datetime's limits: an overlap that
# passes `inventory check` never overflows when the engine adds it to the promote time.
Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), _at_most(timedelta(days=3650), "3650d (10 years)")
]
Timeout = Annotated[
    timedelta, BeforeValidator(parse_duration), _at_most(timedelta(days=1), "24h")
]
_ENV_VAR = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"

#: `SecretClass.min_length` when the class does not say (JWT keys: `_MIN_LENGTH`).
DEFAULT_MIN_LENGTH = 16
_MIN_LENGTH = {Kind.JWT_SIGNING: 32}

_DEFAULT_GENERATOR: dict[Kind, Format | None] = {
    Kind.JWT_SIGNING: Format.BASE64_48,
    Kind.ENCRYPTION_KEY: Format.KEY_32,
    Kind.WEBHOOK_HMAC: Format.BASE64_48,
    Kind.API_KEY: Format.BASE64_48,
    Kind.POSTGRES_ROLE: Format.PASSWORD_32,
    Kind.REDIS_ACL: Format.PASSWORD_32,
    Kind.MYSQL_USER: Format.PASSWORD_32,
    Kind.RABBITMQ_USER: Format.PASSWORD_32,
    Kind.PROVIDER_SHARED: None,  # the provider's portal issues it; a person enters it
    Kind.OPAQUE: Format.BASE64_48,
    Kind.ISSUED_KEY: None,  # the provider's `issue` command prints it
    Kind.AWS_IAM: None,  # IAM CreateAccessKey returns it
    Kind.TLS_CERTIFICATE: None,  # an ACME CA issues it (rotation/strategies/tls_certificate)
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_KUBE_NAME = r"^(\{env\}|[a-z0-9])([-a-z0-9.]|\{env\})*$"


class KubernetesSecret(_Strict):
    """``kubernetes_secret = { name, namespace }``: server-side apply (field manager
    ``keyroll``) of the environment's variables into a Secret; other keys are kept.

    ``name``, ``namespace`` and ``context`` may hold ``{env}`` (the environment's name). ``context`` and
    ``kubeconfig`` pick the cluster (default: in-cluster config, else the current context of
    ``$KUBECONFIG`` / ``~/.kube/config``). ``classes`` limits the keys to those classes' variables
    (every hook that applies the same Secret must list the same classes).

    ``type = "kubernetes.io/tls"``: a TLS Secret of one ``tls-certificate`` class (the hook's
    own, or the one ``classes`` names): keys ``tls.crt`` (the chain) and ``tls.key``.
    """

    name: str = Field(pattern=_KUBE_NAME, max_length=253)
    namespace: str = Field(pattern=_KUBE_NAME, max_length=63)
    context: str | None = None
    kubeconfig: str | None = None
    classes: list[str] | None = None
    type: str = Field(default="Opaque", pattern="^(Opaque|kubernetes.io/tls)$")


class Rollout(_Strict):
    """``rollout = { kind = "Deployment", name, namespace, timeout }``: restart the pods (the
    pod template's ``restartedAt``, as ``kubectl rollout restart``) and wait until the rollout
    is complete, or fail the step with the rollout's condition message. ``poll``: seconds
    between status reads."""

    kind: str = Field(default="Deployment", pattern="^Deployment$")
    name: str = Field(pattern=_KUBE_NAME, max_length=253)
    namespace: str = Field(pattern=_KUBE_NAME, max_length=63)
    timeout: Timeout = timedelta(minutes=10)
    poll: float = Field(default=2.0, gt=0, le=60)
    context: str | None = None
    kubeconfig: str | None = None


class RolloutStatus(_Strict):
    """``rollout_status = { name, namespace, timeout }``: a verify check that waits until the
    Deployment's current rollout is complete (``kubectl rollout status``), without restarting
    it; fails with the rollout's condition message or at ``timeout``."""

    kind: str = Field(default="Deployment", pattern="^Deployment$")
    name: str = Field(pattern=_KUBE_NAME, max_length=253)
    namespace: str = Field(pattern=_KUBE_NAME, max_length=63)
    timeout: Timeout = timedelta(minutes=10)
    poll: float = Field(default=2.0, gt=0, le=60)
    context: str | None = None
    kubeconfig: str | None = None


class ExpectJson(_Strict):
    """``expect_json = { path = "$.checks.db", value = "ok" }``: the reply is JSON and the
    value at ``path`` (dotted names and ``[n]`` indexes from ``$``) equals ``value``."""

    path: str = Field(pattern=r"^\$?(\.[A-Za-z0-9_-]+|\[\d+\])*$", min_length=1)
    value: Any


class JwtRequest(_Strict):
    """``jwt_request = { url, method, claims, key }``: a verify check that signs a short-lived
    token with the rotation's key through `keyroll.runtime.jwt.JWTKeyRing` (the ring apps
    use, over the store) and calls an authenticated endpoint with it.

    Attributes:
        url: the endpoint (http or https).
        method: HTTP method.
        key: ``new`` signs with the rotation's new key (pending before promote, current
            after it), ``current`` with whatever the store holds as current when it runs.
        claims: extra claims (``sub``, ``aud``, ``iss``, ``scope``…); ``iat``/``exp`` are set.
        ttl: the token's lifetime.
        header, scheme: where the token goes (``Authorization: Bearer <token>``).
    """

    url: str
    method: str = Field(default="GET", pattern="^[A-Z]{3,10}$")
    key: Literal["new", "current"] = "new"
    claims: dict[str, Any] = {}
    ttl: Timeout = timedelta(minutes=5)
    header: str = Field(default="Authorization", pattern=r"^[A-Za-z0-9-]+$")
    scheme: str = Field(default="Bearer", pattern=r"^[A-Za-z0-9-]*$")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("jwt_request.url must be an http:// or https:// URL")
        return url


class SealedSecretHook(_Strict):
    """``sealed_secret = { path, cert, namespace, name, scope }``: write a ``SealedSecret``
    manifest sealed with the controller's public certificate (as ``kubeseal`` does) to
    ``path`` (a GitOps overlay, e.g. ``overlays/{env}/app-secrets.yaml``). ``scope``:
    ``strict`` (default: only this name in this namespace), ``namespace-wide`` or
    ``cluster-wide``. ``path`` and ``cert`` may hold ``{env}``."""

    path: str
    cert: str
    name: str = Field(pattern=_KUBE_NAME, max_length=253)
    namespace: str = Field(pattern=_KUBE_NAME, max_length=63)
    scope: str = Field(default="strict", pattern="^(strict|namespace-wide|cluster-wide)$")
    classes: list[str] | None = None


class KVDelivery(_Strict):
    """``kv_delivery = { mount, path }``: one OpenBao/Vault KV v2 entry per app and environment
    in the env-var layout (``JWT_SECRET``, ``_PREVIOUS``, ``_NEXT``, ``_KID``), for External
    Secrets' ``dataFrom.extract`` or the Vault Secrets Operator. ``path`` may hold ``{env}``;
    the server and token come from ``BAO_ADDR``/``VAULT_ADDR`` and ``BAO_TOKEN``/``VAULT_TOKEN``
    unless ``url`` is given (``token_env`` names another variable)."""

    mount: str = Field(default="secret", pattern=r"^[A-Za-z0-9_.-]+$")
    path: str = Field(pattern=r"^[A-Za-z0-9_.{}/-]+$")
    url: str | None = None
    token_env: str | None = None
    classes: list[str] | None = None


class Hook(_Strict):
    """One action run at a rotation step: a command, an HTTP check, or a .env write.

    Exactly one of ``run``, ``http``, ``write_dotenv``, ``write_jwks`` (the class's public keys
    as a JWKS file, for a web server or CDN to publish: asymmetric JWT classes), ``scan`` (a
    verify step: ``keyroll scan`` of these paths, and with ``git = true`` of the repository's
    history; it fails on a current or pending value found, and its counts become evidence). Commands run
    without a shell unless ``shell = true``; with ``stdin_dotenv = true`` they receive the environment's new
    ``KEY=value`` lines on stdin (never on argv or in their environment), e.g. for
    ``kubectl create secret generic api --from-env-file=/dev/stdin --dry-run=client -o yaml``.
    Commands see only PATH, HOME, locale, proxy and docker/kubectl variables, the rotation's
    ``KEYROLL_*`` context, and the variables named in ``pass_env`` (whose values are masked in
    the hook's output like every secret).
    """

    name: str | None = None
    run: str | list[str] | None = None
    shell: bool = False
    stdin_dotenv: bool = False
    pass_env: list[str] = []
    http: str | None = None
    jwt_request: JwtRequest | None = None
    rollout_status: RolloutStatus | None = None
    #: http / jwt_request: the request (``method`` of ``http``; headers, from env vars for
    #: secrets: ``headers_env = { X-Api-Key = "SMOKE_API_KEY" }``, masked in evidence), the
    #: expected status and optional JSON value, and retries: every ``interval`` until the
    #: check passes or ``until`` has passed (default: one attempt).
    method: str = Field(default="GET", pattern="^[A-Z]{3,10}$")
    headers: dict[str, str] = {}
    headers_env: dict[str, str] = {}
    body: str | None = None
    json_body: Any = None
    status: int = Field(default=200, ge=100, le=599)
    expect_json: ExpectJson | None = None
    until: Timeout | None = None
    interval: Annotated[timedelta, BeforeValidator(parse_duration),
                        _at_most(timedelta(minutes=10), "10m")] = timedelta(seconds=2)
    write_dotenv: str | None = None
    write_jwks: str | None = None
    kubernetes_secret: KubernetesSecret | None = None
    rollout: Rollout | None = None
    sealed_secret: SealedSecretHook | None = None
    kv_delivery: KVDelivery | None = None
    #: a folder (may hold ``{env}``) where a ``tls-certificate`` class's current chain and
    #: key are written as ``tls.crt`` (0644) and ``tls.key`` (0600)
    write_tls: str | None = None
    scan: list[str] | None = None
    git: bool = False
    timeout: Timeout = timedelta(seconds=60)
    environments: list[str] | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Hook:
        chosen = [k for k in HOOK_ACTIONS if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(f"a hook needs exactly one of {', '.join(HOOK_ACTIONS)}")
        if self.git and self.scan is None:
            raise ValueError("git = true belongs to a scan hook: { scan = [\".\"], git = true }")
        if self.http is not None and not self.http.startswith(("http://", "https://")):
            raise ValueError("http must be an http:// or https:// URL")
        request_fields = [k for k in ("body", "json_body", "expect_json", "until")
                          if getattr(self, k) is not None]
        request_fields += [k for k in ("headers", "headers_env") if getattr(self, k)]
        if request_fields and self.http is None and self.jwt_request is None:
            raise ValueError(f"{request_fields[0]} belongs to an http or jwt_request check")
        if self.body is not None and self.json_body is not None:
            raise ValueError("give body or json_body, not both")
        for name, var in self.headers_env.items():
            if not _ENV_VAR.match(var):
                raise ValueError(f"headers_env.{name}: {var!r} is not an env var name")
        for name in (*self.headers, *self.headers_env):
            if not re.match(r"^[A-Za-z0-9-]+$", name):
                raise ValueError(f"{name!r} is not an HTTP header name")
        return self

    @property
    def deadline(self) -> timedelta:
        """How long an http/jwt_request check keeps trying (0: one attempt)."""
        return self.until if self.until is not None else timedelta(0)

    @property
    def argv(self) -> list[str]:
        """The command as an argument list (``run`` split like a shell would, no shell)."""
        if self.run is None:
            return []
        return shlex.split(self.run) if isinstance(self.run, str) else list(self.run)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.http:
            return f"{self.method} {self.http}"
        if self.jwt_request:
            return f"JWT {self.jwt_request.method} {self.jwt_request.url}"
        if self.rollout_status:
            return (f"rollout status {self.rollout_status.kind} "
                    f"{self.rollout_status.namespace}/{self.rollout_status.name}")
        if self.write_dotenv:
            return f"write {self.write_dotenv}"
        if self.write_jwks:
            return f"write JWKS {self.write_jwks}"
        if self.kubernetes_secret:
            return (f"apply Secret {self.kubernetes_secret.namespace}/"
                    f"{self.kubernetes_secret.name}")
        if self.rollout:
            return f"rollout {self.rollout.kind} {self.rollout.namespace}/{self.rollout.name}"
        if self.sealed_secret:
            return f"write SealedSecret {self.sealed_secret.path}"
        if self.kv_delivery:
            return f"write KV {self.kv_delivery.mount}/{self.kv_delivery.path}"
        if self.write_tls:
            return f"write TLS {self.write_tls}"
        if self.scan is not None:
            return f"scan {' '.join(self.scan)}{' and git history' if self.git else ''}"
        return " ".join(self.argv)[:80]

    def applies_to(self, environment: str) -> bool:
        return self.environments is None or environment in self.environments


class Hooks(_Strict):
    """Hooks of a class, by step (each filtered per environment with ``environments``).

    Attributes:
        on_promote: after promote: write .env, ``docker compose up -d``, rollout restart.
        verify: after promote (and in test): health checks; a failure rolls back.
        revoke: incident mode, after retire: flush session caches, revoke refresh tokens.
        remaining: encryption keys: a command printing how many records still use the previous
            key; retire waits for 0.
    """

    on_promote: list[Hook] = []
    verify: list[Hook] = []
    revoke: list[Hook] = []
    remaining: list[Hook] = []


class Overlap(_Strict):
    """How long old and new are both accepted after promote.

    Attributes:
        min: never shorter than this.
        token_ttl: JWT: the longest lifetime of a token signed with the key (seed 004 §3.2:
            the refresh TTL); the overlap lasts at least ``token_ttl + margin``.
        margin: added to ``token_ttl`` (seed 004: 24 h).
        until_unused: also wait until nothing uses the old value, where that is measurable.
        settle: databases: how long no session of the old role must be seen.
        max: give up waiting for "unused" after this long and retire anyway (recorded).
        propagation: how long running apps take to pick up a new pending key (their key
            source's refresh interval, 5 s by default, plus a margin). Promote waits this long
            after create, so no instance sees a token signed with a key it has not loaded.
        usage_from: Prometheus ``/metrics`` URLs of apps using `FileKeySource` (or any key
            source exported by `keyroll.runtime.metrics`): ``keyroll_key_uses_total`` and
            ``keyroll_key_last_used_timestamp_seconds`` per kid, read by the usage-aware
            overlap besides what apps report into the store.
    """

    min: Duration = timedelta(0)
    token_ttl: Duration | None = None
    margin: Duration = timedelta(hours=24)
    until_unused: bool = True
    settle: Duration = timedelta(seconds=30)
    max: Duration = timedelta(days=45)
    propagation: Duration = timedelta(seconds=6)
    usage_from: Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)] = []

    @field_validator("usage_from")
    @classmethod
    def _metrics_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url[:80]!r}: usage_from takes http(s):// URLs of /metrics")
        return urls

    def deadline(self) -> timedelta:
        """The time-based part of the overlap: ``max(min, token_ttl + margin)``."""
        by_tokens = self.token_ttl + self.margin if self.token_ttl is not None else timedelta(0)
        return max(self.min, by_tokens)


class EncryptionColumn(_Strict):
    """A column holding field ciphertexts (for re-encryption and the retire gate).

    ``database_env`` names the env var with the database URL; it may hold ``{ENV}`` (the
    environment's name upper-cased, ``-``/``.`` as ``_``) or ``{env}``, so each environment
    counts its own database: ``DATABASE_URL_{ENV}`` reads ``DATABASE_URL_PROD`` for ``prod``.
    """

    table: str
    key: str = "id"
    column: str
    context: str | None = None
    database_env: str = "DATABASE_URL"

    @field_validator("database_env")
    @classmethod
    def _env_template(cls, text: str) -> str:
        sample = text.replace("{ENV}", "PROD").replace("{env}", "PROD")
        if not _ENV_VAR.match(sample):
            raise ValueError(
                f"{text!r}: use an env var name, optionally with {{ENV}} for the environment"
            )
        return text

    def dsn_var(self, environment: str) -> str:
        """The env var holding this column's database URL in ``environment``."""
        upper = re.sub(r"[^A-Z0-9_]", "_", environment.upper())
        return self.database_env.replace("{ENV}", upper).replace("{env}", upper)


class BackupCommand(_Strict):
    """``backup = { run = "…" }``: a command that writes the backup to ``$KEYROLL_BACKUP_PATH``
    (a 0600 file keyroll created; renamed into place only when the command and ``check``
    succeed). ``check``: a command that verifies the file (exit 0), with the same variable.
    Commands see what hooks see (``pass_env`` included)."""

    run: str | list[str]
    check: str | list[str] | None = None
    shell: bool = False
    pass_env: list[str] = []


class Preflight(_Strict):
    """One ``preflight = [{ backup = …, verify = true }]`` entry: a backup the plan step takes
    before anything changes; its path and SHA-256 become evidence.

    Attributes:
        backup: ``pg_dump`` (``pg_dump -Fc`` of ``dsn_env``'s database, verified with
            ``pg_restore --list``), ``sqlite`` (SQLite's online backup of ``database`` or
            ``dsn_env``'s ``sqlite:`` URL/path, verified with ``PRAGMA integrity_check``), or a
            `BackupCommand`.
        verify: check the artefact (pg_dump archives are always read back).
        dsn_env: the env var holding the database URL (never the URL itself).
        database: sqlite: the database file (relative to keyroll.toml).
        pg_dump: pg_dump: the binary (at least the server's major version; default: PATH).
        dir: where artefacts go (relative to keyroll.toml), named
            ``<env>-<class>-<rotation>.<ext>``.
        timeout: how long the backup may take.
        environments: only in these environments (default: all).
    """

    backup: Literal["pg_dump", "sqlite"] | BackupCommand
    verify: bool = True
    dsn_env: str | None = None
    database: str | None = None
    pg_dump: str | None = None
    dir: str = ".keyroll/backups"
    timeout: Timeout = timedelta(hours=1)
    environments: list[str] | None = None

    @model_validator(mode="after")
    def _source(self) -> Preflight:
        if self.dsn_env is not None and not _ENV_VAR.match(self.dsn_env):
            raise ValueError(f"dsn_env: {self.dsn_env!r} is not an env var name")
        if self.backup == "pg_dump" and self.dsn_env is None:
            raise ValueError('backup = "pg_dump" needs dsn_env: the env var with the database URL')
        if self.backup == "sqlite" and (self.dsn_env is None) == (self.database is None):
            raise ValueError('backup = "sqlite" needs exactly one of database (a file) and dsn_env')
        if self.database is not None and self.backup != "sqlite":
            raise ValueError("database belongs to a sqlite backup")
        if self.pg_dump is not None and self.backup != "pg_dump":
            raise ValueError("pg_dump (the binary) belongs to a pg_dump backup")
        return self

    @property
    def label(self) -> str:
        return self.backup if isinstance(self.backup, str) else "run"

    def applies_to(self, environment: str) -> bool:
        return self.environments is None or environment in self.environments


def _window(text: str) -> str:
    parse_window(text)  # ValueError says how to write it
    return text


Window = Annotated[str, AfterValidator(_window)]


class Rehearsal(_Strict):
    """What `Inventory.rehearsal_for` answers: a completed ``--drill`` rotation of the class in
    one of ``environments`` within ``within`` is required."""

    within: timedelta
    environments: list[str]


class EnvironmentPolicy(_Strict):
    """Per-environment rules.

    Attributes:
        approvals: people who must agree before a rotation runs (2 = two-person rule).
        warn_days: `keyroll status`/`notify` warn this many days before a secret is due.
        auto: `keyroll advance` starts due rotations by itself.
        production: values here must never equal a dev/ci value (startup validation).
        drill: rotations here are rehearsals (seed 004: staging first).
        approvers: who may approve a rotation here (names, or ``group:<name>`` for a group of
            ``[groups]`` or of the OpenBao identity); empty: anyone but the requester. A
            class's own ``approvers`` replace this list for that class.
    """

    approvals: int = Field(default=1, ge=1, le=5)
    approvers: list[Annotated[str, Field(min_length=1, max_length=200)]] = []
    warn_days: int = Field(default=7, ge=0, le=365)
    auto: bool = False
    production: bool = False
    drill: bool = False
    #: Backups the plan step takes before every rotation here (with the class's own).
    preflight: list[Preflight] = []
    #: ``"02:00-04:00 Asia/Ho_Chi_Minh"``: production rotations start only inside it.
    window: Window | None = None
    #: ``"14d"``: a production rotation needs a completed ``--drill`` rotation of the class in
    #: ``rehearsal_environment`` (default: the class's ``drill = true`` environments) within it.
    require_rehearsal: Duration | None = None
    rehearsal_environment: str | None = None


#: The rotation events `[notify]` can send (`keyroll.notify.events` maps the engine's to these).
NOTIFY_KINDS = (
    "approval.requested",  # a rotation waits for another person's `keyroll approve`
    "manual.waiting",      # a person must act (a provider portal, a drain)
    "step.failed",         # a step failed (a rollback or a stop follows)
    "rolled-back",         # a rotation ended rolled back
    "retired",             # the old value was retired: the rotation is complete
    "overlap.stalled",     # the overlap still waits past its max
    "journal.failed",      # the audit journal's hash chain does not verify
)


class NotifyConfig(_Strict):
    """Where reminders go. URLs and passwords are read from env vars, never written here."""

    webhook_url_env: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str | None = None
    smtp_to: list[str] = []
    smtp_user_env: str | None = None
    smtp_password_env: str | None = None
    smtp_starttls: bool = False
    #: Reminders of one run go out as one digest (false: one message per secret).
    digest: bool = True
    #: Rotation events (`keyroll.notify.events`): which kinds go out (default: all of them).
    events: list[str] | None = None
    #: A generic webhook for rotation events, signed Standard-Webhooks style: its URL and its
    #: signing secret (``whsec_`` + base64) are read from these env vars.
    event_webhook_url_env: str | None = None
    event_webhook_secret_env: str | None = None
    #: Also send rotation events to the Slack-compatible webhook and SMTP above.
    events_to_chat: bool = True
    events_to_mail: bool = True

    @field_validator("events")
    @classmethod
    def _known_events(cls, kinds: list[str] | None) -> list[str] | None:
        for kind in kinds or ():
            if kind not in NOTIFY_KINDS:
                raise ValueError(f"unknown event {kind!r}: use {', '.join(NOTIFY_KINDS)}")
        return kinds


class StoreConfig(_Strict):
    """Which store: ``sqlite:.keyroll/store.db`` (default, relative to keyroll.toml) or an
    ``openbao://`` URL (see docs/openbao.md)."""

    url: str = "sqlite:.keyroll/store.db"


class EscrowConfig(_Strict):
    """``[escrow]``: where encryption keys are sealed before retire destroys them.

    Attributes:
        public_key: a PEM file (relative to keyroll.toml) holding the escrow **public** key,
            X25519 or RSA >= 2048 bits; its private key stays off the keyroll host.
        public_key_env: or an env var holding that PEM.
        days: how long a sealed key is kept; default: the longest ``backup_retention_days``
            of any class (else `keyroll.escrow.DEFAULT_ESCROW_DAYS`).
    """

    public_key: str | None = None
    public_key_env: str | None = None
    days: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _one_source(self) -> EscrowConfig:
        if (self.public_key is None) == (self.public_key_env is None):
            raise ValueError("set exactly one of public_key (a PEM file) and public_key_env")
        if self.public_key_env is not None and not _ENV_VAR.match(self.public_key_env):
            raise ValueError(f"{self.public_key_env!r} is not an env var name")
        return self


class SecretClass(_Strict):
    """One class of secret (a row of seed 004 §1)."""

    name: str = Field(pattern=_NAME)
    kind: Kind
    description: str = ""
    env_vars: list[str] = Field(min_length=1)
    cadence_days: int = Field(ge=1, le=3650)
    tier: Tier
    blast_radius: str
    owner: str
    environments: list[str] = Field(min_length=1)
    generator: Format | None = None
    prefix: str = ""
    #: The shortest value `import`/`generate` accept without ``--allow-short`` and a rotation
    #: may create: 16 characters, 32 for JWT signing keys (seed 003).
    min_length: int = Field(default=DEFAULT_MIN_LENGTH, ge=1, le=4096)
    auto: bool | None = None
    #: Who may approve this class's rotations (replaces the environment's ``approvers``).
    approvers: list[Annotated[str, Field(min_length=1, max_length=200)]] = []
    overlap: Overlap = Overlap()
    hooks: Hooks = Hooks()
    options: dict[str, Any] = {}
    columns: list[EncryptionColumn] = []
    #: How long backups of what this class protects are kept (e.g. the pre-rotation pg_dump);
    #: the longest one is the default of ``[escrow] days``.
    backup_retention_days: int | None = Field(default=None, ge=1, le=3650)
    #: How the env vars of a key are spelled (`keyroll.layout`): ``suffix`` (default),
    #: ``seed-004``, ``seed-003`` (``*_CURRENT`` + ``*_PREVIOUS``), ``seed-001``
    #: (``OLD_SECRET_KEYS``). Exports, deploy hooks and `EnvKeySource.from_layout` share it.
    layout: str = DEFAULT_LAYOUT
    #: Backups the plan step takes (after the environment's), see `Preflight`.
    preflight: list[Preflight] = []
    #: The change window of this class (replaces the environment's).
    window: Window | None = None
    #: The rehearsal gate of this class (replaces the environment's).
    require_rehearsal: Duration | None = None
    rehearsal_environment: str | None = None

    @model_validator(mode="after")
    def _layout_fits(self) -> SecretClass:
        layout = check_layout(self.layout)  # ValueError names the layouts
        for var in self.env_vars:
            problem = layout.problem(var)
            if problem:
                raise ValueError(problem)
        return self

    def var_names(self, var: str) -> VarNames:
        """The layout's names for the key whose current value is in ``var``."""
        return check_layout(self.layout).names(var)

    @field_validator("env_vars")
    @classmethod
    def _env_var_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _ENV_VAR.match(name):
                raise ValueError(f"{name!r} is not an env var name: use A-Z, 0-9 and _")
        return names

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "kind" not in data:
            return data
        try:
            kind = Kind(data["kind"])
        except ValueError:
            return data  # the kind error is reported by the field itself
        default = _DEFAULT_GENERATOR[kind]
        if "generator" not in data and default is not None:
            options = data.get("options")
            algorithm = options.get("algorithm") if isinstance(options, dict) else None
            if default is Format.BASE64_48 and kind is Kind.JWT_SIGNING:
                # an asymmetric algorithm implies its key pair (ES256: ec-p256, …)
                keypair = DEFAULT_FORMAT_FOR_ALGORITHM.get(str(algorithm))
                default = Format(keypair) if keypair else default
            data = {**data, "generator": default.value}
        if "min_length" not in data and kind in _MIN_LENGTH:
            data = {**data, "min_length": _MIN_LENGTH[kind]}
        return data

    @model_validator(mode="after")
    def _generator_fits(self) -> SecretClass:
        if self.kind is Kind.JWT_SIGNING:
            problem = algorithm_problem(
                self.options.get("algorithm", "HS256"),
                self.generator.value if self.generator else None,
            )
            if problem:
                raise ValueError(problem)
        elif self.generator is not None and self.generator.is_keypair:
            raise ValueError(f"generator {self.generator.value!r} makes a JWT key pair: only "
                             "jwt-signing classes with an asymmetric options.algorithm use it")
        if self.prefix and self.generator is not None and self.generator.is_keypair:
            raise ValueError(f"generator {self.generator.value!r} makes a PEM key: remove prefix")
        return self

    def propagation(self, environment: str) -> timedelta:
        """How long promote waits after the new key was staged in ``environment``.

        ``overlap.propagation`` when the inventory sets it. Otherwise 6 s (key sources refresh
        every 5 s, files every 2 s), except where the class's deploy applies a Kubernetes
        Secret without a ``rollout``: those pods read the Secret as mounted files, which the
        kubelet updates only at its sync (`MOUNTED_PROPAGATION`), so promote waits that long.
        """
        if "propagation" in self.overlap.model_fields_set:
            return self.overlap.propagation
        deploys = [h for h in self.hooks.on_promote if h.applies_to(environment)]
        if (any(h.kubernetes_secret is not None for h in deploys)
                and not any(h.rollout is not None for h in deploys)):
            return max(self.overlap.propagation, MOUNTED_PROPAGATION)
        return self.overlap.propagation

    @property
    def previous_env_vars(self) -> list[str]:
        """The names the runtime reads the previous key from during an overlap (seed 004 §3.1:
        ``*_PREVIOUS``; per `layout`)."""
        return [self.var_names(name).previous for name in self.env_vars]


class Inventory(_Strict):
    """The whole of keyroll.toml."""

    project: str = "app"
    store: StoreConfig = StoreConfig()
    environments: dict[str, EnvironmentPolicy] = Field(min_length=1)
    classes: dict[str, SecretClass] = {}
    notify: NotifyConfig = NotifyConfig()
    #: Named groups of people for ``approvers`` (``group:cto``): ``cto = ["linh"]``.
    groups: dict[str, list[str]] = {}
    escrow: EscrowConfig | None = None
    path: Path | None = None

    def escrow_days(self, default: int) -> int:
        """How long escrow records are kept: ``[escrow] days``, else the longest
        ``backup_retention_days`` any class declares, else ``default``."""
        if self.escrow is not None and self.escrow.days is not None:
            return self.escrow.days
        declared = [c.backup_retention_days for c in self.classes.values()
                    if c.backup_retention_days is not None]
        return max(declared) if declared else default

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("classes"), dict):
            classes = {}
            for key, body in data["classes"].items():
                classes[key] = {**body, "name": key} if isinstance(body, dict) else body
            data = {**data, "classes": classes}
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> Inventory:
        for env in self.environments:
            if not re.match(_NAME, env):
                raise ValueError(f"environment name {env!r}: use lowercase letters, digits, -_.")
        fed_by: dict[tuple[str, str], str] = {}
        for cls in self.classes.values():
            for env in cls.environments:
                if env not in self.environments:
                    known = ", ".join(sorted(self.environments))
                    raise ValueError(
                        f"class {cls.name!r} names environment {env!r}, which is not defined "
                        f"(defined: {known}); add [environments.{env}]"
                    )
                for var in cls.env_vars:
                    if (env, var) in fed_by:
                        raise ValueError(
                            f"{var} in {env} is fed by both {fed_by[(env, var)]!r} and "
                            f"{cls.name!r}: one env var, one class"
                        )
                    fed_by[(env, var)] = cls.name
            for hook in (*cls.hooks.on_promote, *cls.hooks.verify, *cls.hooks.revoke):
                for env in hook.environments or ():
                    if env not in self.environments:
                        raise ValueError(f"a hook of {cls.name!r} names unknown environment {env!r}")
        for env_name, policy in self.environments.items():
            self._check_rehearsal(f"environments.{env_name}", policy.require_rehearsal,
                                  policy.rehearsal_environment, None)
            for entry in policy.preflight:
                self._check_envs(f"environments.{env_name}.preflight", entry.environments)
        for cls in self.classes.values():
            self._check_rehearsal(f"classes.{cls.name}", cls.require_rehearsal,
                                  cls.rehearsal_environment, cls)
            for entry in cls.preflight:
                self._check_envs(f"classes.{cls.name}.preflight", entry.environments)
            for env in cls.environments:
                gate = self.rehearsal_for(cls, env)
                if gate is not None and not gate.environments:
                    raise ValueError(
                        f"classes.{cls.name}: require_rehearsal in {env} but no rehearsal "
                        "environment: set rehearsal_environment or mark one of the class's "
                        "environments drill = true")
        return self

    def _check_envs(self, where: str, names: list[str] | None) -> None:
        for env in names or ():
            if env not in self.environments:
                raise ValueError(f"{where} names unknown environment {env!r}")

    def _check_rehearsal(self, where: str, within: timedelta | None, env: str | None,
                         cls: SecretClass | None) -> None:
        if env is None:
            return
        if within is None:
            raise ValueError(f"{where}.rehearsal_environment needs require_rehearsal "
                             '(e.g. "14d")')
        if env not in self.environments:
            raise ValueError(f"{where}.rehearsal_environment: {env!r} is not an environment")
        if self.environments[env].production:
            raise ValueError(f"{where}.rehearsal_environment: {env!r} is production; name the "
                             "staging environment where the drill runs")
        if cls is not None and env not in cls.environments:
            raise ValueError(f"{where}.rehearsal_environment: the class does not exist in {env!r}")

    # --- preflight, window, rehearsal -----------------------------------------------------

    def preflight_for(self, cls: SecretClass, environment: str) -> list[Preflight]:
        """The backups a rotation of ``cls`` in ``environment`` takes: the environment's, then
        the class's, each filtered by its ``environments``."""
        entries = [*self.policy(environment).preflight, *cls.preflight]
        return [entry for entry in entries if entry.applies_to(environment)]

    def window_for(self, cls: SecretClass, environment: str) -> ChangeWindow | None:
        """The change window of ``cls`` in ``environment`` (the class's replaces the
        environment's), or None."""
        text = cls.window if cls.window is not None else self.policy(environment).window
        return parse_window(text) if text is not None else None

    def rehearsal_for(self, cls: SecretClass, environment: str) -> Rehearsal | None:
        """The rehearsal gate of ``cls`` in a production ``environment``, or None."""
        policy = self.policy(environment)
        if not policy.production:
            return None
        if cls.require_rehearsal is not None:
            within, named = cls.require_rehearsal, cls.rehearsal_environment
        elif policy.require_rehearsal is not None:
            within, named = policy.require_rehearsal, policy.rehearsal_environment
        else:
            return None
        if named is not None:
            names = [named] if named in cls.environments else []
        else:
            names = [env for env in cls.environments
                     if env != environment and self.environments[env].drill]
        return Rehearsal(within=within, environments=names)

    # --- lookups --------------------------------------------------------------------------

    def get_class(self, name: str) -> SecretClass:
        """The class of that name. `UnknownSecret` (exit 2) lists the known ones."""
        try:
            return self.classes[name]
        except KeyError:
            known = ", ".join(sorted(self.classes)) or "none"
            raise UnknownSecret(
                f"no class {name!r} in the inventory (known: {known}); check keyroll.toml"
            ) from None

    def policy(self, environment: str) -> EnvironmentPolicy:
        try:
            return self.environments[environment]
        except KeyError:
            known = ", ".join(sorted(self.environments))
            raise UnknownSecret(
                f"no environment {environment!r} in the inventory (known: {known})"
            ) from None

    def resolve(self, name: str, environment: str) -> tuple[SecretClass, SecretRef]:
        """Check that the class exists in that environment; return it with its `SecretRef`."""
        cls = self.get_class(name)
        self.policy(environment)
        if environment not in cls.environments:
            raise UnknownSecret(
                f"class {name!r} does not exist in {environment!r} (it is in: "
                f"{', '.join(cls.environments)}); add it to its environments in keyroll.toml"
            )
        return cls, SecretRef(environment, name)

    def secrets(self, environment: str | None = None) -> list[tuple[SecretClass, SecretRef]]:
        """Every (class, secret) the inventory defines, optionally in one environment."""
        out = []
        for cls in self.classes.values():
            for env in cls.environments:
                if environment is None or env == environment:
                    out.append((cls, SecretRef(env, cls.name)))
        return out

    def approvers_for(self, cls: SecretClass, environment: str) -> list[str]:
        """Who may approve ``cls`` in ``environment`` (empty: anyone but the requester)."""
        return list(cls.approvers) or list(self.policy(environment).approvers)

    def may_approve(self, actor: str, actor_groups: Collection[str], allowed: Sequence[str]
                    ) -> bool:
        """``actor`` is named in ``allowed``, or belongs to a ``group:<name>`` entry of it
        (a group of ``[groups]``, or one of ``actor_groups`` from the store's identity)."""
        for entry in allowed:
            if entry == actor:
                return True
            group = entry.removeprefix("group:")
            if group != entry and (actor in self.groups.get(group, ()) or group in actor_groups):
                return True
        return False

    def class_for_env_var(self, var: str, environment: str) -> SecretClass | None:
        for cls, _ref in self.secrets(environment):
            if var in cls.env_vars:
                return cls
        return None


def _describe(error: Mapping[str, Any]) -> str:
    loc = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    kind = error["type"]
    if kind == "missing":
        return f"{loc}: required field is missing: add it"
    if kind == "extra_forbidden":
        field = loc.rsplit(".", 1)[-1]
        where = loc.rsplit(".", 1)[0] if "." in loc else "the top level"
        return f"{loc}: unknown field {field!r} in {where}: check the spelling (see `keyroll init`)"
    msg = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def parse_inventory(text: str, path: Path | None = None) -> Inventory:
    """Parse and validate inventory text.

    Raises:
        InventoryError: one line: the file, the field path and what is allowed.
    """
    where = str(path or DEFAULT_FILE)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{where}: not valid TOML: {exc}") from None
    try:
        inventory = Inventory.model_validate({**data, "path": path})
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        more = f" ({len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise InventoryError(f"{where}: {_describe(errors[0])}{more}") from None
    return inventory


def load_inventory(path: Path) -> Inventory:
    """Read and validate a keyroll.toml file.

    Raises:
        InventoryError: unreadable or invalid (one line with the fix).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(
            f"{path}: no such file: run `keyroll init` to write an example inventory"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    return parse_inventory(text, path)


def find_inventory(start: Path) -> Path:
    """Find keyroll.toml in ``start`` or its parents (like git finds .git)."""
    for folder in (start, *start.parents):
        candidate = folder / DEFAULT_FILE
        if candidate.is_file():
            return candidate
    raise InventoryError(
        f"no {DEFAULT_FILE} in {start} or its parents: run `keyroll init`, or pass --config"
    )

