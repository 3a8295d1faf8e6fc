"""The bridge: SIP requests and XMPP stanzas meet the neutral model here (docs/pager.md)."""
