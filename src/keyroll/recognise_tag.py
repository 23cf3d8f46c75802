"""Recognition tags: a 16-bit keyed prefilter beside each recognition digest.

``keyroll scan`` finds a destroyed value by hashing every candidate token of a text that could
spell it (HMAC-SHA256, `keyroll.recognise`). For a short value, that is most words of a text.
The *tag* of a value is the low 16 bits of SipHash-2-4 (a keyed pseudo-random function made for
short inputs, ~30 times cheaper than HMAC) of its UTF-8 bytes, under a key derived from the
recognition key (`tag_key`). The C cutter (``_cutter.c``, which has the same SipHash) computes
the tag of each spelling of a plain candidate and hands Python only those whose tag is one of
the recorded ones, about 1 in 10,000 of the rest: the HMAC digest then decides.

What it proves: nothing alone; a tag match only lets a candidate on to the digest, which is what
proves a value. What it costs: 4 hex characters of bookkeeping per destroyed version
(``recognise-tag:<env>/<name>/<version>``). What it exposes: like the digest, nothing to anyone
without the store's recognition key; with the key, guesses of a value can be filtered at
SipHash's speed before HMAC confirms them (the digest already lets that key test guesses).

The pure-Python SipHash here serves where the C module is not built; tests check it, and the
C one, against the reference vectors of Aumasson and Bernstein's paper.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

__all__ = ["TAG_BITS", "TAG_INFO", "siphash24", "tag", "tag_key", "tag_map"]

#: The HMAC message deriving the tag key from the recognition key.
TAG_INFO = b"keyroll recognise tag"
#: A tag's size in bits (4 hex characters).
TAG_BITS = 16

_MASK = (1 << 64) - 1

_fast: Callable[[bytes, bytes], int] | None
try:  # the same SipHash in C, where the package was built with its C module
    from keyroll._cutter import siphash24 as _fast
except ImportError:
    _fast = None


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 of ``data`` under a 16-byte ``key``: a 64-bit integer."""
    if len(key) != 16:
        raise ValueError("a SipHash key is 16 bytes")
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [0x736F6D6570736575 ^ k0, 0x646F72616E646F6D ^ k1,
         0x6C7967656E657261 ^ k0, 0x7465646279746573 ^ k1]

    def rounds(count: int) -> None:
        for _ in range(count):
            v[0] = (v[0] + v[1]) & _MASK
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & _MASK
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & _MASK
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & _MASK
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    full = len(data) - len(data) % 8
    for i in range(0, full, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    b = ((len(data) & 0xFF) << 56) | int.from_bytes(data[full:], "little")
    v[3] ^= b
    rounds(2)
    v[0] ^= b
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def tag_key(recognition_key: bytes) -> bytes:
    """The SipHash key of the tags: 16 bytes of HMAC-SHA256(recognition key, `TAG_INFO`)."""
    return hmac.new(recognition_key, TAG_INFO, hashlib.sha256).digest()[:16]


def tag(key: bytes, value: str | bytes) -> int:
    """The tag of ``value`` under a `tag_key`: the low `TAG_BITS` bits of its SipHash (the C
    module's when built: a scan computes one for each readable value when it starts)."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    hashed = _fast(key, data) if _fast is not None else siphash24(key, data)
    return hashed & ((1 << TAG_BITS) - 1)


def tag_map(tags: set[int]) -> bytes:
    """``tags`` as the bit map the C cutter reads (bit ``t % 8`` of byte ``t // 8``)."""
    bits = bytearray(1 << TAG_BITS >> 3)
    for t in tags:
        if not 0 <= t < 1 << TAG_BITS:
            raise ValueError(f"a tag is {TAG_BITS} bits")
        bits[t >> 3] |= 1 << (t & 7)
    return bytes(bits)
