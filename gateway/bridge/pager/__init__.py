"""Pager-mode IM (RFC 7572, RFC 3428): `service.Pager` (asyncio glue, both directions),
`sip_message` (the RFC 7572 SIP side, pure), `chatstate` (RFC 3994 / XEP-0085 gating, pure)."""
