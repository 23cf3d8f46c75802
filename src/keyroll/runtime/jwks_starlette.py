"""Serve a JWKS from a key source in a FastAPI or Starlette app (extra ``web``).

::

    from keyroll.runtime.jwks_starlette import jwks_response

    source = StoreKeySource(store, SecretRef("prod", "jwt-access"))

    @app.get("/.well-known/jwks.json")
    def jwks(request: Request) -> Response:
        return jwks_response(source, request, max_age=300)

The response carries ``Cache-Control: public, max-age=N`` and a strong ``ETag``; a request whose
``If-None-Match`` names the current ETag gets ``304 Not Modified``. ``max_age`` must not exceed
the class's ``options.jwks_max_age`` in keyroll.toml: the rotation waits that long (plus a
margin) after publishing a new key before it signs with it, which is only safe if no verifier
caches the document longer. Starlette is imported when the function is first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keyroll.errors import UsageError
from keyroll.runtime.jwks import jwks_body
from keyroll.runtime.keysource import KeySource

if TYPE_CHECKING:
    from starlette.responses import Response

__all__ = ["jwks_response"]


def jwks_response(
    source: KeySource,
    request: Any | None = None,
    *,
    max_age: int = 300,
    algorithm: str | None = None,
) -> Response:
    """A Starlette `Response` with the source's JWKS (public keys only).

    Args:
        source: the signing service's key source (its pending, current and previous keys).
        request: the incoming request, to answer ``If-None-Match`` with 304 (optional).
        max_age: seconds verifiers may cache the document (``Cache-Control``).
        algorithm: for keys whose metadata names no ``alg``.

    Raises:
        UsageError: Starlette is not installed, ``max_age`` is negative, or a key is not a key
            pair (never published).
    """
    try:
        from starlette.responses import Response
    except ImportError:
        raise UsageError("jwks_response needs Starlette: pip install 'keyroll[web]'") from None
    if max_age < 0:
        raise UsageError("max_age must be >= 0 seconds")
    body, etag = jwks_body(source, algorithm=algorithm)
    headers = {"Cache-Control": f"public, max-age={int(max_age)}", "ETag": etag}
    if request is not None:
        wanted = request.headers.get("if-none-match", "")
        if etag in (t.strip().removeprefix("W/") for t in wanted.split(",")) or wanted.strip() == "*":
            return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
