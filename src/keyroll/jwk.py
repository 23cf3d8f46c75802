"""Asymmetric JWT keys: PEM key pairs, their public JWK (RFC 7517/7518/8037) and thumbprint
(RFC 7638).

Core module: the generator (`keyroll.generate`), the fingerprint (`keyroll.model.fingerprint`),
the inventory's algorithm check, the JWKS publisher and the JWKS verifier all read key pairs
through here, so every layer agrees on which algorithm fits which key.

=========== ============================== ==========================================
generator   key                            algorithms (``options.algorithm``)
=========== ============================== ==========================================
ec-p256     ECDSA P-256, PKCS#8 PEM        ES256
rsa-2048    RSA 2048 bits, e=65537         RS256, PS256
rsa-3072    RSA 3072 bits, e=65537         RS256, PS256
ed25519     Ed25519, PKCS#8 PEM            EdDSA
=========== ============================== ==========================================

A stored key pair is the private key's PKCS#8 PEM; its *fingerprint* is the first 16 hex digits
of its RFC 7638 JWK thumbprint, which is over the public key only: it may be published, and it
is the same for the private PEM, the public PEM and the JWK a verifier fetches. The public JWK
this module builds never holds a private member (`PRIVATE_MEMBERS`): it is made from the public
key object, never by filtering a private JWK.

``cryptography`` is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ALGORITHMS_FOR_FORMAT",
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_FORMAT_FOR_ALGORITHM",
    "HMAC_ALGORITHMS",
    "KEYPAIR_FORMATS",
    "PRIVATE_MEMBERS",
    "algorithm_problem",
    "default_algorithm",
    "generate_private_pem",
    "is_private",
    "key_from_jwk",
    "key_matches_algorithm",
    "load_pem_key",
    "looks_like_pem_key",
    "pem_fingerprint",
    "public_jwk",
    "public_pem",
    "thumbprint",
]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
#: the asymmetric algorithms keyroll generates keys for and rotates
ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "RS256", "PS256", "EdDSA"})
KEYPAIR_FORMATS = frozenset({"ec-p256", "rsa-2048", "rsa-3072", "ed25519"})
ALGORITHMS_FOR_FORMAT: Mapping[str, frozenset[str]] = {
    "ec-p256": frozenset({"ES256"}),
    "rsa-2048": frozenset({"RS256", "PS256"}),
    "rsa-3072": frozenset({"RS256", "PS256"}),
    "ed25519": frozenset({"EdDSA"}),
}
DEFAULT_FORMAT_FOR_ALGORITHM: Mapping[str, str] = {
    "ES256": "ec-p256", "RS256": "rsa-2048", "PS256": "rsa-2048", "EdDSA": "ed25519",
}  # fmt: skip

#: JWK members that carry private key material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2)
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_PEM_KEY_MARKERS = ("PRIVATE KEY-----", "PUBLIC KEY-----")


def algorithm_problem(algorithm: object, generator: str | None) -> str | None:
    """What is wrong with a ``jwt-signing`` class's algorithm and generator, or None.

    The inventory calls this so that ``inventory check``, ``generate`` and ``rotate`` agree.
    """
    known = sorted(HMAC_ALGORITHMS) + sorted(ASYMMETRIC_ALGORITHMS)
    if not isinstance(algorithm, str) or algorithm not in (HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS):
        return f"options.algorithm {algorithm!r}: use one of {', '.join(known)}"
    if algorithm in HMAC_ALGORITHMS:
        if generator in KEYPAIR_FORMATS:
            return (f"generator {generator!r} makes a key pair, but options.algorithm "
                    f"{algorithm!r} is HMAC: use ES256, RS256, PS256 or EdDSA, or a secret "
                    "format such as base64-48")
        return None
    fits = sorted(f for f, algs in ALGORITHMS_FOR_FORMAT.items() if algorithm in algs)
    if generator not in fits:
        return (f"options.algorithm {algorithm!r} needs a key-pair generator: set generator to "
                f"{' or '.join(repr(f) for f in fits)}")
    return None


def generate_private_pem(fmt: str) -> str:
    """A fresh private key in PKCS#8 PEM (unencrypted: the store encrypts every value).

    Raises:
        ValueError: ``fmt`` is not a key-pair format.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    key: Any
    if fmt == "ec-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif fmt in ("rsa-2048", "rsa-3072"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(fmt[4:]))
    elif fmt == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"{fmt!r} is not a key-pair format ({', '.join(sorted(KEYPAIR_FORMATS))})")
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode("ascii")


def looks_like_pem_key(text: str) -> bool:
    """True for PEM private or public key text (``-----BEGIN … KEY-----``)."""
    head = text.lstrip()[:64]
    return head.startswith("-----BEGIN ") and any(m in head for m in _PEM_KEY_MARKERS)


def load_pem_key(text: str, *, validate: bool = True) -> Any:
    """The key object of a PEM private or public key.

    Args:
        text: PKCS#8 / traditional private key, or SubjectPublicKeyInfo / PKCS#1 public key.
        validate: check an RSA private key's consistency (slow; off for fingerprints, which
            read only the public numbers).

    Raises:
        ValueError: not a PEM key (the message holds no key material).
    """
    from cryptography.hazmat.primitives import serialization

    data = text.strip().encode("ascii", "replace")
    try:
        if "PRIVATE KEY-----" in text[:64]:
            return serialization.load_pem_private_key(
                data, password=None, unsafe_skip_rsa_key_validation=not validate
            )
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError, NotImplementedError):
        raise ValueError("not a readable unencrypted PEM key") from None


def is_private(key: Any) -> bool:
    """True if ``key`` is a private key object (it can sign)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    return isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey,
                            ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))


def _public(key: Any) -> Any:
    return key.public_key() if is_private(key) else key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_int(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return _b64(value.to_bytes(size, "big"))


_CURVES = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48), "secp521r1": ("P-521", 66)}


def public_jwk(key: Any) -> dict[str, str]:
    """The public JWK members of a key (private or public object): ``kty`` and the public
    parameters only, never a member of `PRIVATE_MEMBERS`.

    Raises:
        ValueError: a key type JWS does not define (DSA, an unnamed curve).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    pub = _public(key)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.name not in _CURVES:
            raise ValueError(f"EC curve {pub.curve.name} has no JWS algorithm")
        crv, size = _CURVES[pub.curve.name]
        numbers = pub.public_numbers()
        return {"kty": "EC", "crv": crv, "x": _b64_int(numbers.x, size), "y": _b64_int(numbers.y, size)}
    if isinstance(pub, rsa.RSAPublicKey):
        rsa_numbers = pub.public_numbers()
        return {"kty": "RSA", "n": _b64_int(rsa_numbers.n), "e": _b64_int(rsa_numbers.e)}
    if isinstance(pub, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        crv = "Ed25519" if isinstance(pub, ed25519.Ed25519PublicKey) else "Ed448"
        return {"kty": "OKP", "crv": crv, "x": _b64(raw)}
    raise ValueError(f"{type(pub).__name__} keys have no JWS algorithm")


_REQUIRED = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}


def thumbprint(jwk: Mapping[str, Any]) -> bytes:
    """RFC 7638 JWK thumbprint (SHA-256) over the required public members.

    Raises:
        ValueError: unknown ``kty`` or a required member is missing.
    """
    names = _REQUIRED.get(str(jwk.get("kty")))
    if names is None or any(not isinstance(jwk.get(n), str) for n in names):
        raise ValueError("JWK has no thumbprint: unknown kty or a missing member")
    canonical = json.dumps({n: jwk[n] for n in names}, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).digest()


def pem_fingerprint(text: str) -> str | None:
    """The fingerprint of a PEM key: 16 hex digits of its RFC 7638 thumbprint; None if the
    text is not a key keyroll can read (the caller falls back to SHA-256 of the text)."""
    try:
        return thumbprint(public_jwk(load_pem_key(text, validate=False))).hex()[:16]
    except ValueError:
        return None


def public_pem(key: Any) -> str:
    """The SubjectPublicKeyInfo PEM of a key's public half."""
    from cryptography.hazmat.primitives import serialization

    data: bytes = _public(key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data.decode("ascii")


def default_algorithm(key: Any) -> str:
    """The JWS algorithm a key implies: EC by its curve, Ed25519/Ed448 EdDSA, RSA RS256.

    Raises:
        ValueError: a key type JWS does not define.
    """
    jwk = public_jwk(key)
    if jwk["kty"] == "EC":
        return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[jwk["crv"]]
    return "EdDSA" if jwk["kty"] == "OKP" else "RS256"


def key_matches_algorithm(key: Any, algorithm: str) -> bool:
    """True if ``algorithm`` may be used with ``key`` (ES256 only with P-256, and so on)."""
    try:
        jwk = public_jwk(key)
    except ValueError:
        return False
    if jwk["kty"] == "EC":
        return algorithm == default_algorithm(key)
    if jwk["kty"] == "OKP":
        return algorithm == "EdDSA"
    return algorithm in {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}


def _b64decode(text: object) -> bytes:
    if not isinstance(text, str) or not text or "=" in text:
        raise ValueError("JWK member is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise ValueError("JWK member is not base64url") from None


def key_from_jwk(jwk: Mapping[str, Any]) -> Any:
    """The public key object of a JWK, read from its public members only (a private member,
    if any, is never read).

    Raises:
        ValueError: unsupported ``kty``/``crv`` or malformed members.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    kty = jwk.get("kty")
    if kty == "EC":
        curves = {"P-256": (ec.SECP256R1(), 32), "P-384": (ec.SECP384R1(), 48),
                  "P-521": (ec.SECP521R1(), 66)}
        if jwk.get("crv") not in curves:
            raise ValueError("unsupported EC curve")
        curve, size = curves[str(jwk["crv"])]
        x, y = _b64decode(jwk.get("x")), _b64decode(jwk.get("y"))
        if len(x) != size or len(y) != size:
            raise ValueError("EC coordinates have the wrong length")
        numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                                curve)
        return numbers.public_key()  # checks the point is on the curve
    if kty == "RSA":
        n = int.from_bytes(_b64decode(jwk.get("n")), "big")
        e = int.from_bytes(_b64decode(jwk.get("e")), "big")
        if n.bit_length() < 2048:
            raise ValueError("RSA key shorter than 2048 bits")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if kty == "OKP":
        raw = _b64decode(jwk.get("x"))
        if jwk.get("crv") == "Ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(raw)
        if jwk.get("crv") == "Ed448":
            return ed448.Ed448PublicKey.from_public_bytes(raw)
        raise ValueError("unsupported OKP curve")
    raise ValueError("unsupported kty (a JWKS publishes EC, RSA or OKP public keys)")
