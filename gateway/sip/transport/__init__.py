"""asyncio transports that drive the pure SIP core."""
