"""A running application for the FileKeySource test: its keys come from a mounted directory.

Same protocol as ``app_loop.py`` (one JSON object per line on stdin and stdout).
"""

from __future__ import annotations

import json
import os
import sys
import time

from keyroll.errors import InvalidToken
from keyroll.runtime.filesource import FileKeySource
from keyroll.runtime.jwt import JWTKeyRing


def main() -> None:
    source = FileKeySource.jwt_secret(path=os.environ["APP_KEYS"],
                                      refresh_interval=float(os.environ["APP_INTERVAL"]))
    ring = JWTKeyRing(source)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        t = time.monotonic()
        own = ring.sign({"sub": "app", "exp": int(time.time()) + 600})
        signing_kid = ring.current_kid
        try:
            _, kid = ring.verify_with_kid(request["token"])
            ok = True
        except InvalidToken:
            kid, ok = None, False
        reply = {"t": t, "signing_kid": signing_kid, "token": own, "ok": ok, "kid": kid,
                 "failures": source.failures}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
