"""Message sessions: the INVITE leg (docs/sessions.md)."""
