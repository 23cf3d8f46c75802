"""Which server keyroll talks to, and whether it keeps two passwords per account.

MySQL 8.0.14 added *dual passwords*: ``ALTER USER … IDENTIFIED BY … RETAIN CURRENT PASSWORD``
keeps the old password as a secondary one until ``ALTER USER … DISCARD OLD PASSWORD``. MariaDB
(every version up to 11.x) has no such clause, nor MySQL before 8.0.14: there keyroll alternates
two accounts. `ServerInfo.parse` decides it from ``VERSION()`` and ``@@version_comment``, which
every variant answers; the result is evidence in the plan step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DUAL_PASSWORD_SINCE", "ServerInfo"]

#: The first MySQL release with RETAIN CURRENT PASSWORD / DISCARD OLD PASSWORD.
DUAL_PASSWORD_SINCE = (8, 0, 14)
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """The server's variant and version.

    Attributes:
        variant: ``MariaDB`` or ``MySQL`` (Percona Server and other MySQL builds count as
            MySQL: they share its account statements).
        version: (major, minor, patch).
        text: ``VERSION()`` as the server reports it.
    """

    variant: str
    version: tuple[int, int, int]
    text: str

    @classmethod
    def parse(cls, version: str, comment: str = "") -> ServerInfo:
        """From ``SELECT VERSION(), @@version_comment``.

        Raises:
            ValueError: ``version`` does not start with ``major.minor.patch``.
        """
        text = version.strip()
        # a MariaDB server may present itself to old clients as "5.5.5-10.11.6-MariaDB"
        bare = text.removeprefix("5.5.5-") if "mariadb" in text.lower() else text
        match = _VERSION.match(bare)
        if match is None:
            raise ValueError(f"unrecognised server version {text[:60]!r}")
        major, minor, patch = (int(part) for part in match.groups())
        mariadb = "mariadb" in text.lower() or "mariadb" in comment.lower()
        return cls("MariaDB" if mariadb else "MySQL", (major, minor, patch), text)

    @property
    def is_mariadb(self) -> bool:
        return self.variant == "MariaDB"

    @property
    def dual_password(self) -> bool:
        """Whether the server keeps a secondary password (MySQL ≥ 8.0.14; never MariaDB)."""
        return not self.is_mariadb and self.version >= DUAL_PASSWORD_SINCE

    def dual_password_note(self) -> str:
        """One line for the plan output and the evidence: what this server allows and why."""
        if self.dual_password:
            return (f"{self.variant} {self.text} supports dual passwords (RETAIN CURRENT "
                    "PASSWORD / DISCARD OLD PASSWORD)")
        if self.is_mariadb:
            return (f"MariaDB {self.text} does not support dual passwords (no RETAIN CURRENT "
                    "PASSWORD in any MariaDB release): alternating users")
        return (f"MySQL {self.text} is older than "
                f"{'.'.join(map(str, DUAL_PASSWORD_SINCE))}, which added dual passwords: "
                "alternating users")

    def as_evidence(self) -> dict[str, object]:
        return {"variant": self.variant, "version": self.text,
                "dual_password": self.dual_password, "note": self.dual_password_note()}
