"""SealedSecrets (bitnami-labs/sealed-secrets): seal values exactly as ``kubeseal`` does.

From the project's ``docs/developer/crypto.md`` and ``pkg/crypto/crypto.go`` (``HybridEncrypt``)
and ``pkg/apis/sealedsecrets/v1alpha1/sealedsecret_expansion.go`` (``EncryptionLabel``,
``NewSealedSecret``): every value gets its own random 32-byte AES-256-GCM session key, used
once, so the GCM nonce is twelve zero bytes; the session key is wrapped with the controller's
RSA public key (from its X.509 certificate) by RSA-OAEP with SHA-256, whose *label* binds the
value to where it may be unsealed: ``namespace/name`` (scope ``strict``), ``namespace``
(``namespace-wide``) or empty (``cluster-wide``). The ciphertext is::

    uint16 big-endian len(rsa) || rsa-oaep(session key) || aes-gcm(value) (tag appended)

and ``encryptedData`` holds it in standard base64. A value sealed for one namespace (or name)
cannot be unsealed under another: the OAEP label check fails.

The manifest is public (it may be committed); it carries the scope annotations the controller
reads (``sealedsecrets.bitnami.com/namespace-wide``/``cluster-wide``).
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Mapping

from keyroll.errors import UsageError

__all__ = ["SCOPES", "encryption_label", "manifest", "seal", "unseal"]

SCOPES = ("strict", "namespace-wide", "cluster-wide")
_ANNOTATION = "sealedsecrets.bitnami.com/"
_NONCE = bytes(12)


def encryption_label(namespace: str, name: str, scope: str) -> bytes:
    """The RSA-OAEP label of a scope (``EncryptionLabel`` in sealed-secrets)."""
    if scope == "cluster-wide":
        return b""
    if scope == "namespace-wide":
        return namespace.encode()
    if scope == "strict":
        return f"{namespace}/{name}".encode()
    raise UsageError(f"unknown SealedSecret scope {scope!r}: use one of {', '.join(SCOPES)}")


def _public_key(cert_pem: bytes) -> object:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise UsageError("the SealedSecrets certificate is not a PEM X.509 certificate: use "
                         "`kubeseal --fetch-cert` to get the controller's") from None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise UsageError("the SealedSecrets certificate does not hold an RSA key")
    return key


def seal(value: bytes, cert_pem: bytes, label: bytes, *, session_key: bytes | None = None) -> str:
    """One value sealed for the controller holding ``cert_pem``'s private key (base64).

    ``session_key`` is for known-answer tests only; it is random otherwise and must never be
    reused (the nonce is fixed).
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = _public_key(cert_pem)
    assert isinstance(key, rsa.RSAPublicKey)
    session = session_key if session_key is not None else os.urandom(32)
    wrapped = key.encrypt(session, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                algorithm=hashes.SHA256(), label=label or None))
    sealed = AESGCM(session).encrypt(_NONCE, value, None)
    return base64.b64encode(struct.pack(">H", len(wrapped)) + wrapped + sealed).decode("ascii")


def unseal(ciphertext: str, private_key_pem: bytes, label: bytes) -> bytes:
    """The controller's side (``HybridDecrypt``), for tests and checks.

    Raises:
        UsageError: too short, or the key or label does not fit (one message for all).
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data = base64.b64decode(ciphertext)
    if len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
        raise UsageError("SealedSecret data is too short")
    size = struct.unpack(">H", data[:2])[0]
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    try:
        session = key.decrypt(data[2:2 + size], padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label or None))
        return AESGCM(session).decrypt(_NONCE, data[2 + size:], None)
    except (ValueError, InvalidTag):
        raise UsageError("no key could decrypt the sealed value") from None


def manifest(name: str, namespace: str, scope: str, values: Mapping[str, bytes], cert_pem: bytes,
             annotations: Mapping[str, str]) -> str:
    """A ``SealedSecret`` manifest (JSON, which is YAML: kustomize and Argo CD read it) with
    every value sealed for ``namespace``/``name`` under ``scope``."""
    label = encryption_label(namespace, name, scope)
    scope_annotations = {f"{_ANNOTATION}{scope}": "true"} if scope != "strict" else {}
    meta = {"name": name, "namespace": namespace,
            "annotations": {**scope_annotations, **annotations}}
    doc = {
        "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "metadata": meta,
        "spec": {
            "encryptedData": {key: seal(value, cert_pem, label)
                              for key, value in sorted(values.items())},
            "template": {"metadata": dict(meta), "type": "Opaque"},
        },
    }
    return json.dumps(doc, indent=2) + "\n"
