"""asyncio glue for MSRP (RFC 4975 §4-§7, RFC 4976, RFC 6135): listeners, connections,
the relay client. Decisions live in the pure core (`gateway.msrp.endpoint`,
`gateway.msrp.relay`); this package only moves bytes and runs timers."""

from gateway.msrp.transport.service import (
    IncomingMessage,
    MsrpConnectError,
    MsrpService,
    MsrpSession,
    SendOutcome,
)

__all__ = ["IncomingMessage", "MsrpConnectError", "MsrpService", "MsrpSession", "SendOutcome"]
