"""MSRP protocol errors (h11 style): our API misuse vs. the peer's protocol violations."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.msrp.uri import MsrpUri

__all__ = ["LocalProtocolError", "MsrpError", "RemoteProtocolError"]


class MsrpError(Exception):
    """Base of every error the pure MSRP core raises."""


class LocalProtocolError(MsrpError):
    """We misused the API or tried to build an invalid message (a bug on our side)."""


class RemoteProtocolError(MsrpError):
    """The peer sent something invalid; carries what the caller must answer.

    `fatal`: the stream cannot be resynchronised (no transaction id to search an end-line
    for, an unbounded header section, a deadline missed): close the connection.
    Otherwise `status` (400, 413, 481, 501...) is the response to send when the request
    allows one (see `reports.error_response`): the parser fills in what it could read,
    best effort: `transaction_id`, `method`, `from_path` (the response's To-Path, RFC 4975
    §7.2), `to_path`, `failure_report` (a "no" forbids any response, §7.1.4) and
    `message_id`.
    """

    def __init__(
        self,
        message: str,
        status: int = 400,
        *,
        fatal: bool = False,
        transaction_id: str | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.fatal = fatal
        self.transaction_id = transaction_id
        self.method = method
        self.to_path: tuple[MsrpUri, ...] = ()
        self.from_path: tuple[MsrpUri, ...] = ()
        self.failure_report: str | None = None
        self.message_id: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status}, fatal={self.fatal})"
