"""The engine: processes that follow the log (projector, relay, ticker, registry, live feed)."""
