"""Adapters and plumbing: the event store, PostgreSQL, NATS, settings, logs, embedded servers."""
