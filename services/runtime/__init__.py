"""Code every CallerSync service shares: configuration, server bootstrap, storage clients, idempotency, events."""
