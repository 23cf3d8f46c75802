"""Online, resumable re-encryption of stored data, and the retire gate's row count (issue 6).

Modules:

- `headers`: which key a ciphertext is under, from its first bytes or characters;
- `database`: the adapter contract; `postgres` and `sqlite` implement it; `connect` opens
  one from a DSN (`open_database`);
- `job`: the resumable, batched, compare-and-set re-encryption (`Reencryptor`);
- `keys`: the pinned `FieldCipher` of a class (store versions + legacy Fernet keys);
- `gate`: `count_remaining` (plain arguments, a `RemainingCount` back), which the
  ``encryption-key`` strategy asks before retire.

The CLI (``keyroll reencrypt``) lives in `keyroll.cli.reencrypt_cmd`; nothing here imports
typer or rich.
"""

from __future__ import annotations

from keyroll.reencrypt.gate import count_remaining as count_remaining
from keyroll.reencrypt.headers import HeaderMatch as HeaderMatch
from keyroll.reencrypt.job import ColumnResult as ColumnResult
from keyroll.reencrypt.job import Progress as Progress
from keyroll.reencrypt.job import ProgressCallback as ProgressCallback
from keyroll.reencrypt.job import Reencryptor as Reencryptor
from keyroll.reencrypt.job import ReencryptReport as ReencryptReport
from keyroll.reencrypt.job import row_context as row_context
from keyroll.reencrypt.keys import cipher_for_class as cipher_for_class

__all__ = [
    "ColumnResult",
    "HeaderMatch",
    "Progress",
    "ProgressCallback",
    "ReencryptReport",
    "Reencryptor",
    "cipher_for_class",
    "count_remaining",
    "row_context",
]
