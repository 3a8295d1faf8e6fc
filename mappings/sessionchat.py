"""RFC 7573: MSRP session messages <-> XMPP one-to-one chat, the pure part (issue 18).

* `unwrap`: one complete MSRP message (text/plain, message/cpim around text/plain, or
  application/im-iscomposing+xml, RFC 4975 §8.6 / RFC 3862 / RFC 3994) -> `ChatContent`
  (text or a XEP-0085 chat state, RFC 7573 §6 Table 3). A CPIM From/To that names
  somebody else than the session's ends is refused 403 (RFC 3862 §3.2: the gateway vouches
  for the session's identities, not for what a body claims). Anything else is 415.
* `wrap_text` / `wrap_state`: the other way; message/cpim when the peer listed it in
  a=accept-types and text/plain among its wrapped types, else text/plain (RFC 4975 §8.6).
  `gone` has no isComposing (Table 4): the session ends instead (§6.1, done by the glue).
* `failure_code`: an XMPP stanza error that stopped a message -> the MSRP failure REPORT
  status (RFC 4975 §10 codes), through RFC 7247 Table 2 (`mappings.errors.xmpp_to_sip`).
* `takes_msrp`: does an OPTIONS answer (RFC 3261 §11.2: a 2xx may carry the SDP the
  user agent would offer) show an MSRP chat endpoint? Only an SDP with an
  `m=message ... TCP/MSRP` or `TCP/TLS/MSRP` line and INVITE allowed counts; an Accept
  listing message/cpim says nothing about sessions.
* `xmpp_error`: an MSRP failure (response, failure REPORT, timeout) -> the XMPP error the
  XMPP sender receives, through RFC 7247 Table 3 (`sip_to_xmpp`): MSRP status codes share
  their meaning with SIP's (400, 403, 408, 413, 415, 481 ...).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from mappings import cpim as cpim_fmt
from mappings import iscomposing as isc
from mappings.addresses import parse_address
from mappings.errors import MappingError, XmppErrorInfo, sip_to_xmpp, xmpp_to_sip
from mappings.model import Address, ChatState

__all__ = [
    "CPIM",
    "ISCOMPOSING",
    "PLAIN",
    "ChatContent",
    "failure_code",
    "takes_msrp",
    "unwrap",
    "wrap_state",
    "wrap_text",
    "xmpp_error",
]

PLAIN: Final = "text/plain"
CPIM: Final = "message/cpim"
ISCOMPOSING: Final = isc.MEDIA_TYPE
# text charsets (codecs names); bytes-to-bytes codecs (base64, zlib...) are not charsets
_CHARSETS: Final = frozenset(
    {"utf-8", "ascii", "iso8859-1", "iso8859-15", "utf-16", "utf-16-le", "utf-16-be", "cp1252"}
)
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class ChatContent:
    """What one MSRP message carries for XMPP: text, or a chat state alone."""

    text: str | None = None
    chat_state: ChatState | None = None
    lang: str | None = None


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _charset(content_type: str) -> str:
    m = re.search(r";\s*charset\s*=\s*\"?([^\";\s]+)", content_type, re.IGNORECASE)
    return m.group(1).lower() if m else "utf-8"


def _unsupported(what: str) -> MappingError:
    return MappingError(what, sip_status=415, xmpp_condition="bad-request")


def _bad(what: str) -> MappingError:
    return MappingError(what, sip_status=400, xmpp_condition="bad-request")


def _forbidden(what: str) -> MappingError:
    return MappingError(what, sip_status=403, xmpp_condition="forbidden")


def _text(content_type: str, body: bytes) -> str:
    name = _charset(content_type)
    try:
        info = codecs.lookup(name)
        if info.name not in _CHARSETS:
            raise _unsupported(f"charset {name!r} is not supported")
        text = body.decode(info.name)
    except LookupError:
        raise _unsupported(f"charset {name!r} is not supported") from None
    except UnicodeDecodeError:
        raise _bad(f"body is not valid {name}") from None
    if _XML_ILLEGAL.search(text):
        raise _bad("body holds characters XMPP cannot carry")
    return text


def _same(uri: str, address: Address) -> bool:
    try:
        return parse_address(uri).address.bare == address.bare
    except MappingError:
        return False


def _leaf(content_type: str, body: bytes, lang: str | None) -> ChatContent:
    media = _media(content_type)
    if media == PLAIN:
        return ChatContent(text=_text(content_type, body), lang=lang)
    if media == ISCOMPOSING:
        try:
            doc = isc.parse_iscomposing(body)
        except isc.IsComposingError as exc:
            raise _bad(str(exc)) from None
        return ChatContent(chat_state=ChatState(isc.chat_state_for(doc)))
    raise _unsupported(f"content type {media!r} is not bridged in sessions")


def unwrap(content_type: str, body: bytes, *, sender: Address, recipient: Address) -> ChatContent:
    """One complete MSRP message -> what goes to XMPP; MappingError 400/403/415."""
    if _media(content_type) != CPIM:
        return _leaf(content_type, body, None)
    try:
        msg = cpim_fmt.parse_cpim(body)
    except cpim_fmt.CpimError as exc:
        raise _bad(f"message/cpim: {exc}") from None
    found = msg.from_
    if found is not None and not _same(found.uri, sender):
        raise _forbidden("CPIM From is not the session's SIP user")
    if msg.to and not any(_same(t.uri, recipient) for t in msg.to):
        raise _forbidden("CPIM To is not the session's XMPP user")
    inner = msg.content_type or PLAIN
    if _media(inner) == CPIM:
        raise _unsupported("nested message/cpim")
    return _leaf(inner, msg.body, msg.content_header("Content-Language"))


def _wrapped(
    content_type: str, body: bytes, *, sender_uri: str, recipient_uri: str, now: datetime
) -> tuple[str, bytes]:
    msg = cpim_fmt.new_cpim(
        from_=cpim_fmt.Address(sender_uri),
        to=[cpim_fmt.Address(recipient_uri)],
        content_type=content_type,
        body=body,
        sent=now,
    )
    return CPIM, cpim_fmt.build_cpim(msg)


def wrap_text(
    text: str, *, cpim: bool, sender_uri: str, recipient_uri: str, now: datetime
) -> tuple[str, bytes]:
    """XMPP text -> the MSRP content: message/cpim (From/To/DateTime, RFC 3862) around
    text/plain when `cpim`, else text/plain. UTF-8 either way."""
    plain = f"{PLAIN};charset=UTF-8"
    body = text.encode("utf-8")
    if cpim:
        return _wrapped(plain, body, sender_uri=sender_uri, recipient_uri=recipient_uri, now=now)
    return plain, body


def wrap_state(
    state: ChatState, *, cpim: bool, sender_uri: str, recipient_uri: str, now: datetime
) -> tuple[str, bytes] | None:
    """A chat state -> isComposing (RFC 7573 Table 4); None for `gone` (§6.1: BYE)."""
    doc = isc.iscomposing_for(state.value, refresh=60 if state is ChatState.COMPOSING else None)
    if doc is None:
        return None
    body = isc.build_iscomposing(doc)
    if cpim:
        return _wrapped(
            ISCOMPOSING, body, sender_uri=sender_uri, recipient_uri=recipient_uri, now=now
        )
    return ISCOMPOSING, body


# RFC 4975 §10 defines 400, 403, 408, 413, 415, 423, 481, 501, 506 for MSRP; a SIP status
# outside them (404, 480, 503 ... for "no such user", "offline") becomes 403 ("the action
# is not allowed": the message cannot be delivered to this recipient).
_MSRP_CODES: Final = frozenset({400, 403, 408, 413, 415, 423, 481, 501, 506})


def failure_code(condition: str) -> int:
    """An XMPP error about a message from the session -> the failure REPORT's status."""
    try:
        sip = xmpp_to_sip(condition, full_jid=False).code
    except ValueError:
        return 403  # not an RFC 6120 condition: refused all the same
    if sip in (408, 504):
        return 408
    if sip == 413:
        return 413
    if sip == 415:
        return 415
    return sip if sip in _MSRP_CODES else 403


def xmpp_error(code: int, comment: str | None = None) -> XmppErrorInfo:
    """An MSRP failure (`SendOutcome.code`) -> the XMPP error for the stanza's sender."""
    if code < 300 or code > 699:
        code = 500
    return sip_to_xmpp(code, comment or None)


_MSRP_MLINE = re.compile(rb"^m=message +[0-9]+ +TCP/(?:TLS/)?MSRP\b", re.MULTILINE | re.IGNORECASE)


def takes_msrp(status: int, allow: str | None, content_type: str | None, body: bytes) -> bool:
    """RFC 7573 §4 capability from an OPTIONS response (see the module docstring)."""
    if not 200 <= status < 300 or not body:
        return False
    if content_type is None or _media(content_type) != "application/sdp":
        return False
    if allow is not None and "invite" not in {m.strip().lower() for m in allow.split(",")}:
        return False
    return _MSRP_MLINE.search(body.replace(b"\r\n", b"\n")) is not None
