"""TLS certificate bundles: what a ``tls-certificate`` version holds, and when it is due.

A version's value is one PEM text: the certificate chain as the CA sent it (leaf first, then
the intermediates) followed by the leaf's private key (PKCS#8). `Bundle.parse` splits it; the
chain alone is what a server sends (``tls.crt``) and the key is ``tls.key``. The version's
metadata (`certificate_meta`) keeps what is public about it: the leaf's SHA-256 fingerprint
(``openssl x509 -fingerprint -sha256``, lowercase hex without colons), serial, names and
validity, so ``keyroll status`` dates it without reading the value.

A certificate is due at ``not_after - renew window`` (`due_at`): ``renew_before`` is a
duration (``"30d"``) or a fraction of the lifetime (``"1/3"``, ``0.33``), not a cadence.

`cryptography` is imported inside the functions (a core dependency, but not needed to import
the inventory).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keyroll.durations import parse_duration
from keyroll.model import SecretValue

__all__ = [
    "DEFAULT_RENEW_BEFORE",
    "KEY_TYPES",
    "Bundle",
    "BundleError",
    "certificate_meta",
    "due_at",
    "make_csr",
    "new_private_key",
    "parse_renew_before",
]

#: The key types a certificate's key may be (``options.key_type``); EC P-256 by default.
KEY_TYPES = ("ec-p256", "rsa-2048", "rsa-3072")
#: Renew when this much of the certificate's life remains (Let's Encrypt's advice: a third).
DEFAULT_RENEW_BEFORE = "30d"

_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")
_KEY = re.compile(r"-----BEGIN (?:EC |RSA )?PRIVATE KEY-----\s+[A-Za-z0-9+/=\s]+?"
                  r"-----END (?:EC |RSA )?PRIVATE KEY-----")


class BundleError(ValueError):
    """The text is not a certificate chain followed by its private key (the message never
    repeats the text)."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """A certificate chain and its private key, as one version holds them.

    Attributes:
        chain_pem: the certificates, leaf first (public: what a server sends).
        key: the leaf's private key PEM (wrapped: it leaves only through ``reveal``).
    """

    chain_pem: str
    key: SecretValue

    @classmethod
    def parse(cls, value: SecretValue) -> Bundle:
        """Split a version's value.

        Raises:
            BundleError: no certificate, no key or more than one key.
        """
        text = value.reveal()
        certs = _CERT.findall(text)
        keys = _KEY.findall(text)
        if not certs:
            raise BundleError("the value holds no PEM certificate")
        if len(keys) != 1:
            raise BundleError(f"the value must hold exactly one PEM private key "
                              f"(found {len(keys)})")
        return cls("".join(c.strip() + "\n" for c in certs), SecretValue(keys[0].strip() + "\n"))

    @staticmethod
    def compose(chain_pem: str, key: SecretValue) -> SecretValue:
        """The value of a version: the chain, then the key."""
        chain = "".join(c.strip() + "\n" for c in _CERT.findall(chain_pem))
        if not chain:
            raise BundleError("the CA sent no PEM certificate")
        return SecretValue(chain + key.reveal().strip() + "\n")

    def certificates(self) -> list[Any]:
        """The chain as `cryptography` certificates, leaf first."""
        from cryptography import x509

        return [x509.load_pem_x509_certificate(c.encode()) for c in _CERT.findall(self.chain_pem)]

    def leaf(self) -> Any:
        return self.certificates()[0]

    def key_matches(self) -> bool:
        """The private key belongs to the leaf (their public keys are equal)."""
        from cryptography.hazmat.primitives import serialization

        private = serialization.load_pem_private_key(self.key.reveal_bytes(), password=None)
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        return bool(private.public_key().public_bytes(*spki)
                    == self.leaf().public_key().public_bytes(*spki))


def leaf_sha256(cert: Any) -> str:
    """The SHA-256 fingerprint of a certificate's DER (lowercase hex, no colons)."""
    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def certificate_meta(bundle: Bundle) -> dict[str, Any]:
    """What is public about a bundle, for the version's metadata (no key material)."""
    from cryptography import x509

    leaf = bundle.leaf()
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    return {
        "cert_sha256": leaf_sha256(leaf),
        "serial": format(leaf.serial_number, "x"),
        "names": names,
        "issuer": leaf.issuer.rfc4514_string()[:200],
        "not_before": leaf.not_valid_before_utc.isoformat(),
        "not_after": leaf.not_valid_after_utc.isoformat(),
    }


def parse_renew_before(spec: object) -> timedelta | float:
    """``renew_before``: a duration (``"30d"``) or a fraction of the lifetime (``"1/3"``,
    ``0.33``, strictly between 0 and 1).

    Raises:
        ValueError: anything else (the message says what is allowed).
    """
    hint = 'use a duration ("30d") or a fraction of the lifetime ("1/3" or 0.33)'
    if isinstance(spec, bool):
        raise ValueError(hint)  # noqa: TRY004  (callers catch ValueError for every bad option)
    fraction: float | None = None
    if isinstance(spec, int | float):
        fraction = float(spec)
    elif isinstance(spec, str) and re.fullmatch(r"\s*\d+\s*/\s*\d+\s*", spec):
        top, bottom = (int(part) for part in spec.split("/"))
        fraction = top / bottom if bottom else 0.0
    elif isinstance(spec, str) and re.fullmatch(r"\s*0?\.\d+\s*", spec):
        fraction = float(spec)
    if fraction is not None:
        if not 0 < fraction < 1:
            raise ValueError(f"a fraction must be between 0 and 1: {hint}")
        return fraction
    if not isinstance(spec, str):
        raise ValueError(hint)  # noqa: TRY004  (as above)
    try:
        window = parse_duration(spec)
    except ValueError:
        raise ValueError(hint) from None
    if window <= timedelta(0):
        raise ValueError(hint)
    return window


def due_at(not_before: datetime, not_after: datetime, renew_before: object) -> datetime:
    """When the next certificate must be issued: ``not_after`` minus the renew window."""
    window = parse_renew_before(renew_before)
    if isinstance(window, float):
        window = (not_after - not_before) * window
    return not_after - window


def due_from_meta(meta: Mapping[str, Any], renew_before: object) -> datetime | None:
    """`due_at` from a version's metadata, or None when it holds no validity (an imported
    version whose certificate was never read)."""
    try:
        not_before = datetime.fromisoformat(str(meta["not_before"]))
        not_after = datetime.fromisoformat(str(meta["not_after"]))
    except (KeyError, ValueError):
        return None
    return due_at(not_before, not_after, renew_before)


def new_private_key(key_type: str = "ec-p256") -> SecretValue:
    """A fresh private key for the next certificate (PKCS#8 PEM), made with `cryptography`."""
    from keyroll.jwk import generate_private_pem

    if key_type not in KEY_TYPES:
        raise ValueError(f"key_type {key_type!r}: use one of {', '.join(KEY_TYPES)}")
    return SecretValue(generate_private_pem(key_type))


def make_csr(key: SecretValue, names: Sequence[str]) -> bytes:
    """A CSR (PEM) for ``names`` signed with ``key``; the first name is also the subject CN
    when it fits one (64 characters; CAs read the names from the SAN extension)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    private = serialization.load_pem_private_key(key.reveal_bytes(), password=None)
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if len(names[0]) <= 64 else []
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name(subject))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                          critical=False)
           .sign(private, hashes.SHA256()))  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM)
