"""Store-and-forward for offline hosted SIP users (docs/offline.md): `policy` (pure) and
`service` (the asyncio glue over the store, the registrar and the XMPP links)."""
