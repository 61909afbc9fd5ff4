"""The aiohttp HTTP API and web console."""
