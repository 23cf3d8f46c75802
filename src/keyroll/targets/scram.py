"""SCRAM-SHA-256 password verifiers, computed on keyroll's side (RFC 5802, RFC 7677).

PostgreSQL stores a role's password as ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``
and accepts that string in ``ALTER ROLE … PASSWORD``: the server then stores it as is. Sending
the verifier instead of the password means the plaintext never reaches the server, its
statement log or ``pg_stat_activity``. PgBouncer's ``auth_file`` takes the same string; when it
is byte-identical to the server's, PgBouncer can log in to the server on the client's behalf
(SCRAM pass-through), which is why one verifier is computed once and written to both.

The password is normalised with SASLprep (RFC 4013) as PostgreSQL and libpq do; when SASLprep
refuses the string, both fall back to the raw UTF-8 bytes, and so does this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass

from keyroll.model import SecretValue

__all__ = ["ScramVerifier", "saslprep", "scram_sha256_verifier"]

DEFAULT_ITERATIONS = 4096
SALT_BYTES = 16


@dataclass(frozen=True, slots=True)
class ScramVerifier:
    """A SCRAM-SHA-256 verifier: what a server stores instead of a password.

    It cannot log in by itself, but it allows an offline guessing attack on the password and
    lets PgBouncer authenticate clients, so it is kept out of logs: ``repr`` shows only the
    iteration count. The text form comes out through `reveal`.

    Attributes:
        iterations: PBKDF2 iteration count.
        salt: random salt.
        stored_key: H(ClientKey).
        server_key: HMAC(SaltedPassword, "Server Key").
    """

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def reveal(self) -> str:
        """The ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`` text servers and userlists hold."""
        b64 = base64.b64encode
        return (
            f"SCRAM-SHA-256${self.iterations}:{b64(self.salt).decode()}"
            f"${b64(self.stored_key).decode()}:{b64(self.server_key).decode()}"
        )

    @classmethod
    def parse(cls, text: str) -> ScramVerifier:
        """Read the text form (as stored in ``pg_authid.rolpassword`` or a userlist).

        Raises:
            ValueError: the text is not a SCRAM-SHA-256 verifier (the message omits it).
        """
        if not text.startswith("SCRAM-SHA-256$"):
            raise ValueError("not a SCRAM-SHA-256 verifier")
        try:
            _, params, keys = text.split("$")
            iterations, salt = params.split(":")
            stored, server = keys.split(":")
            verifier = cls(
                int(iterations),
                base64.b64decode(salt, validate=True),
                base64.b64decode(stored, validate=True),
                base64.b64decode(server, validate=True),
            )
        except ValueError:
            raise ValueError("not a SCRAM-SHA-256 verifier") from None
        if len(verifier.stored_key) != 32 or len(verifier.server_key) != 32:
            raise ValueError("not a SCRAM-SHA-256 verifier (keys must be 32 bytes)")
        return verifier

    def matches(self, password: SecretValue) -> bool:
        """Whether ``password`` is the one this verifier was made from (constant-time)."""
        other = scram_sha256_verifier(password, salt=self.salt, iterations=self.iterations)
        return hmac.compare_digest(other.stored_key, self.stored_key) and hmac.compare_digest(
            other.server_key, self.server_key
        )

    def __repr__(self) -> str:
        return f"ScramVerifier(iterations={self.iterations}, …)"

    __str__ = __repr__


def _prohibited(ch: str) -> bool:
    return (
        stringprep.in_table_c12(ch)
        or stringprep.in_table_c21_c22(ch)
        or stringprep.in_table_c3(ch)
        or stringprep.in_table_c4(ch)
        or stringprep.in_table_c5(ch)
        or stringprep.in_table_c6(ch)
        or stringprep.in_table_c7(ch)
        or stringprep.in_table_c8(ch)
        or stringprep.in_table_c9(ch)
        or stringprep.in_table_a1(ch)
    )


def saslprep(text: str) -> str | None:
    """RFC 4013 SASLprep of a password, or None where it refuses (caller uses raw bytes).

    ASCII printable text is returned unchanged (the common case: generated passwords).
    """
    if all(" " <= ch <= "~" for ch in text):
        return text
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in text
        if not stringprep.in_table_b1(ch)
    )
    normal = unicodedata.normalize("NFKC", mapped)
    if not normal:
        return None
    if any(_prohibited(ch) for ch in normal):
        return None
    rand_al = [stringprep.in_table_d1(ch) for ch in normal]
    if any(rand_al):
        if any(stringprep.in_table_d2(ch) for ch in normal):
            return None
        if not (rand_al[0] and rand_al[-1]):
            return None
    return normal


def scram_sha256_verifier(
    password: SecretValue, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> ScramVerifier:
    """Compute the SCRAM-SHA-256 verifier of a password, as PostgreSQL would store it.

    Args:
        password: the new password.
        salt: 16 random bytes by default; pass one only to recompute a known verifier.
        iterations: PBKDF2-HMAC-SHA-256 rounds (PostgreSQL's default, 4096).

    Returns:
        The verifier; ``reveal()`` gives the text to put in ``ALTER ROLE … PASSWORD``.
    """
    if iterations < 1:
        raise ValueError("iterations must be positive")
    raw = password.reveal()
    prepared = saslprep(raw)
    data = (prepared if prepared is not None else raw).encode()
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", data, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return ScramVerifier(iterations, salt, stored_key, server_key)
