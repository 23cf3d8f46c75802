"""The OpenBao / HashiCorp Vault store (extra ``openbao``): KV v2 through hvac.

`store` is the contract implementation (layout, check-and-set, fencing), `_transport` the
hvac clients with failover and error translation, `_url` the store URLs.
"""

from keyroll.stores.openbao.store import OpenBaoStore as OpenBaoStore

__all__ = ["OpenBaoStore"]
