"""The local store's master key: from ``KEYROLL_MASTER_KEY`` or a 0600 key file.

The key is 32 random bytes, written as standard base64 (one line). The environment variable
wins over the file so that CI and containers need no file on disk.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from keyroll.errors import MasterKeyError
from keyroll.files import write_private

__all__ = ["ENV_VAR", "create_key_file", "load_master_key"]

ENV_VAR = "KEYROLL_MASTER_KEY"
_HINT = "generate one with `keyroll init` (writes .keyroll/master.key, mode 0600)"


def _decode(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"{where} is not valid base64: {_HINT}") from None
    if len(raw) != 32:
        raise MasterKeyError(f"{where} must be 32 bytes, base64 (got {len(raw)} bytes): {_HINT}")
    return raw


def load_master_key(key_file: Path | None, environ: Mapping[str, str] | None = None) -> bytes:
    """Return the 32-byte master key.

    Args:
        key_file: the key file to read when the environment variable is unset.
        environ: the environment to read (default ``os.environ``).

    Raises:
        MasterKeyError: no key anywhere, a malformed key, or a key file that others can read.
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return _decode(env[ENV_VAR], ENV_VAR)
    if key_file is None or not key_file.exists():
        raise MasterKeyError(f"no master key: set {ENV_VAR} or {_HINT}")
    mode = stat.S_IMODE(key_file.stat().st_mode)
    if mode & 0o077:
        raise MasterKeyError(
            f"master key file {key_file} has mode {mode:04o}; others can read it: "
            f"run `chmod 600 {key_file}`"
        )
    return _decode(key_file.read_text(), f"master key file {key_file}")


def create_key_file(path: Path) -> None:
    """Write a fresh random master key to ``path`` with mode 0600. Refuses to overwrite.

    Raises:
        MasterKeyError: the file exists already (losing a master key loses every secret).
    """
    try:
        write_private(path, base64.b64encode(secrets.token_bytes(32)).decode() + "\n",
                      exclusive=True)
    except FileExistsError:
        raise MasterKeyError(
            f"{path} exists already; keyroll never overwrites a master key (move it away first "
            "if you really mean to start over)"
        ) from None
