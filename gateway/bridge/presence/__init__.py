"""Presence (RFC 8048 over RFC 6665): `service.PresenceService` routes SIP SUBSCRIBE /
NOTIFY and XMPP presence stanzas to `s2x` (a SIP user watches an XMPP user), `x2s` (an
XMPP user watches a SIP user), `hosted` (the gateway as presence agent of registered SIP
users) and `winfo` (RFC 3857 watcher information for them). Shared, written once:
`context` (config, sending, XMPP output, address maps), `notifying` (initial and in-dialog
SUBSCRIBE handling, NOTIFY throttling), `records` (store records and writes), `scheduler`
(one timer for every deadline)."""
