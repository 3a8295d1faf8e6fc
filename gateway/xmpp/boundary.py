"""The one error boundary of the XMPP edge (STYLE.md: one boundary per protocol edge).

Every handler the gateway registers on a component goes through `boundary`; the component's
stanza classes route exceptions escaping slixmpp's own plugin handlers to `answer_exception`
too (component.py), so no exception in a handler ever reaches the stream:

* `MappingError` from the core -> its condition with the RFC 6120 §8.3.3 type;
* slixmpp `XMPPError` -> its condition; `InvalidJID` -> jid-malformed (RFC 7622);
* anything else -> logged with the stanza's kind, id, from and to, answered with
  internal-server-error.

Error stanzas and IQ results are never answered (RFC 6120 §8.3.1).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.xmpp.convert import INTERNAL_ERROR, error_info_for, error_reply, may_answer_with_error

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None] | None]


def _describe(stanza: Any) -> str:
    """Context for the log line, read defensively (a broken JID must not raise here)."""
    parts = [getattr(stanza, "name", "?")]
    for key in ("type", "id"):
        try:
            parts.append(f"{key}={stanza[key]!s}")
        except Exception:
            parts.append(f"{key}=?")
    xml = getattr(stanza, "xml", None)
    for key in ("from", "to"):
        value = xml.get(key) if xml is not None else None
        parts.append(f"{key}={value}")
    return " ".join(parts)


def answer_exception(stanza: Any, exc: BaseException) -> None:
    """Turn `exc`, raised while handling `stanza`, into an error reply (when one is allowed)."""
    info = error_info_for(exc)
    if info is None:
        log.error("unexpected error handling %s", _describe(stanza), exc_info=exc)
        info = INTERNAL_ERROR
    else:
        log.info("answering %s with %s/%s", _describe(stanza), info.type, info.condition)
    try:
        if may_answer_with_error(stanza):
            error_reply(stanza, info).send()
    except Exception:
        log.exception("could not send the error reply to %s", _describe(stanza))


def boundary(handler: Handler) -> Callable[[Any], Awaitable[None]]:
    """Wrap a stanza handler (sync or async) so that it never raises."""

    @functools.wraps(handler)
    async def guarded(stanza: Any) -> None:
        try:
            result = handler(stanza)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            answer_exception(stanza, exc)

    return guarded
