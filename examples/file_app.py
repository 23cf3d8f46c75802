"""The running app of `make demo` §7: its JWT keys come from a file keyroll's deploy hook writes.

It reads ``JWT_SECRET`` (+ ``_KID``, ``_NEXT``, ``_PREVIOUS``) with `FileKeySource`, which
re-reads the file every 0.5 s and swaps keys in only when the file is whole and valid: the
app is never restarted. Commands on stdin, one JSON reply per line on stdout: ``sign``,
``verify <token>``, ``kid`` (the kid it signs with now). Tokens are not printed by the demo.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

from keyroll import FileKeySource, InvalidToken, JWTKeyRing
from keyroll.model import format_kid


def main() -> None:
    source = FileKeySource.jwt_secret(path=sys.argv[1], refresh_interval=0.5)
    ring = JWTKeyRing(source)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        reply: dict[str, object] = {"pid": os.getpid()}
        if command == "sign":
            reply["token"] = ring.sign({"sub": "user-42"}, ttl=timedelta(minutes=15))
            reply["kid"] = format_kid(ring.current_kid)
        elif command == "verify":
            try:
                _, kid = ring.verify_with_kid(argument)
                reply.update(ok=True, kid=format_kid(kid))
            except InvalidToken:
                reply["ok"] = False
        elif command == "kid":
            reply["kid"] = format_kid(ring.current_kid)
        else:
            break
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
