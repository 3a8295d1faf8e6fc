"""RFC 3263 §4.3 failover: try the located targets in order until one really answers.

A target fails on a transport error, a transaction timeout (Timer B/F) or a 503 response;
the next one is then tried with a NEW transaction (`send` is called afresh per target, so
the caller builds a new Via branch each time). Any other final response, success or not,
ends the search. RFC 3861 §6 (R3861-06): at least two targets are tried when there are two;
`max_targets` may cap the number.

`send(target)` is typically `lambda t: endpoint.request(req, t)`. Which exceptions are
timeouts and which are transport failures is a parameter, so the driver does not depend on
a particular endpoint; `TimeoutError` and `OSError` are the defaults.

It lives with the bridge, not in gateway.sip: what the sender is told when every target
failed (`TargetsExhausted`, a `MappingError`) is the RFC 7247 Table 3 mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from gateway.logs import event
from mappings.errors import MappingError, sip_to_xmpp

__all__ = ["Attempt", "Outcome", "TargetsExhausted", "send_with_failover"]

logger = logging.getLogger(__name__)

Outcome = Literal["timeout", "transport", "503"]


class HasStatus(Protocol):
    @property
    def status(self) -> int: ...


T = TypeVar("T")
R = TypeVar("R", bound=HasStatus)


@dataclass(frozen=True, slots=True)
class Attempt(Generic[T]):
    target: T
    outcome: Outcome
    detail: str


# What the sender is told when every target failed, by the last failure's kind.
_EXHAUSTED: dict[Outcome, tuple[int, str]] = {
    "timeout": (408, "remote-server-timeout"),  # RFC 7247 Table 3: 408
    "transport": (503, "remote-server-timeout"),  # could not be contacted
    "503": (503, sip_to_xmpp(503).condition),  # Table 3 note (9)
}


class TargetsExhausted(MappingError, Generic[T]):
    """No target gave a final response other than 503; `attempts` says what each did."""

    def __init__(self, attempts: Sequence[Attempt[T]]) -> None:
        self.attempts = tuple(attempts)
        if not attempts:
            super().__init__(
                "no target to try", sip_status=404, xmpp_condition="remote-server-not-found"
            )
            return
        status, condition = _EXHAUSTED[attempts[-1].outcome]
        tried = "; ".join(f"{a.target}: {a.outcome}" for a in attempts)
        super().__init__(
            f"all {len(attempts)} targets failed ({tried})",
            sip_status=status,
            xmpp_condition=condition,
        )


async def send_with_failover(
    targets: Sequence[T],
    send: Callable[[T], Awaitable[R]],
    *,
    timeouts: tuple[type[BaseException], ...] = (TimeoutError,),
    transport_errors: tuple[type[BaseException], ...] = (OSError,),
    max_targets: int | None = None,
) -> tuple[T, R, tuple[Attempt[T], ...]]:
    """The first target that answered (not 503), its response and the failed attempts.

    Raises TargetsExhausted when every target (up to `max_targets`, at least 2) failed.
    """
    limit = len(targets) if max_targets is None else max(max_targets, 2)
    attempts: list[Attempt[T]] = []
    for target in targets[:limit]:
        try:
            response = await send(target)
        except timeouts as exc:
            attempts.append(Attempt(target, "timeout", str(exc) or type(exc).__name__))
        except transport_errors as exc:
            attempts.append(Attempt(target, "transport", str(exc) or type(exc).__name__))
        else:
            if response.status != 503:
                return target, response, tuple(attempts)
            attempts.append(Attempt(target, "503", "503 Service Unavailable"))
        last = attempts[-1]
        event(
            logger,
            logging.INFO,
            "target failed, trying the next",
            target=str(last.target),
            outcome=last.outcome,
            detail=last.detail,
        )
    raise TargetsExhausted(attempts)
