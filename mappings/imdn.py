"""RFC 5438 IMDN <-> XEP-0184 delivery receipts (DIGEST §16; non-normative mapping).

* The ``message/imdn+xml`` document: parse (hardened parser) and build.
* The CPIM headers IMDN needs (RFC 5438 §6): ``NS: imdn <urn:ietf:params:imdn>``
  (any prefix accepted), ``imdn.Message-ID``, ``DateTime``,
  ``imdn.Disposition-Notification``; add a request to a message, read one back.
* The XEP-0184 mapping, as pure functions over explicit inputs (the gateway keeps
  the XMPP id <-> Message-ID correlation store):

  - XMPP ``<request/>`` on id X -> :func:`request_delivery` with a *fresh* random
    Message-ID (>= 64 bits, RFC 5438 §6.3; an XMPP id is neither unique nor
    unguessable, so it is never reused as the Message-ID).
  - IMDN ``delivered`` -> :class:`Receipt` (``<received id='X'/>``).
  - IMDN ``failed`` / ``forbidden`` / ``error`` -> :class:`DeliveryFailure`.
    XEP-0184 has no failure receipt (X184-03): no receipt is sent; the bridge may
    bounce ``<message type='error'/>`` on id X with the condition from
    :data:`FAILURE_CONDITIONS` (RFC 7247 §7 spirit: failed ~ 480, error ~ 500).
  - Processing notifications and unknown statuses map to nothing.
  - XMPP ``<received id='X'/>`` -> :func:`delivery_notification` answering the SIP
    sender's request, only if it asked for ``positive-delivery``.

* The XEP-0333 chat-marker mapping (issue 17, RFC 5438 §7.2.1.2), the same way:

  - XMPP ``<markable/>`` -> ``display`` in the request (:func:`request_delivery`
    with ``display=True``); SIP ``display`` requested -> ``<markable/>``
    (:meth:`DispositionRequest.wants_display`).
  - IMDN ``displayed`` -> :class:`Displayed` (``<displayed id='X'/>``).
  - XMPP ``<displayed id='X'/>`` -> :func:`display_notification`, only if the SIP
    sender asked for ``display``.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal

from lxml import etree

from mappings.cpim import (
    CPIM_NS,
    IMDN_NS,
    Address,
    CpimHeader,
    CpimMessage,
    format_datetime,
    parse_datetime,
)
from mappings.xmlsafe import FormatError, nsmap, parse_xml, serialize

IMDN_XML_NS: Final = "urn:ietf:params:xml:ns:imdn"
MEDIA_TYPE: Final = "message/imdn+xml"

NotificationKind = Literal["delivery", "display", "processing"]

STATUSES: Final[Mapping[NotificationKind, frozenset[str]]] = MappingProxyType(
    {  # RFC 5438 §11.1.7
        "delivery": frozenset({"delivered", "failed", "forbidden", "error"}),
        "display": frozenset({"displayed", "forbidden", "error"}),
        "processing": frozenset({"processed", "stored", "forbidden", "error"}),
    }
)

# The Disposition-Notification value each delivery status answers (RFC 5438 §7.1.1.3).
DELIVERY_REQUEST_FOR_STATUS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "delivered": "positive-delivery",
        "failed": "negative-delivery",
        "forbidden": "negative-delivery",
        "error": "negative-delivery",
    }
)

FAILURE_CONDITIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "failed": "recipient-unavailable",
        "forbidden": "forbidden",
        "error": "internal-server-error",
    }
)
"""Delivery status -> XMPP condition for the optional error bounce (DIGEST §16.2)."""


class ImdnError(FormatError):
    """A malformed IMDN document: SIP 400 / XMPP bad-request."""


@dataclass(frozen=True)
class Imdn:
    """An IMDN payload (RFC 5438 §11.1); ``status`` None = an unknown status element."""

    message_id: str
    datetime: datetime | None
    kind: NotificationKind
    status: str | None
    recipient_uri: str | None = None
    original_recipient_uri: str | None = None
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in STATUSES:
            raise ValueError(f"unknown notification kind {self.kind!r}")
        if self.status is not None and self.status not in STATUSES[self.kind]:
            raise ValueError(f"{self.status!r} is not a {self.kind} status")


def _q(local: str) -> str:
    return f"{{{IMDN_XML_NS}}}{local}"


def _text(root: etree._Element, local: str) -> str | None:
    element = root.find(_q(local))
    return None if element is None else (element.text or "").strip() or None


def parse_imdn(data: bytes) -> Imdn:
    """Parse a ``message/imdn+xml`` body; unknown extensions are ignored."""
    root = parse_xml(data)
    if root.tag != _q("imdn"):
        raise ImdnError(f"not an IMDN document: root {root.tag!r}")
    message_id = _text(root, "message-id")
    if message_id is None:
        raise ImdnError("IMDN without <message-id> (RFC 5438 §11.1.1)")
    sent = None
    if (text := _text(root, "datetime")) is not None:
        try:
            sent = parse_datetime(text)
        except ValueError:
            sent = None
    found = [
        (kind, element)
        for kind in STATUSES
        if (element := root.find(_q(f"{kind}-notification"))) is not None
    ]
    if not found:
        raise ImdnError("IMDN without a *-notification element (RFC 5438 §11.1.6)")
    kind, notification = found[0]
    status = None
    for child in notification.iterfind(f"{_q('status')}/*"):
        namespace, _, local = str(child.tag).lstrip("{").partition("}")
        if namespace == IMDN_XML_NS and local in STATUSES[kind]:
            status = local
            break
    return Imdn(
        message_id,
        sent,
        kind,
        status,
        _text(root, "recipient-uri"),
        _text(root, "original-recipient-uri"),
        _text(root, "subject"),
    )


def build_imdn(doc: Imdn) -> bytes:
    """Serialize in schema order. ``recipient-uri`` and ``original-recipient-uri``
    travel together in the schema, so a lone recipient is also the original one."""
    if doc.datetime is None or doc.status is None:
        raise ValueError("an IMDN needs the IM's DateTime and a known status")
    root = etree.Element(_q("imdn"), nsmap=nsmap(IMDN_XML_NS))
    etree.SubElement(root, _q("message-id")).text = doc.message_id
    etree.SubElement(root, _q("datetime")).text = format_datetime(doc.datetime)
    recipient = doc.recipient_uri or doc.original_recipient_uri
    if recipient is not None:
        etree.SubElement(root, _q("recipient-uri")).text = recipient
        original = doc.original_recipient_uri or recipient
        etree.SubElement(root, _q("original-recipient-uri")).text = original
        if doc.subject is not None:
            etree.SubElement(root, _q("subject")).text = doc.subject
    notification = etree.SubElement(root, _q(f"{doc.kind}-notification"))
    etree.SubElement(etree.SubElement(notification, _q("status")), _q(doc.status))
    return serialize(root)


# --- CPIM headers (RFC 5438 §6, §10) ---


@dataclass(frozen=True)
class DispositionRequest:
    """What an IM asks for: ``imdn.Message-ID``, ``DateTime``, ``Disposition-Notification``."""

    message_id: str
    sent: datetime | None
    requested: frozenset[str]
    """Disposition-Notification values, e.g. ``positive-delivery`` (unknown ones kept)."""

    def wants(self, status: str) -> bool:
        """Whether a delivery ``status`` should be reported (RFC 5438 §7.2.1)."""
        return DELIVERY_REQUEST_FOR_STATUS.get(status) in self.requested

    def wants_display(self) -> bool:
        """Whether a display notification was asked for (RFC 5438 §7.1.1.3 ``display``)."""
        return "display" in self.requested


# Message-ID = "Message-ID" ": " Token  (RFC 5438 §10; Token per RFC 3862 §3.6)
_TOKEN = re.compile(r"(?:[!#-'*+\-.^-`|~A-Za-z0-9]|[^\x00-\x7f])+")
# notify-req *(COMMA notify-req) ; COMMA = *SP "," *SP ; notify-req params after SEMI
_COMMA = re.compile(r" *, *")


def new_message_id(entropy: bytes | None = None) -> str:
    """A Message-ID token with >= 64 random bits (RFC 5438 §6.3); 96 bits by default."""
    raw = entropy if entropy is not None else secrets.token_bytes(12)
    if len(raw) < 8:
        raise ValueError("a Message-ID needs at least 64 bits of randomness")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def is_imdn(msg: CpimMessage) -> bool:
    """RFC 5438 §9: message/imdn+xml with ``Content-Disposition: notification``."""
    disposition = (msg.content_header("Content-Disposition") or "").split(";", 1)[0]
    return msg.media_type == MEDIA_TYPE and disposition.strip().lower() == "notification"


def read_disposition_request(msg: CpimMessage) -> DispositionRequest | None:
    """The IMDN request in an IM, or None (absent/empty header, or the IM is an IMDN)."""
    if is_imdn(msg):
        return None  # RFC 5438 §7.2.1: never an IMDN for an IMDN
    message_id = msg.get("Message-ID", IMDN_NS)
    header = msg.get("Disposition-Notification", IMDN_NS)
    if message_id is None or header is None or not _TOKEN.fullmatch(message_id.value):
        return None
    requested = frozenset(
        req.split(";", 1)[0].strip() for req in _COMMA.split(header.value.strip())
    ) - {""}
    if not requested:
        return None
    return DispositionRequest(message_id.value, msg.datetime, requested)


def _imdn_prefix(msg: CpimMessage) -> tuple[str, list[CpimHeader]]:
    """A prefix bound to the IMDN namespace, and the NS header to add if needed."""
    namespaces = msg.ns
    if namespaces.get(None, CPIM_NS) != CPIM_NS:
        raise ValueError("cannot extend a message that changed the default namespace")
    for prefix, uri in namespaces.items():
        if uri == IMDN_NS and prefix is not None:
            return prefix, []
    prefix = "imdn"
    n = 0
    while prefix in namespaces:
        n += 1
        prefix = f"imdn{n}"
    return prefix, [CpimHeader("NS", f"{prefix} <{IMDN_NS}>")]


def request_delivery(
    msg: CpimMessage,
    message_id: str,
    sent: datetime,
    *,
    negative: bool = False,
    delivery: bool = True,
    display: bool = False,
) -> CpimMessage:
    """Add an IMDN request (XEP-0184 ``<request/>``, DIGEST §16.2; XEP-0333 ``<markable/>``).

    Appends ``NS`` (unless an IMDN prefix exists), ``imdn.Message-ID``, ``DateTime``
    (unless present) and ``imdn.Disposition-Notification`` listing ``positive-delivery``
    (when ``delivery``; plus ``negative-delivery`` when ``negative``) and ``display``
    (when ``display``).
    """
    if not _TOKEN.fullmatch(message_id):
        raise ValueError(f"Message-ID must be a token: {message_id!r}")
    prefix, headers = _imdn_prefix(msg)
    headers.append(CpimHeader(f"{prefix}.Message-ID", message_id))
    if msg.get("DateTime") is None:
        headers.append(CpimHeader("DateTime", format_datetime(sent)))
    wanted = [
        *(("positive-delivery",) if delivery else ()),
        *(("negative-delivery",) if negative else ()),
        *(("display",) if display else ()),
    ]
    if not wanted:
        raise ValueError("an IMDN request asks for at least one notification")
    headers.append(CpimHeader(f"{prefix}.Disposition-Notification", ", ".join(wanted)))
    return CpimMessage(msg.headers + tuple(headers), msg.content_headers, msg.body)


def delivery_notification(
    request: DispositionRequest,
    *,
    from_: Address,
    to: Address,
    message_id: str,
    status: str = "delivered",
    recipient_uri: str | None = None,
) -> CpimMessage:
    """The message/cpim IMDN answering ``request`` (RFC 5438 §7.2.1.1).

    Raises ValueError if the request did not ask for this status or lacks the IM's
    DateTime (which the IMDN must echo, §11.1.2). ``message_id`` is the IMDN's own
    new Message-ID; ``to`` is the IM's sender (§7.2.1).
    """
    if not request.wants(status):
        raise ValueError(f"the IM did not request a {status!r} notification")
    return _notification(
        request,
        "delivery",
        status,
        from_=from_,
        to=to,
        message_id=message_id,
        recipient_uri=recipient_uri,
    )


def display_notification(
    request: DispositionRequest,
    *,
    from_: Address,
    to: Address,
    message_id: str,
    recipient_uri: str | None = None,
) -> CpimMessage:
    """The message/cpim IMDN ``displayed`` answering ``request`` (RFC 5438 §7.2.1.2);
    ValueError if the IM did not ask for ``display``. Arguments as for
    :func:`delivery_notification`."""
    if not request.wants_display():
        raise ValueError("the IM did not request a display notification")
    return _notification(
        request,
        "display",
        "displayed",
        from_=from_,
        to=to,
        message_id=message_id,
        recipient_uri=recipient_uri,
    )


def _notification(
    request: DispositionRequest,
    kind: NotificationKind,
    status: str,
    *,
    from_: Address,
    to: Address,
    message_id: str,
    recipient_uri: str | None,
) -> CpimMessage:
    body = build_imdn(Imdn(request.message_id, request.sent, kind, status, recipient_uri))
    headers = (
        CpimHeader("From", from_.render()),
        CpimHeader("To", to.render()),
        CpimHeader("NS", f"imdn <{IMDN_NS}>"),
        CpimHeader("imdn.Message-ID", message_id),
    )
    mime = (("Content-Type", MEDIA_TYPE), ("Content-Disposition", "notification"))
    return CpimMessage(headers, mime, body)


def parse_notification(msg: CpimMessage) -> Imdn:
    """The IMDN carried by a message/cpim notification (ImdnError if it is not one)."""
    if not is_imdn(msg):
        raise ImdnError("not an IMDN: needs message/imdn+xml and Content-Disposition: notification")
    return parse_imdn(msg.body)


# --- XEP-0184 outcome of an IMDN ---


@dataclass(frozen=True)
class Receipt:
    """Send ``<message><received xmlns='urn:xmpp:receipts' id=xmpp_id/></message>``."""

    xmpp_id: str


@dataclass(frozen=True)
class Displayed:
    """Send ``<message><displayed xmlns='urn:xmpp:chat-markers:0' id=xmpp_id/></message>``."""

    xmpp_id: str


@dataclass(frozen=True)
class DeliveryFailure:
    """No receipt exists for failure (X184-03); the bridge may bounce an error."""

    xmpp_id: str
    status: str
    xmpp_condition: str


def xmpp_outcome(imdn: Imdn, xmpp_id: str) -> Receipt | Displayed | DeliveryFailure | None:
    """Map a delivery or display IMDN for the XMPP message ``xmpp_id`` (found by the caller
    from ``imdn.message_id`` in its correlation store). A display ``forbidden``/``error``
    maps to nothing: XEP-0333 has no failure marker and the message was delivered."""
    if imdn.kind == "display":
        return Displayed(xmpp_id) if imdn.status == "displayed" else None
    if imdn.kind != "delivery" or imdn.status is None:
        return None
    if imdn.status == "delivered":
        return Receipt(xmpp_id)
    return DeliveryFailure(xmpp_id, imdn.status, FAILURE_CONDITIONS[imdn.status])
