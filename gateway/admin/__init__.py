"""Admin HTTP API (aiohttp)."""
