"""pytest fixtures for OpenBao: import them explicitly into the test modules that use them.

(``tests/integration/conftest.py`` belongs to others; these stay in our own module.)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest

from keyroll.stores.openbao import OpenBaoStore
from tests.openbao_server import DevServer

__all__ = ["bao_dev", "bao_store_factory"]


@pytest.fixture(scope="session")
def bao_dev() -> Iterator[DevServer]:
    """One ``bao server -dev`` for the whole session (each test uses its own prefix)."""
    server = DevServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bao_store_factory(bao_dev: DevServer) -> Iterator[Callable[..., OpenBaoStore]]:
    """Open ``OpenBaoStore`` handles on the dev server under one fresh, unique prefix.

    Call it with keyword overrides of the URL options (``prefix=``); every handle it opened is
    closed after the test.
    """
    prefix = f"t-{secrets.token_hex(6)}"
    opened: list[OpenBaoStore] = []

    def factory(**options: str) -> OpenBaoStore:
        query = {"prefix": prefix, **options}
        url = f"openbao://{bao_dev.addr.removeprefix('http://')}/secret?" + "&".join(
            f"{k}={v}" for k, v in query.items()
        )
        opened.append(OpenBaoStore.from_url(url, environ={"BAO_TOKEN": bao_dev.token}))
        return opened[-1]

    yield factory
    for store in opened:
        store.close()
