"""keyroll: rotate secrets without downtime."""
