"""A scan corpus built at test time: a real store, a real git repository, planted values.

`build_store` fills a local SQLite store with versions of every kind (base64, 32-byte keys,
passwords with every special character, a passphrase with spaces, a PEM private key, a short
imported value) in every state: current, pending, previous and retired (destroyed, known only
by its digests). `plant` writes each value in every spelling (raw, base64, base64url, hex,
URL-encoded, dotenv-, JSON- and shell-escaped, printf %q, inside a DSN, wrapped across lines,
PEM as is / indented / JSON-escaped) and returns where each lands. `noise` yields high-entropy
non-secrets and look-alikes (each known value with one character changed, or cut short).

The unit tests, the PostgreSQL test and ``bench/scan.py`` share it.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import shlex
import string
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from keyroll.escaping import dotenv_escape, shell_backslash
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.stores.base import Store

__all__ = ["Planted", "Value", "build_store", "git", "noise", "plant_lines", "spellings"]


@dataclass(frozen=True)
class Value:
    """A planted value and the version it is (``state`` as `keyroll scan` reports it)."""

    text: str
    name: str
    environment: str
    version: int
    state: str


@dataclass(frozen=True)
class Planted:
    """Where a value was planted: a path (or pseudo-path), its 1-based line, the value."""

    path: str
    line: int
    value: Value
    form: str


def _pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _kinds(rng: random.Random) -> list[str]:
    special = string.ascii_letters + string.digits + "!@#$%^&*()-_=+[]{};:'\",.<>/?\\|`~"
    return [
        base64.b64encode(secrets.token_bytes(48)).decode(),                     # jwt / webhook
        base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),  # key_32
        "".join(rng.choice(special) for _ in range(32)),                        # password
        "sk_live_" + secrets.token_hex(20),                                     # api key
        "correct horse battery staple " + secrets.token_hex(4),                 # passphrase
        _pem(),                                                                 # PEM key
        "Pq7$x" + secrets.token_hex(2),                                         # short (9)
    ]


def build_store(store: Store, *, extra: int = 0, seed: int = 7) -> list[Value]:
    """Fill ``store``: for each kind, four versions (retired, previous, current, pending);
    ``extra`` more versions (current, of the kinds above) for the speed bench."""
    rng = random.Random(seed)
    values: list[Value] = []
    for number, _ in enumerate(_kinds(rng)):
        ref = SecretRef("prod" if number % 2 else "dev", f"kind-{number}")
        texts = [_kinds(rng)[number] for _ in range(4)]
        versions = [store.put_version(ref, SecretValue(t)).number for t in texts]
        store.set_labels(ref, expected={Label.CURRENT: None},
                         new={Label.CURRENT: versions[1]})
        store.set_labels(ref, expected={Label.CURRENT: versions[1]},
                         new={Label.CURRENT: versions[2], Label.PREVIOUS: versions[1],
                              Label.PENDING: versions[3]})
        store.destroy_version(ref, versions[0])
        for text, version, state in zip(texts, versions,
                                        ("retired", "previous", "current", "pending"),
                                        strict=True):
            values.append(Value(text, ref.name, ref.environment, version, state))
    for i in range(extra):
        ref = SecretRef("bench", f"bulk-{i}")
        text = _kinds(rng)[i % 4]
        number = store.put_version(ref, SecretValue(text)).number
        store.set_labels(ref, expected={Label.CURRENT: None}, new={Label.CURRENT: number})
        values.append(Value(text, ref.name, ref.environment, number, "current"))
    return values


def spellings(value: str) -> dict[str, list[str]]:
    """Every form of ``value`` keyroll scan must find, each as the lines it occupies."""
    raw = value.encode()
    b64 = base64.b64encode(raw).decode()
    if "\n" in value:  # a PEM: as is, indented in YAML, JSON-escaped, base64 wrapped
        return {
            "pem": value.rstrip("\n").split("\n"),
            "pem-yaml": ["private_key: |", *textwrap.indent(value, "    ").rstrip("\n").split("\n")],
            "pem-json": [json.dumps({"private_key": value})],
            "pem-base64-wrapped": textwrap.wrap(b64, 64),
            "pem-base64": [f"KEY_B64={b64}"],
        }
    forms = {
        "raw": [f"SECRET={value}" if " " not in value else f"secret: {value!r}"],
        "base64": [f"b64: {b64}"],
        "base64url": [f"url64={base64.urlsafe_b64encode(raw).decode().rstrip('=')}"],
        "hex": [f"hex {raw.hex()}"],
        "HEX": [f"HEX={raw.hex().upper()}"],
        "url": [f"curl 'https://api.example/cb?token={quote_plus(value)}&x=1'"],
        "dsn": [f"DATABASE_URL=postgresql://app:{quote(value, safe='')}@db.internal:5432/shop"],
        "dotenv": [f'SECRET="{dotenv_escape(value)}"'],
        "json": [json.dumps({"secret": value})],
        "json-utf8": [json.dumps([value], ensure_ascii=False)],
        "shell": [f"export SECRET={shlex.quote(value)}"],
        "printf-q": [f"SECRET={shell_backslash(value)}"],
        "base64-wrapped": ["blob: |", *("  " + part for part in textwrap.wrap(b64, 20))],
    }
    if all(c not in value for c in " :@/?#%"):
        forms["dsn-raw"] = [f"redis://default:{value}@cache:6379/0"]
    return forms


def plant_lines(values: list[Value], path: str, rng: random.Random, *, noise_lines: int
                ) -> tuple[list[str], list[Planted]]:
    """The lines of a file with every spelling of every value among ``noise_lines`` lines."""
    lines: list[str] = []
    planted: list[Planted] = []
    filler = noise(rng, values)
    chunks = [(value, form, body) for value in values for form, body in spellings(value.text).items()]
    rng.shuffle(chunks)
    per_chunk = max(1, noise_lines // max(1, len(chunks)))
    for value, form, body in chunks:
        lines += [next(filler) for _ in range(per_chunk)]
        planted.append(Planted(path, len(lines) + 1 + (1 if body[0] == "blob: |" or
                                                       body[0] == "private_key: |" else 0),
                               value, form))
        lines += body
    lines += [next(filler) for _ in range(per_chunk)]
    return lines, planted


def noise(rng: random.Random, values: list[Value]) -> Iterator[str]:
    """Endless lines of non-secrets: random high-entropy tokens (base64, hex, UUIDs, JWT- and
    AWS-looking strings), code and log lines, and look-alikes of each known value."""
    lookalikes: list[str] = []
    for value in values:
        text = value.text
        if len(text) > 8 and "\n" not in text:
            i = len(text) // 2
            flipped = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:]
            lookalikes += [flipped, text[:-1], base64.b64encode(flipped.encode()).decode()]
    makers = [
        lambda: f"token={base64.b64encode(rng.randbytes(rng.choice((16, 32, 48)))).decode()}",
        lambda: f"sha256:{rng.randbytes(32).hex()}",
        lambda: f"request_id={uuid.UUID(int=rng.getrandbits(128))} status=200 path=/api/orders",
        lambda: "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits)
                                 for _ in range(16)) + " " + base64.b64encode(rng.randbytes(30)).decode(),
        lambda: "eyJhbGciOiJIUzI1NiJ9." + base64.urlsafe_b64encode(rng.randbytes(40)).decode()
                .rstrip("=") + "." + base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("="),
        lambda: f"password = \"{''.join(rng.choice(string.ascii_letters) for _ in range(20))}\"",
        lambda: f"    return self._client.get(url, timeout={rng.randint(1, 60)})  # retry",
        lambda: f"2026-12-01T10:{rng.randint(0, 59):02}:00Z INFO worker {rng.randint(1, 9)} done",
        lambda: f"postgresql://app:{secrets.token_urlsafe(18)}@db:5432/shop",
        lambda: f"LOOKALIKE={rng.choice(lookalikes)}" if lookalikes else "x = 1",
    ]
    while True:
        yield rng.choice(makers)()


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    """Run git in ``repo`` with a fixed identity; return stdout."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "HOME": str(repo), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          input=stdin, env=env, check=False, timeout=120)
    assert done.returncode == 0, f"git {args[0]}: {done.stderr[-500:]}"
    return done.stdout
