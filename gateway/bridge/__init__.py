"""The bridge: SIP requests and XMPP stanzas meet the neutral model here (docs/pager.md).

One package per capability, named for what it bridges; each holds its asyncio glue only
(pure translation lives in `mappings/`, protocol machines in `gateway/sip/`):

* `pager/`: pager-mode IM both ways (RFC 7572): `service.Pager`, the RFC 7572 SIP side
  `sip_message` (pure), chat-state gating `chatstate` (pure).
* `presence/`: presence both ways (RFC 8048 over RFC 6665): `service.PresenceService`
  over `s2x` (SIP watches XMPP), `x2s` (XMPP watches SIP), `hosted` and `winfo` (users
  of our registrar), with what they share written once: `context` (config, SIP sending,
  XMPP output), `notifying` (SUBSCRIBE handling and NOTIFY throttling of our notifier
  dialogs), `records` (the subscription store records), `scheduler` (one timer).

The three top-level modules are the SIP edge every capability plugs into, not a capability:
`dispatch` (`SipDispatcher`, the method table, 405/481; `TrustGate`, the sender check),
`routing` (`SipRouter`: where an out-of-dialog request for an address goes) and `failover`
(RFC 3263 §4.3 failover over the located targets, exhausted targets mapped per RFC 7247).
Drain is not here: the SIP core's `UserAgent.begin_drain` is the one drain (503 with one
Retry-After).

A new capability is a new package here (e.g. resource lists as an event package beside
`presence/`, MSRP sessions, group chat, store-and-forward): its handlers are registered on
the dispatcher by gateway/app.py and its out-of-dialog requests go through `routing`. What
two capabilities come to share moves to the package that owns it, or to a top-level module
only when it is SIP-edge plumbing like `dispatch`, `routing` and `failover`.
"""
