"""TLS certificates from an ACME CA, renewed before their renew window, with no downtime.

============ ==================================================================================
plan         the current bundle parses and its key matches; the CA's directory answers
create       a new private key (EC P-256 or RSA, `cryptography`) kept in the store *before*
             the order; an order for ``options.domains``; HTTP-01 answered (standalone
             responder or webroot); finalize; the chain downloaded. Resumable: see below
test         the new key matches the leaf, the leaf names every domain, the chain verifies
             against ``options.serve_ca`` (else the system trust) and the certificate is not
             already inside its renew window
promote      the deploy hooks deliver it (``write_tls`` files, a ``kubernetes.io/tls``
             Secret …)
overlap      the old certificate stays (nothing revokes it) until every ``options.serve_check``
             endpoint serves the new leaf with a chain that verifies (servers that have not
             reloaded still serve the old one), and ``overlap.min`` passed
retire       the old version leaves the store; with ``options.revoke_on_retire`` (and always in
             incident mode, reason keyCompromise) its certificate is revoked at the CA
rollback     before promote: the unused new certificate is revoked (best effort, recorded)
============ ==================================================================================

Crash safety of the order. The CA's side effects are an order and, once finalized, an issued
certificate; keyroll's side effect that matters is the private key. So the key is stored first
(secret ``<name>.acme``, label ``pending``, beside the ACME account key under ``current``), and
the order's URL and stage are written to the store's bookkeeping (``acme-order:<rotation>``)
before each step the CA remembers: ``ordered`` before the challenges, ``finalizing`` before
the CSR is sent, ``issued`` (with the certificate URL) once it is. A rerun after a crash reads
the order back: a ``valid`` order's certificate is downloaded again, never issued twice; a
``ready`` one is finalized; an ``invalid`` one is abandoned and a new order made, said in the
evidence (``abandoned_orders``) and in a progress line. After the engine stored the version,
apply destroys the pending key copy and the bookkeeping.

Options (``[classes.<name>].options``)::

    directory_url     the CA's ACME directory (https; required)
    domains           the DNS names of the certificate (required; the first is the subject)
    http01            { listen = "0.0.0.0:80" } or { webroot = "/var/www/html" } (required)
    key_type          ec-p256 (default) | rsa-2048 | rsa-3072
    renew_before      "30d" (default) or a fraction of the lifetime ("1/3", 0.33)
    contact           mailto: address for the account
    ca_bundle         PEM file that verifies the CA's HTTPS (pebble, a private CA)
    serve_check       ["host:port", …] endpoints that must serve the new leaf before retire
    serve_ca          PEM file the served chains verify against (default: system trust)
    server_name       SNI for serve_check (default: the first domain)
    revoke_on_retire  revoke the old certificate at retire (default false)
"""

from __future__ import annotations

import json
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from keyroll.errors import KeyrollError, RotationRefused, StepFailed, TargetError, UsageError
from keyroll.inventory import SecretClass
from keyroll.model import Kind, Label, SecretRef, SecretValue, Version
from keyroll.rotation.strategies._options import option_error
from keyroll.rotation.strategies.base import StepContext, Strategy, Verdict
from keyroll.tlscert import (
    DEFAULT_RENEW_BEFORE,
    KEY_TYPES,
    Bundle,
    BundleError,
    certificate_meta,
    due_at,
    make_csr,
    new_private_key,
    parse_renew_before,
)

__all__ = ["TlsCertificateStrategy", "TlsOptions", "acme_ref", "tls_options"]

_KNOWN = ("directory_url", "domains", "http01", "key_type", "renew_before", "contact",
          "ca_bundle", "serve_check", "serve_ca", "server_name", "revoke_on_retire")
_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}"
                     r"[a-z0-9])?$")
_ACCOUNT_ROLE = "acme-account"
_KEY_ROLE = "certificate-key"
#: RFC 5280 revocation reasons
_KEY_COMPROMISE, _SUPERSEDED, _CESSATION = 1, 4, 5


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """A ``tls-certificate`` class's options, checked (see the module docstring)."""

    directory_url: str
    domains: tuple[str, ...]
    http01_listen: str | None
    http01_webroot: str | None
    key_type: str
    renew_before: object
    contact: str | None
    ca_bundle: str | None
    serve_check: tuple[tuple[str, int], ...]
    serve_ca: str | None
    server_name: str
    revoke_on_retire: bool


def _endpoint(cls: SecretClass, text: object, option: str = "serve_check") -> tuple[str, int]:
    from keyroll.targets.http01 import parse_listen

    if not isinstance(text, str):
        raise option_error(cls, option, 'a list of "host:port" endpoints')
    try:
        return parse_listen(text)
    except UsageError as exc:
        raise option_error(cls, option, str(exc)) from None


def tls_options(cls: SecretClass) -> TlsOptions:
    """The class's options, checked.

    Raises:
        UsageError: one line naming the class and the option.
    """
    opts = cls.options
    unknown = sorted(set(opts) - set(_KNOWN))
    if unknown:
        raise option_error(cls, unknown[0], f"unknown option (known: {', '.join(_KNOWN)})")
    url = opts.get("directory_url")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise option_error(cls, "directory_url", "required: the CA's ACME directory, an "
                           "https:// URL (e.g. https://acme-v02.api.letsencrypt.org/directory)")
    domains = opts.get("domains")
    if not isinstance(domains, list) or not domains:
        raise option_error(cls, "domains", 'required: the names, e.g. ["app.example.com"]')
    for name in domains:
        if not isinstance(name, str) or len(name) > 253 or not _DOMAIN.match(name):
            shown = name[:80] if isinstance(name, str) else type(name).__name__
            raise option_error(cls, "domains", f"{shown!r} is not a lowercase DNS name")
        if name.startswith("*."):
            raise option_error(cls, "domains", f"{name!r}: wildcards need DNS-01, which keyroll "
                               "does not answer; list the names")
    if len(set(domains)) != len(domains):
        raise option_error(cls, "domains", "lists a name twice")
    http01 = opts.get("http01")
    if not isinstance(http01, dict) or len(http01) != 1 or not set(http01) <= {"listen",
                                                                                "webroot"}:
        raise option_error(cls, "http01", 'required: { listen = "0.0.0.0:80" } (keyroll '
                           'answers) or { webroot = "/var/www/html" } (your web server does)')
    listen, webroot = http01.get("listen"), http01.get("webroot")
    if listen is not None:
        _endpoint(cls, listen, "http01")
    if webroot is not None and (not isinstance(webroot, str) or not webroot):
        raise option_error(cls, "http01", "webroot must be a folder path")
    key_type = opts.get("key_type", "ec-p256")
    if key_type not in KEY_TYPES:
        raise option_error(cls, "key_type", f"{key_type!r}: use one of {', '.join(KEY_TYPES)}")
    renew_before = opts.get("renew_before", DEFAULT_RENEW_BEFORE)
    try:
        parse_renew_before(renew_before)
    except ValueError as exc:
        raise option_error(cls, "renew_before", str(exc)) from None
    texts = {}
    for name in ("contact", "ca_bundle", "serve_ca", "server_name"):
        value = opts.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise option_error(cls, name, "must be a non-empty string")
        texts[name] = value
    contact = texts["contact"]
    if contact is not None and not contact.startswith("mailto:"):
        raise option_error(cls, "contact", "use mailto:ops@example.com")
    checks = opts.get("serve_check", [])
    if not isinstance(checks, list):
        raise option_error(cls, "serve_check", 'a list of "host:port" endpoints')
    revoke = opts.get("revoke_on_retire", False)
    if not isinstance(revoke, bool):
        raise option_error(cls, "revoke_on_retire", "true or false")
    if len(cls.name) > 58:
        raise UsageError(f"class {cls.name!r}: a tls-certificate class name has at most 58 "
                         "characters (its ACME keys live in '<name>.acme')")
    return TlsOptions(url, tuple(domains), listen, webroot, str(key_type), renew_before,
                      contact, texts["ca_bundle"], tuple(_endpoint(cls, c) for c in checks),
                      texts["serve_ca"], texts["server_name"] or domains[0], revoke)


def acme_ref(ref: SecretRef) -> SecretRef:
    """Where a class's ACME keys live: the account key (``current``) and the key of the
    certificate being ordered (``pending``)."""
    return SecretRef(ref.environment, f"{ref.name}.acme")


def _order_key(rotation: str) -> str:
    return f"acme-order:{rotation}"


def _path(ctx: StepContext, text: str | None) -> str | None:
    return str(ctx.workdir / Path(text).expanduser()) if text else None


class TlsCertificateStrategy(Strategy):
    """Certificates issued by an ACME CA (see the module docstring)."""

    kind = Kind.TLS_CERTIFICATE

    def __init__(self) -> None:
        self._issued: dict[str, Any] = {}

    def validate(self, cls: SecretClass) -> None:
        tls_options(cls)

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _bundle(ctx: StepContext, version: Version | None) -> Bundle:
        try:
            return Bundle.parse(ctx.value(version))
        except BundleError as exc:
            number = version.number if version is not None else "?"
            raise StepFailed(f"{ctx.ref}: version {number} is not a certificate bundle: {exc}"
                             ) from None

    def _client(self, ctx: StepContext, opts: TlsOptions, account_key: SecretValue) -> Any:
        from keyroll.targets.acme import AcmeClient

        return AcmeClient(opts.directory_url, account_key,
                          ca_bundle=_path(ctx, opts.ca_bundle))

    @staticmethod
    def _responder(ctx: StepContext, opts: TlsOptions) -> AbstractContextManager[Any]:
        from keyroll.targets.http01 import StandaloneResponder, WebrootResponder, parse_listen

        if opts.http01_listen is not None:
            return StandaloneResponder(*parse_listen(opts.http01_listen))
        assert opts.http01_webroot is not None
        return WebrootResponder(Path(str(_path(ctx, opts.http01_webroot))))

    @staticmethod
    def _adopt(ctx: StepContext, ref: SecretRef, label: Label, role: str,
               rotation: str | None) -> Version | None:
        """The labelled key of ``role``; or one a crash stored without its label (adopted)."""
        labels = ctx.store.get_labels(ref)
        number = labels.get(label)
        if number is not None:
            version = ctx.store.get_version(ref, number)
            if version.meta.get("role") == role and (rotation is None
                                                     or version.meta.get("rotation") == rotation):
                return version
            return None
        stray = [v for v in ctx.store.list_versions(ref) if not v.destroyed
                 and v.meta.get("role") == role
                 and (rotation is None or v.meta.get("rotation") == rotation)]
        if not stray:
            return None
        ctx.store.set_labels(ref, expected={label: None}, new={label: stray[-1].number},
                             fence=ctx.fence)
        return stray[-1]

    def _account_key(self, ctx: StepContext) -> SecretValue:
        ref = acme_ref(ctx.ref)
        version = self._adopt(ctx, ref, Label.CURRENT, _ACCOUNT_ROLE, None)
        if version is None:
            if ctx.store.get_labels(ref).get(Label.CURRENT) is not None:
                raise StepFailed(f"{ref}: its current version is not an ACME account key")
            version = ctx.store.put_version(ref, new_private_key("ec-p256"), created_at=ctx.now,
                                            meta={"role": _ACCOUNT_ROLE}, fence=ctx.fence)
            ctx.store.set_labels(ref, expected={Label.CURRENT: None},
                                 new={Label.CURRENT: version.number}, fence=ctx.fence)
        return ctx.store.read_value(ref, version.number)

    def _certificate_key(self, ctx: StepContext, opts: TlsOptions) -> SecretValue:
        ref = acme_ref(ctx.ref)
        version = self._adopt(ctx, ref, Label.PENDING, _KEY_ROLE, ctx.rotation)
        if version is None:
            stale = ctx.store.get_labels(ref).get(Label.PENDING)
            version = ctx.store.put_version(
                ref, new_private_key(opts.key_type), created_at=ctx.now,
                meta={"role": _KEY_ROLE, "rotation": ctx.rotation, "key_type": opts.key_type},
                fence=ctx.fence)
            ctx.store.set_labels(ref, expected={Label.PENDING: stale},
                                 new={Label.PENDING: version.number}, fence=ctx.fence)
        return ctx.store.read_value(ref, version.number)

    @staticmethod
    def _note(ctx: StepContext, **fields: Any) -> dict[str, Any]:
        key = _order_key(ctx.rotation)
        note: dict[str, Any] = json.loads(ctx.store.get_meta(key) or "{}")
        note.update(fields)
        ctx.store.put_meta(key, json.dumps(note, sort_keys=True), fence=ctx.fence)
        return note

    # --- steps -----------------------------------------------------------------------------

    def plan(self, ctx: StepContext) -> None:
        opts = tls_options(ctx.cls)
        if ctx.old is not None:
            bundle = self._bundle(ctx, ctx.old)
            meta = certificate_meta(bundle)
            ctx.evidence["current_certificate"] = {
                k: meta[k] for k in ("cert_sha256", "serial", "names", "not_after")}
        try:
            with self._client(ctx, opts, self._account_key(ctx)):
                pass
        except TargetError as exc:
            raise RotationRefused(f"{ctx.ref}: the CA cannot be reached, so the rotation did "
                                  f"not start and nothing was changed: {exc}") from None
        ctx.evidence["acme"] = {"directory": opts.directory_url, "domains": list(opts.domains)}

    def create(self, ctx: StepContext) -> SecretValue:
        opts = tls_options(ctx.cls)
        account_key = self._account_key(ctx)
        key = self._certificate_key(ctx, opts)
        csr = make_csr(key, opts.domains)
        note: dict[str, Any] = json.loads(ctx.store.get_meta(_order_key(ctx.rotation)) or "{}")
        with self._client(ctx, opts, account_key) as client:
            ctx.evidence["account"] = client.register(opts.contact)
            order = client.order(note["order"]) if note.get("order") else None
            if order is not None and order.status == "invalid":
                ctx.emit(f"ACME order {order.url} is invalid ({order.error}); ordering again")
                ctx.evidence.setdefault("abandoned_orders", []).append(
                    {"order": order.url, "stage": note.get("stage"), "error": order.error})
                order = None
            elif order is not None:
                ctx.evidence["resumed_order"] = {"order": order.url, "status": order.status,
                                                 "stage": note.get("stage")}
            if order is None:
                order = client.new_order(csr)
                note = self._note(ctx, order=order.url, stage="ordered")
            if order.status == "pending":
                with self._responder(ctx, opts) as responder:
                    ctx.evidence["validated"] = client.authorize(order.url, responder)
                order = client.order(order.url)
            if order.status == "ready":
                note = self._note(ctx, stage="finalizing")
                order = client.finalize(order.url, csr)
            elif order.status == "processing":
                order = client.wait_issued(order.url)
            if order.status != "valid":
                raise StepFailed(f"{ctx.ref}: ACME order {order.url} ended {order.status}: "
                                 f"{order.error or 'no detail from the CA'}")
            if note.get("stage") != "issued":
                note = self._note(ctx, stage="issued", certificate=order.certificate)
            chain = client.certificate(order)
        try:
            value = Bundle.compose(chain, key)
            bundle = Bundle.parse(value)
        except BundleError as exc:
            raise StepFailed(f"{ctx.ref}: the CA's answer is not a certificate chain: {exc}"
                             ) from None
        if not bundle.key_matches():
            raise StepFailed(f"{ctx.ref}: the certificate of order {order.url} is not for the "
                             "key keyroll stored for it; nothing was stored")
        self._issued = {**certificate_meta(bundle), "order": order.url}
        ctx.evidence["issued"] = {k: self._issued[k] for k in
                                  ("order", "cert_sha256", "serial", "names", "not_after")}
        return value

    def version_meta(self, ctx: StepContext) -> dict[str, Any]:
        return dict(self._issued)

    def apply(self, ctx: StepContext) -> None:
        """The bundle is in the store: drop the order's bookkeeping and the key's copy."""
        self._forget_order(ctx)

    def _forget_order(self, ctx: StepContext) -> None:
        ref = acme_ref(ctx.ref)
        labels = ctx.store.get_labels(ref)
        for version in ctx.store.list_versions(ref):
            if version.destroyed or version.meta.get("rotation") != ctx.rotation:
                continue
            if labels.get(Label.PENDING) == version.number:
                ctx.store.set_labels(ref, expected={Label.PENDING: version.number},
                                     new={Label.PENDING: None}, fence=ctx.fence)
            ctx.store.destroy_version(ref, version.number, fence=ctx.fence)
        if ctx.store.get_meta(_order_key(ctx.rotation)) is not None:
            ctx.store.put_meta(_order_key(ctx.rotation), None, fence=ctx.fence)

    def test(self, ctx: StepContext) -> None:
        opts = tls_options(ctx.cls)
        bundle = self._bundle(ctx, ctx.new)
        if not bundle.key_matches():
            raise StepFailed(f"{ctx.ref}: the new certificate's key does not match its leaf")
        meta = certificate_meta(bundle)
        missing = sorted(set(opts.domains) - set(meta["names"]))
        if missing:
            raise StepFailed(f"{ctx.ref}: the new certificate does not name {missing[0]}")
        self._verify_chain(ctx, opts, bundle)
        due = due_at(datetime.fromisoformat(meta["not_before"]),
                     datetime.fromisoformat(meta["not_after"]), opts.renew_before)
        if due <= ctx.now:
            raise StepFailed(f"{ctx.ref}: the new certificate is already inside its renew "
                             f"window (expires {meta['not_after']}): shorten "
                             "options.renew_before")
        ctx.evidence["checked"] = {"key_matches": True, "names": meta["names"],
                                   "chain_verified": True, "not_after": meta["not_after"],
                                   "due_at": due.isoformat()}

    def _verify_chain(self, ctx: StepContext, opts: TlsOptions, bundle: Bundle) -> None:
        """The chain verifies for the first domain against ``serve_ca`` or the system trust
        (`cryptography`'s RFC 5280 path validation). At the wall clock, as every TLS client
        will: a clock moved for a drill (``--now``) must not make a real chain look valid."""
        import ssl

        from cryptography import x509
        from cryptography.x509 import verification

        trust = _path(ctx, opts.serve_ca) or ssl.get_default_verify_paths().cafile
        try:
            roots = x509.load_pem_x509_certificates(Path(str(trust)).read_bytes())
        except (OSError, ValueError) as exc:
            raise StepFailed(f"{ctx.ref}: cannot read the trust for the chain "
                             f"(options.serve_ca): {type(exc).__name__}") from None
        certs = bundle.certificates()
        verifier = (verification.PolicyBuilder().store(verification.Store(roots))
                    .build_server_verifier(x509.DNSName(opts.domains[0])))
        try:
            verifier.verify(certs[0], certs[1:])
        except verification.VerificationError as exc:
            raise StepFailed(f"{ctx.ref}: the new chain does not verify: {str(exc)[:200]}"
                             ) from None

    def _served(self, ctx: StepContext, opts: TlsOptions, want: str | None,
                old: str | None) -> tuple[list[str], list[dict[str, Any]]]:
        """Endpoints that do not yet serve ``want`` with a verified chain, and evidence."""
        from keyroll.targets.tls_endpoint import probe

        waiting, seen = [], []
        for host, port in opts.serve_check:
            served = probe(host, port, server_name=opts.server_name,
                           cafile=_path(ctx, opts.serve_ca))
            serving = ("new" if served.leaf_sha256 == want else
                       "old" if served.leaf_sha256 == old else
                       "other" if served.leaf_sha256 else "nothing")
            seen.append({"endpoint": served.endpoint, "serves": serving,
                         "leaf_sha256": served.leaf_sha256, "verified": served.verified,
                         **({"error": served.error} if served.error else {})})
            if serving != "new" or not served.verified:
                waiting.append(f"{served.endpoint} serves the {serving} certificate"
                               + (f" ({served.error})" if served.error else ""))
        return waiting, seen

    def overlap_done(self, ctx: StepContext, started: datetime) -> Verdict:
        by_time = super().overlap_done(ctx, started)
        opts = tls_options(ctx.cls)
        if not by_time.done or not opts.serve_check:
            return by_time
        assert ctx.new is not None
        want = str(ctx.new.meta.get("cert_sha256") or "")
        old = str(ctx.old.meta.get("cert_sha256")) if ctx.old is not None else None
        waiting, seen = self._served(ctx, opts, want, old)
        evidence = {"served": seen}
        if not waiting:
            return Verdict(True, "every endpoint serves the new certificate", evidence)
        if ctx.now >= started + ctx.cls.overlap.max:
            return Verdict(True, f"overlap max {ctx.cls.overlap.max} reached; retiring although "
                           + "; ".join(waiting), evidence)
        return Verdict(False, "; ".join(waiting), evidence)

    def _revoke(self, ctx: StepContext, version: Version | None, reason: int) -> dict[str, Any]:
        """Revoke with a request signed by the certificate's own key (RFC 8555 §7.6), which
        works for a certificate another account ordered (an imported first one) too."""
        if version is None or version.destroyed:
            return {"revoked": False, "why": "no certificate to revoke"}
        opts = tls_options(ctx.cls)
        bundle = self._bundle(ctx, version)
        try:
            with self._client(ctx, opts, bundle.key) as client:
                client.revoke(bundle.chain_pem, reason)
        except TargetError as exc:
            if "alreadyRevoked" in str(exc):  # a rerun after a crash
                return {"revoked": True, "serial": version.meta.get("serial"), "reason": reason}
            raise
        return {"revoked": True, "serial": version.meta.get("serial"), "reason": reason}

    def retire(self, ctx: StepContext) -> None:
        opts = tls_options(ctx.cls)
        if ctx.incident:
            ctx.evidence["revoked"] = self._revoke(ctx, ctx.old, _KEY_COMPROMISE)
        elif opts.revoke_on_retire:
            ctx.evidence["revoked"] = self._revoke(ctx, ctx.old, _SUPERSEDED)

    def rollback(self, ctx: StepContext) -> None:
        """The new certificate was never served: revoke it (best effort) and drop the order."""
        if ctx.new is not None and not ctx.new.destroyed:
            try:
                ctx.evidence["revoked_unused"] = self._revoke(ctx, ctx.new, _CESSATION)
                ctx.emit(f"revoked the unused certificate (serial {ctx.new.meta.get('serial')})")
            except KeyrollError as exc:
                ctx.evidence["revoked_unused"] = {"revoked": False, "error": str(exc)}
                ctx.emit(f"could not revoke the unused certificate: {exc}")
        self._forget_order(ctx)

    def verify_current(self, ctx: StepContext, version: Version) -> dict[str, Any]:
        opts = tls_options(ctx.cls)
        bundle = self._bundle(ctx, version)
        if not bundle.key_matches():
            raise StepFailed(f"{ctx.ref}: version {version.number}'s key does not match its "
                             "certificate")
        evidence: dict[str, Any] = {"key_matches": True}
        if opts.serve_check:
            waiting, seen = self._served(ctx, opts, str(version.meta.get("cert_sha256") or ""),
                                         None)
            evidence["served"] = seen
            if waiting:
                raise StepFailed(f"{ctx.ref}: " + "; ".join(waiting))
        return evidence
