"""A running application for the two-process test: verifies what it is sent, signs its own.

Protocol on stdin/stdout, one JSON object per line. Each request is ``{"token": "..."}`` or
``{"quit": true}``; each reply is ``{"t": <monotonic before signing>, "signing_kid": int,
"token": <a token this app just signed>, "ok": bool, "kid": <kid that verified> | null}``.
CLOCK_MONOTONIC is shared by the processes of one machine, so the test can compare ``t`` with
the moment it promoted the new key.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from keyroll.errors import InvalidToken
from keyroll.model import SecretRef
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import StoreKeySource
from keyroll.stores.sqlite import SQLiteStore


def main() -> None:
    store = SQLiteStore(Path(os.environ["APP_STORE"]), bytes.fromhex(os.environ["APP_MASTER"]))
    ref = SecretRef("prod", "jwt-access")
    interval = float(os.environ["APP_INTERVAL"])
    ring = JWTKeyRing(StoreKeySource(store, ref, refresh_interval=interval, report_usage=True))
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
        reply = {"t": t, "signing_kid": signing_kid, "token": own, "ok": ok, "kid": kid}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    ring.source.snapshot()
    store.close()


if __name__ == "__main__":
    main()
