"""SIP MESSAGE <-> `MessageOp`, both ways (RFC 7572 Tables 1 and 2). Pure: no I/O, no clock.

SIP -> XMPP (`from_sip`): Call-ID -> thread, Subject -> subject, Content-Language -> xml:lang,
Max-Forwards -> max_forwards, From (+ GRUU) -> source, Request-URI -> destination, and the
body by its type (`_CONTENT`, tables as data):

* ``text/plain``: decoded from its charset (any text codec Python knows; an unknown
  charset is 415, undecodable bytes 400) into a UTF-8 ``text/plain`` part;
* ``text/html``: sanitised into an XHTML-IM body (XEP-0071 recommended profile) carried as
  an ``application/xhtml+xml`` part, plus the plain-text rendering (R7572-11);
* ``message/cpim``: unwrapped (RFC 3862); its From must name the SIP sender and one of its
  To the SIP recipient, else 403; its Subject headers become subjects; an IMDN request
  (RFC 5438) sets ``receipt_request``; the inner part is mapped by this same table;
* ``application/im-iscomposing+xml``: a chat state (RFC 7573 Table 3);
* ``message/imdn+xml`` (bare or in CPIM): a delivery notification, returned for the
  caller to correlate (`InboundMessage.notification`);
* ``application/vnd.gsma.rcs-ft-http+xml``: a file link (mappings.files): the URL as the
  body plus the link (written as XEP-0066 OOB); only http(s) URLs (else 415);
* S/MIME or PGP/MIME (``multipart/signed``, ``application/pkcs7-mime``..., bare or in
  CPIM): `ProtectedContent`, 415 with a reason phrase naming the protection (XMPP cannot
  carry it; mappings/encryption.py);
* anything else: `UnsupportedContent` (415 with Accept, R7572-12).

XMPP -> SIP (`build_message` and the body builders): From is the sender's bare JID as a SIP
URI with the resource as ``gr`` (R7572-02 note 1), thread -> Call-ID (fresh when absent or
not a valid Call-ID), subject -> Subject, xml:lang -> Content-Language, body ->
``text/plain;charset=UTF-8`` (XHTML-IM -> ``text/html`` only when the peer accepts it, a
file link -> FT-HTTP only when the peer accepts that);
the sender's bare JID as ``Call-Info: <xmpp:...>;purpose=impp`` (RFC 6993, RFC 7081 §4).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from lxml import etree

from gateway.memo import Memo
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import NameAddr
from gateway.sip.message import Headers, SipRequest
from gateway.sip.uri import Uri, parse_uri
from mappings import cpim as cpim_fmt
from mappings import encryption, files
from mappings import imdn as imdn_fmt
from mappings import iscomposing as isc
from mappings.addresses import AddressError, parse_address, percent_decode
from mappings.errors import MappingError
from mappings.model import (
    DEFAULT_MAX_FORWARDS,
    Address,
    BodyPart,
    ChatState,
    MessageOp,
    Subject,
    XmppMessageType,
)
from mappings.xmlsafe import nsmap, parse_html, parse_xml

__all__ = [
    "ACCEPTED_TYPES",
    "ACCEPT_HEADER",
    "XHTML_NS",
    "XHTML_PART",
    "InboundMessage",
    "OutboundMessage",
    "ProtectedContent",
    "UnsupportedContent",
    "build_message",
    "call_id_for",
    "composing_body",
    "content_body",
    "delivery_notification_body",
    "display_notification_body",
    "from_sip",
    "html_to_xhtml_im",
    "recipient_address",
    "sender_address",
    "with_receipt_request",
    "xhtml_im_to_html",
]

ACCEPTED_TYPES: Final = (
    "text/plain",
    "text/html",
    "message/cpim",
    "application/im-iscomposing+xml",
    "message/imdn+xml",
    files.FT_HTTP_TYPE,
)
ACCEPT_HEADER: Final = ("Accept", ", ".join(ACCEPTED_TYPES))
XHTML_NS: Final = "http://www.w3.org/1999/xhtml"
XHTML_PART: Final = "application/xhtml+xml"
"""Media type of the part holding an XHTML-IM ``<body/>`` inside a `MessageOp`."""

PLAIN_UTF8: Final = "text/plain;charset=UTF-8"
HTML_UTF8: Final = "text/html;charset=UTF-8"
DEFAULT_REFRESH: Final = 90  # RFC 3994 §5.2: SHOULD be >= 60 s

# XML 1.0 §2.2 Char excludes these; XMPP cannot carry them (RFC 6120 §11.1).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# Python text codecs that are not charsets (RFC 2278 names) and must not be honoured.
_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"})
# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" / "(" / ")" /
#         "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
# callid = word [ "@" word ]   (RFC 3261 §25.1)
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALL_ID = re.compile(rf"{_WORD}(?:@{_WORD})?")
_MAX_CALL_ID = 256


class UnsupportedContent(MappingError):
    """A body type or charset the gateway does not map: 415 with Accept (RFC 3261 §21.4.13)."""

    headers: tuple[tuple[str, str], ...] = (ACCEPT_HEADER,)

    def __init__(self, reason: str) -> None:
        super().__init__(reason, sip_status=415, xmpp_condition="not-acceptable")


class ProtectedContent(UnsupportedContent):
    """An S/MIME or PGP/MIME body (issue 17): XMPP has no carrier for it, and stripping a
    signature or dropping ciphertext would misrepresent the message. 415 with `phrase` as
    the Reason-Phrase, so the sender's client can say why."""

    def __init__(self, protection: encryption.Protection) -> None:
        self.phrase = encryption.sip_reason(protection)
        super().__init__(f"{protection} content (S/MIME or PGP/MIME) cannot be relayed to XMPP")


def _bad(reason: str) -> MappingError:
    return MappingError(reason, sip_status=400, xmpp_condition="bad-request")


def _forbidden(reason: str) -> MappingError:
    return MappingError(reason, sip_status=403, xmpp_condition="forbidden")


# --- addresses ----------------------------------------------------------------------------


# URI text -> its address, for URIs that map (issue 11): a gateway sees the same users' URIs
# again and again, and mapping one costs a parse, percent-decoding and checks. Only
# successes are remembered; a URI that fails is parsed again and fails the same way.
_ADDRESSES_LIMIT = 4096  # distinct URIs remembered (then forgotten all at once)
_ADDRESSES: Memo[str, Address] = Memo(_ADDRESSES_LIMIT)


def uri_address(text: str) -> Address:
    """The address of a SIP URI (mappings.addresses.parse_address); sips: is refused (403)."""
    address = _ADDRESSES.peek(text)
    if address is not None:
        return address
    sip = parse_address(text)
    if sip.scheme == "sips":  # R7247-06: never translated into XMPP
        raise AddressError("sips: is never gatewayed to XMPP (RFC 7247 §8)", 403, "forbidden")
    return _ADDRESSES.put(text, sip.address)


def _address_of(name_addr: NameAddr | None, what: str) -> Address:
    if name_addr is None:
        raise _bad(f"no {what}")
    address = uri_address(str(name_addr.uri))
    gr = name_addr.gr  # a URI param, or leniently a header param (DIGEST §0)
    if gr and address.instance is None:
        address = Address(address.user, address.domain, percent_decode(gr))
    return address


def sender_address(req: SipRequest, instance: str | None = None) -> Address:
    """The From identity; `instance` (the registrar's resource) overrides a ``gr``."""
    address = _address_of(req.from_, "From")
    if instance is not None:
        return Address(address.user, address.domain, instance)
    return address


def recipient_address(req: SipRequest) -> Address:
    """The Request-URI as an address (R7572-05: Request-URI or To)."""
    return uri_address(str(req.uri))


# --- SIP -> MessageOp ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """What a MESSAGE carries. `op` is None for a delivery notification, which the caller
    correlates with the message it acknowledges (`notification.message_id`)."""

    op: MessageOp | None
    notification: imdn_fmt.Imdn | None = None
    disposition: imdn_fmt.DispositionRequest | None = None
    refresh: int | None = None  # isComposing <refresh>, seconds


@dataclass(frozen=True, slots=True)
class _Content:
    parts: tuple[BodyPart, ...] = ()
    chat_state: ChatState | None = None
    refresh: int | None = None
    notification: imdn_fmt.Imdn | None = None


def decode_text(body: bytes, charset: str | None) -> str:
    """Decode a text body (default UTF-8); 415 for an unknown charset, 400 for bad bytes."""
    name = (charset or "utf-8").strip().lower()
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise UnsupportedContent(f"charset {name!r} is not supported") from None
    if codec.name in _NOT_CHARSETS:
        raise UnsupportedContent(f"charset {name!r} is not supported")
    try:
        text = body.decode(codec.name)
    except LookupError:  # a bytes-to-bytes codec (base64, zlib...)
        raise UnsupportedContent(f"charset {name!r} is not supported") from None
    except UnicodeDecodeError:
        raise _bad(f"body is not valid {name}") from None
    if _XML_ILLEGAL.search(text):
        raise _bad("body holds control characters XMPP cannot carry")
    return text


def _plain(content_type: str, body: bytes, lang: str | None) -> _Content:
    text = decode_text(body, _charset(content_type))
    return _Content((BodyPart.plain(text, lang),))


def _html(content_type: str, body: bytes, lang: str | None) -> _Content:
    xhtml, text = html_to_xhtml_im(decode_text(body, _charset(content_type)))
    return _Content((BodyPart.plain(text, lang), BodyPart(XHTML_PART, xhtml, lang)))


def _composing(content_type: str, body: bytes, lang: str | None) -> _Content:
    doc = isc.parse_iscomposing(body)
    return _Content(chat_state=ChatState(isc.chat_state_for(doc)), refresh=doc.refresh)


def _imdn(content_type: str, body: bytes, lang: str | None) -> _Content:
    return _Content(notification=imdn_fmt.parse_imdn(body))


def _file(content_type: str, body: bytes, lang: str | None) -> _Content:
    # The URL alone as the body: XEP-0363 clients show a file inline when body == OOB url.
    link = files.parse_ft_http(body)
    return _Content(
        (BodyPart.plain(link.url, lang), BodyPart(files.FT_HTTP_TYPE, files.build_ft_http(link)))
    )


_CONTENT: Final[dict[str, Callable[[str, bytes, str | None], _Content]]] = {
    "text/plain": _plain,
    "text/html": _html,
    "application/im-iscomposing+xml": _composing,
    "message/imdn+xml": _imdn,
    files.FT_HTTP_TYPE: _file,
}


def _charset(content_type: str) -> str | None:
    m = re.search(r";\s*charset\s*=\s*\"?([^\";\s]+)", content_type, re.IGNORECASE)
    return m.group(1) if m else None


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _map_content(content_type: str, body: bytes, lang: str | None) -> _Content:
    handler = _CONTENT.get(_media(content_type))
    if handler is None:
        protection = encryption.sip_protection(_media(content_type))
        if protection is not None:
            raise ProtectedContent(protection)
        raise UnsupportedContent(f"content type {_media(content_type)!r} is not supported")
    return handler(content_type, body, lang)


def _same_identity(uri: str, address: Address) -> bool:
    try:
        return parse_address(uri).address.bare == address.bare
    except MappingError:
        return False


def _unwrap_cpim(
    body: bytes, sender: Address, recipients: Iterable[Address]
) -> cpim_fmt.CpimMessage:
    msg = cpim_fmt.parse_cpim(body)
    sender_header = msg.from_
    if sender_header is not None and not _same_identity(sender_header.uri, sender):
        raise _forbidden("CPIM From does not match the SIP sender")
    to = msg.to
    if to and not any(_same_identity(t.uri, r) for t in to for r in recipients):
        raise _forbidden("CPIM To does not match the SIP recipient")
    return msg


def _lang(req: SipRequest) -> str | None:
    value = req.headers.get("Content-Language")
    if not value:
        return None
    return value.split(",", 1)[0].strip() or None


def from_sip(
    req: SipRequest,
    *,
    trans_id: str,
    source: Address,
    destination: Address,
) -> InboundMessage:
    """Map a MESSAGE (already authorised: `source` is the accepted sender) to the model.

    Raises `MappingError` (400/403/415/483) for what cannot be mapped.
    """
    if not req.body:
        raise _bad("MESSAGE without a body")
    ct = req.content_type
    content_type = str(ct) if ct is not None else "text/plain"
    lang = _lang(req)
    subjects: list[Subject] = []
    disposition = None
    media = _media(content_type)
    body = req.body
    if media == "message/cpim":
        to_address = _to_address(req)
        recipients = [destination] if to_address is None else [destination, to_address]
        msg = _unwrap_cpim(body, source, recipients)
        if msg.media_type == "message/cpim":
            raise UnsupportedContent("nested message/cpim")
        content_type, body = msg.content_type or "text/plain", msg.body
        disposition = imdn_fmt.read_disposition_request(msg)
        seen: set[str | None] = set()
        for text, slang in msg.subjects:
            if slang not in seen:
                seen.add(slang)
                subjects.append(Subject(text, slang))
        lang = msg.content_header("Content-Language") or lang
    subject = req.headers.get("Subject")
    if subject and not subjects:
        subjects.append(Subject(subject.strip(), None))
    try:
        content = _map_content(content_type, body, lang)
        if content.notification is not None:
            return InboundMessage(None, content.notification)
        hops = _max_forwards(req)
        # Built already forwarded (one hop less, RFC 3860 §3.4.2) instead of through
        # `op.forwarded()`, which validates the whole operation a second time (issue 11).
        op = MessageOp(
            source=source,
            destination=destination,
            trans_id=trans_id,
            parts=content.parts,
            subjects=tuple(subjects) if content.parts else (),
            thread=req.call_id,
            lang=lang,
            max_forwards=hops - 1 if hops > 0 else hops,
            xmpp_type=XmppMessageType.CHAT if content.chat_state else None,
            receipt_request=disposition is not None and disposition.wants("delivered"),
            chat_state=content.chat_state,
            markable=bool(content.parts and disposition and disposition.wants_display()),
        )
    except ValueError as exc:  # an invalid language tag, subject, thread...
        if isinstance(exc, MappingError):
            raise
        raise _bad(str(exc)) from None
    if hops == 0:
        op.forwarded()  # raises TooManyHops (483)
    return InboundMessage(op, None, disposition, content.refresh)


def _to_address(req: SipRequest) -> Address | None:
    try:
        return _address_of(req.to, "To")
    except MappingError:
        return None


def _max_forwards(req: SipRequest) -> int:
    value = req.max_forwards
    return DEFAULT_MAX_FORWARDS if value is None else value


# --- HTML <-> XHTML-IM (XEP-0071 §7 recommended profile) ----------------------------------

_KEEP: Final[dict[str, tuple[str, ...]]] = {
    "a": ("href",),
    "blockquote": (),
    "br": (),
    "cite": (),
    "code": (),
    "em": (),
    "li": (),
    "ol": (),
    "p": (),
    "q": (),
    "span": (),
    "strong": (),
    "ul": (),
}
_RENAME: Final = {"b": "strong", "i": "em", "div": "p", "pre": "p", "tt": "code"} | {
    f"h{n}": "p" for n in range(1, 7)
}
# Dropped with their content (XEP-0071 §8: no scripts, objects or styles).
_DROP: Final = frozenset(
    {"script", "style", "head", "title", "object", "embed", "iframe", "applet", "form", "meta"}
)
_SAFE_SCHEMES: Final = ("http:", "https:", "mailto:", "xmpp:", "sip:", "sips:", "im:", "tel:")
_BLOCKS: Final = frozenset({"p", "li", "blockquote"})
_MAX_DEPTH = 48


def _append_text(dst: etree._Element, text: str) -> None:
    if len(dst):
        last = dst[-1]
        last.tail = (last.tail or "") + text
    else:
        dst.text = (dst.text or "") + text


def _copy_allowed(src: etree._Element, dst: etree._Element, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise _bad("HTML nested too deeply")
    if src.text:
        _append_text(dst, src.text)
    for child in src:
        if isinstance(child.tag, str):
            name = etree.QName(child).localname.lower()
            name = _RENAME.get(name, name)
            if name == "img":
                if alt := child.get("alt"):
                    _append_text(dst, alt)
            elif name in _KEEP:
                new = etree.SubElement(dst, f"{{{XHTML_NS}}}{name}")
                for attr in _KEEP[name]:
                    value = (child.get(attr) or "").strip()
                    if value and value.lower().startswith(_SAFE_SCHEMES):
                        new.set(attr, value)
                _copy_allowed(child, new, depth + 1)
            elif name not in _DROP:
                _copy_allowed(child, dst, depth + 1)  # unknown element: keep its content
        if child.tail:
            _append_text(dst, child.tail)


def _plain_text(root: etree._Element) -> str:
    out: list[str] = []

    def walk(el: etree._Element) -> None:
        if el.text:
            out.append(el.text)
        for child in el:
            name = etree.QName(child).localname
            if name == "br":
                out.append("\n")
            walk(child)
            if name in _BLOCKS:
                out.append("\n")
            if child.tail:
                out.append(child.tail)

    walk(root)
    lines = (" ".join(line.split()) for line in "".join(out).split("\n"))
    return "\n".join(line for line in lines if line).strip()


def _sanitised(src: etree._Element) -> etree._Element:
    body = etree.Element(f"{{{XHTML_NS}}}body", nsmap=nsmap(XHTML_NS))
    _copy_allowed(src, body)
    return body


def html_to_xhtml_im(text: str) -> tuple[bytes, str]:
    """An HTML body -> (XHTML-IM ``<body/>`` bytes, its plain-text rendering)."""
    if not text.strip():
        raise _bad("empty HTML body")
    try:
        doc = parse_html(text)  # on the isolated parse thread (xmlsafe)
    except (etree.ParserError, ValueError) as exc:
        raise _bad(f"unparseable HTML: {exc}") from None
    src = doc.find("body")
    body = _sanitised(src if src is not None else doc)
    plain = _plain_text(body)
    if not plain:
        raise _bad("HTML body without text")
    return etree.tostring(body, encoding="utf-8"), plain


def xhtml_im_to_html(xhtml: bytes) -> bytes:
    """An XHTML-IM ``<body/>`` (from an XMPP client) -> a sanitised HTML fragment."""
    body = _sanitised(parse_xml(xhtml))
    for el in body.iter():
        el.tag = etree.QName(el).localname
    etree.cleanup_namespaces(body)
    inner = (body.text or "") + "".join(
        etree.tostring(child, method="html", encoding="unicode") for child in body
    )
    return f"<html><body>{inner}</body></html>".encode()


# --- MessageOp -> SIP ---------------------------------------------------------------------


def call_id_for(thread: str | None, fresh: Callable[[], str]) -> str:
    """Table 1: thread -> Call-ID; a fresh one when there is none or it is not a Call-ID."""
    if thread and len(thread) <= _MAX_CALL_ID and _CALL_ID.fullmatch(thread):
        return thread
    return fresh()


def _header_text(text: str) -> str:
    """One header line: controls and line breaks folded into single spaces."""
    return " ".join(_XML_ILLEGAL.sub(" ", text).split())


def pick_subject(op: MessageOp) -> str | None:
    """SIP has one Subject: the one in the message's language, else untagged, else first."""
    if not op.subjects:
        return None
    for wanted in (op.lang, None):
        for subject in op.subjects:
            if subject.lang == wanted:
                return _header_text(subject.text) or None
    return _header_text(op.subjects[0].text) or None


def content_body(op: MessageOp, *, html_ok: bool, ft_ok: bool = False) -> tuple[str, bytes] | None:
    """The MESSAGE body for a content message, None when it carries no text.

    A file link becomes FT-HTTP only when the peer takes it (`ft_ok`); XHTML-IM becomes
    text/html only when the peer accepts it (`html_ok`); otherwise the plain body is
    text/plain;charset=UTF-8 (Table 1), which carries the link's URL (mappings.files).
    """
    if ft_ok:
        for part in op.parts:
            if part.media_type == files.FT_HTTP_TYPE:
                return files.FT_HTTP_TYPE, part.content
    if html_ok:
        for part in op.parts:
            if part.media_type == XHTML_PART:
                return HTML_UTF8, xhtml_im_to_html(part.content)
    text = op.text()
    if text is None:
        return None
    return PLAIN_UTF8, text.encode("utf-8")


def composing_body(state: ChatState, refresh: int = DEFAULT_REFRESH) -> tuple[str, bytes] | None:
    """A chat state as isComposing (RFC 7573 Table 4); None for ``gone``."""
    doc = isc.iscomposing_for(state.value, refresh=refresh)
    if doc is None:
        return None
    return isc.MEDIA_TYPE, isc.build_iscomposing(doc)


def with_receipt_request(
    content: tuple[str, bytes],
    *,
    sender_uri: str,
    recipient_uri: str,
    message_id: str,
    now: datetime,
    subjects: Iterable[Subject] = (),
    delivery: bool = True,
    display: bool = False,
) -> tuple[str, bytes]:
    """Wrap a body in message/cpim asking for a positive-delivery IMDN (DIGEST §16.2, when
    `delivery`) and/or a display IMDN (XEP-0333 ``<markable/>``, when `display`)."""
    msg = cpim_fmt.new_cpim(
        from_=cpim_fmt.Address(sender_uri),
        to=[cpim_fmt.Address(recipient_uri)],
        content_type=content[0],
        body=content[1],
        sent=now,
        subjects=[(s.text, s.lang) for s in subjects],
    )
    msg = imdn_fmt.request_delivery(msg, message_id, now, delivery=delivery, display=display)
    return "message/cpim", cpim_fmt.build_cpim(msg)


def delivery_notification_body(
    request: imdn_fmt.DispositionRequest,
    *,
    sender_uri: str,
    recipient_uri: str,
    message_id: str,
) -> tuple[str, bytes]:
    """The message/cpim IMDN ``delivered`` answering `request` (RFC 5438 §7.2.1.1).

    `sender_uri` is the notifier (the XMPP recipient as a SIP URI), `recipient_uri` the
    original SIP sender.
    """
    msg = imdn_fmt.delivery_notification(
        request,
        from_=cpim_fmt.Address(sender_uri),
        to=cpim_fmt.Address(recipient_uri),
        message_id=message_id,
        recipient_uri=sender_uri,
    )
    return "message/cpim", cpim_fmt.build_cpim(msg)


def display_notification_body(
    request: imdn_fmt.DispositionRequest,
    *,
    sender_uri: str,
    recipient_uri: str,
    message_id: str,
) -> tuple[str, bytes]:
    """The message/cpim IMDN ``displayed`` answering `request` (RFC 5438 §7.2.1.2), for a
    XEP-0333 ``<displayed/>``; arguments as for `delivery_notification_body`."""
    msg = imdn_fmt.display_notification(
        request,
        from_=cpim_fmt.Address(sender_uri),
        to=cpim_fmt.Address(recipient_uri),
        message_id=message_id,
        recipient_uri=sender_uri,
    )
    return "message/cpim", cpim_fmt.build_cpim(msg)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """Everything a MESSAGE towards SIP is made of (Table 1)."""

    request_uri: str
    from_uri: str  # the XMPP sender: bare JID as SIP URI, resource as gr
    to_uri: str  # the SIP recipient's address of record
    call_id: str
    cseq: int
    from_tag: str
    content: tuple[str, bytes]
    subject: str | None = None
    lang: str | None = None
    max_forwards: int = DEFAULT_MAX_FORWARDS
    call_info: str | None = None  # the sender's XMPP address, RFC 6993 (`impp_call_info`)


# Request-URI text -> parsed URI (issue 11: messages go to the same users again and again);
# successes only, bounded. A parsed URI is immutable, so one may serve many requests.
_REQUEST_URIS_LIMIT = 4096
_REQUEST_URIS: Memo[str, Uri] = Memo(_REQUEST_URIS_LIMIT)
# The names build_message writes are canonical already (`Headers` would keep them as is).
_MESSAGE_KEYS: tuple[str, ...] = ("max-forwards", "from", "to", "call-id", "cseq")


def build_message(out: OutboundMessage) -> SipRequest:
    """The MESSAGE request (no Via: the endpoint adds it; no Contact: RFC 3428 §4)."""
    uri = _REQUEST_URIS.peek(out.request_uri)
    if uri is None:
        try:
            uri = parse_uri(out.request_uri)
        except RemoteProtocolError as exc:
            raise MappingError(
                f"bad target {out.request_uri!r}: {exc}",
                sip_status=400,
                xmpp_condition="bad-request",
            ) from None
        _REQUEST_URIS.put(out.request_uri, uri)
    items: list[tuple[str, str]] = [
        ("Max-Forwards", str(out.max_forwards)),
        ("From", f"<{out.from_uri}>;tag={out.from_tag}"),
        ("To", f"<{out.to_uri}>"),
        ("Call-ID", out.call_id),
        ("CSeq", f"{out.cseq} MESSAGE"),
    ]
    keys: tuple[str, ...] = _MESSAGE_KEYS
    if out.call_info:
        items.append(("Call-Info", out.call_info))
        keys += ("call-info",)
    if out.subject:
        items.append(("Subject", out.subject))
        keys += ("subject",)
    if out.lang:
        items.append(("Content-Language", out.lang))
        keys += ("content-language",)
    items.append(("Content-Type", out.content[0]))
    keys += ("content-type",)
    headers = Headers.from_canonical(items, keys)  # = Headers(items): the names are canonical
    return SipRequest.from_parts("MESSAGE", uri, headers, out.content[1])
