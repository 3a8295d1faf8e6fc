"""Pure SIP core (RFC 3261 and friends): no asyncio, sockets or DNS."""
