"""CPIM gateway runtime: SIP endpoint, XMPP component, bridge, operations."""
