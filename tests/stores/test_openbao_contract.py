"""The OpenBao / Vault store against the shared contract, on a real ``bao server -dev``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keyroll.stores.openbao import OpenBaoStore
from tests.openbao_fixtures import bao_dev as bao_dev
from tests.openbao_fixtures import bao_store_factory as bao_store_factory
from tests.stores.contract import Reopen, StoreContract

pytestmark = pytest.mark.integration

Factory = Callable[..., OpenBaoStore]


@pytest.fixture
def store(bao_store_factory: Factory) -> OpenBaoStore:
    return bao_store_factory()


@pytest.fixture
def reopen(bao_store_factory: Factory) -> Reopen:
    return bao_store_factory


class TestOpenBaoContract(StoreContract):
    pass
