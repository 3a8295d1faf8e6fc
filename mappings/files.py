"""File links: XEP-0066 out-of-band URLs <-> RCS FT-HTTP file-info documents. Pure.

XMPP clients share a file by uploading it (XEP-0363) and sending its URL twice: in the
``<body/>`` and in ``<x xmlns='jabber:x:oob'><url/><desc/></x>`` (XEP-0066 §3). RCS and
Linphone send the same thing as a MESSAGE whose body is
``application/vnd.gsma.rcs-ft-http+xml`` (GSMA RCC.07 §4.1.15 / Annex A):

    <file xmlns="urn:gsma:params:xml:ns:rcs:rcs:fthttp">
      <file-info type="file">
        <file-size>1234</file-size> <file-name>a.jpg</file-name>
        <content-type>image/jpeg</content-type>
        <data url="https://..." until="2026-12-14T10:00:00Z"/>
      </file-info>
    </file>

`FileLink` is the neutral form. Only ``http``/``https`` URLs with a host pass, in either
direction: a link is something the recipient may open, and ``javascript:``, ``file:`` or
``data:`` must never reach a client as one. The gateway itself never fetches or serves
the file (docs/pager.md "Files").

Defaults when XMPP says less than FT-HTTP can (XEP-0066 has only the URL and a
description): the file name is the last path segment of the URL (percent-decoded), the
content type is guessed from that name (Python's built-in table, never the system's),
else ``application/octet-stream``; an unknown size and an unknown validity are left out
(liblinphone reads a missing ``file-size`` as 0 and ignores ``until``; a made-up value
would be a lie to stricter clients).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Final
from urllib.parse import unquote, urlsplit

from lxml import etree

from mappings.cpim import format_datetime, parse_datetime
from mappings.xmlsafe import FormatError, nsmap, parse_xml, serialize

__all__ = [
    "FT_HTTP_NS",
    "FT_HTTP_TYPE",
    "MAX_URL_CHARS",
    "OOB_NS",
    "FileLink",
    "FileLinkError",
    "build_ft_http",
    "check_url",
    "link_from_oob",
    "parse_ft_http",
    "text_with_url",
]

FT_HTTP_TYPE: Final = "application/vnd.gsma.rcs-ft-http+xml"
FT_HTTP_NS: Final = "urn:gsma:params:xml:ns:rcs:rcs:fthttp"
OOB_NS: Final = "jabber:x:oob"

MAX_FT_HTTP_BYTES: Final = 16 * 1024  # a file-info document is a few hundred bytes
MAX_URL_CHARS: Final = 2048
MAX_NAME_CHARS: Final = 255
_SCHEMES: Final = frozenset({"http", "https"})
# No whitespace, controls or characters RFC 3986 never allows unescaped.
_URL_CHARS = re.compile(r"[\x21-\x7e\u00a0-\U0010ffff]+")
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*")
_DEFAULT_TYPE: Final = "application/octet-stream"
_TYPES = mimetypes.MimeTypes()  # its table is the built-in one, whatever /etc/mime.types says


class FileLinkError(FormatError):
    """An FT-HTTP body the gateway will not carry: 400 (malformed), 415 (a link it does
    not pass on: a scheme other than http/https, an encrypted file), 413 (too large)."""

    default_sip_status: ClassVar[int] = 400
    default_xmpp_condition: ClassVar[str] = "bad-request"


def _unsupported(reason: str) -> FileLinkError:
    return FileLinkError(reason, sip_status=415, xmpp_condition="not-acceptable")


@dataclass(frozen=True, slots=True)
class FileLink:
    """A file somebody else serves: its URL and what is known about it."""

    url: str
    name: str | None = None
    size: int | None = None
    content_type: str | None = None
    until: datetime | None = None
    desc: str | None = None

    def __post_init__(self) -> None:
        check_url(self.url)
        if self.size is not None and self.size < 0:
            raise ValueError("a file size is not negative")


def check_url(url: str) -> str:
    """`url` when it is an http(s) URL with a host; FileLinkError (415 for another
    scheme, 400 for anything malformed) otherwise."""
    if not url or len(url) > MAX_URL_CHARS:
        raise FileLinkError(f"file URL of {len(url)} characters")
    if not _URL_CHARS.fullmatch(url) or _XML_ILLEGAL.search(url):
        raise FileLinkError("file URL holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        raise FileLinkError(f"malformed file URL: {exc}") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise _unsupported(f"file URL scheme {parts.scheme!r} is not http or https")
    if not parts.hostname:
        raise FileLinkError("file URL without a host")
    return url


def _name_from_url(url: str) -> str | None:
    segment = urlsplit(url).path.rstrip("/").rpartition("/")[2]
    name = _XML_ILLEGAL.sub("", unquote(segment)).replace("/", "_").strip()
    return name[:MAX_NAME_CHARS] or None


def _guess_type(name: str | None) -> str:
    if name:
        guessed, _ = _TYPES.guess_type(name, strict=False)
        if guessed:
            return guessed
    return _DEFAULT_TYPE


def link_from_oob(url: str, desc: str | None = None) -> FileLink | None:
    """An XEP-0066 ``<url/>`` (+ ``<desc/>``) as a file link; None when the URL is not one
    FT-HTTP may carry (then it travels only as text)."""
    url = url.strip()
    try:
        check_url(url)
    except FileLinkError:
        return None
    name = _name_from_url(url)
    desc = _XML_ILLEGAL.sub("", desc or "").strip() or None
    return FileLink(url, name=name, content_type=_guess_type(name), desc=desc)


def text_with_url(body: str | None, url: str) -> str:
    """The text that carries a link for clients that know no file transfer: the body when
    it holds the URL already (XEP-0363 clients put it there), the URL alone when there is
    no body, else the body and the URL on a line of its own."""
    text = (body or "").strip()
    if not text:
        return url
    if url in text:
        return body or text
    return f"{body}\n{url}"


def _q(name: str) -> str:
    return f"{{{FT_HTTP_NS}}}{name}"


def build_ft_http(link: FileLink) -> bytes:
    """The RCC.07 file-info document for `link` (file-size and until only when known)."""
    root = etree.Element(_q("file"), nsmap=nsmap(FT_HTTP_NS))
    info = etree.SubElement(root, _q("file-info"), type="file")
    if link.size is not None:
        etree.SubElement(info, _q("file-size")).text = str(link.size)
    name = link.name or _name_from_url(link.url)
    if name:
        etree.SubElement(info, _q("file-name")).text = name
    content_type = link.content_type or _guess_type(name)
    etree.SubElement(info, _q("content-type")).text = content_type
    data = etree.SubElement(info, _q("data"), url=link.url)
    if link.until is not None:
        data.set("until", format_datetime(link.until))
    return serialize(root)


def _local(el: etree._Element) -> tuple[str, str]:
    """(namespace, local name); a document without the namespace is read the same."""
    q = etree.QName(el)
    return q.namespace or "", q.localname


def _child_text(info: etree._Element, name: str) -> str | None:
    for child in info:
        if isinstance(child.tag, str) and _local(child)[1] == name:
            return (child.text or "").strip() or None
    return None


def parse_ft_http(data: bytes) -> FileLink:
    """An FT-HTTP body from a peer -> its file (the ``type='file'`` file-info; a thumbnail
    is ignored). FileLinkError / XmlRejected (400), XmlTooLarge (413), 415 for a scheme
    other than http(s) or an encrypted file (``file-key``: only the peer's device can
    decrypt it)."""
    root = parse_xml(data, max_bytes=MAX_FT_HTTP_BYTES, max_depth=8, max_elements=64)
    namespace, name = _local(root)
    if name != "file" or namespace not in ("", FT_HTTP_NS):
        raise FileLinkError(f"not an FT-HTTP document: root {root.tag!r}")
    infos = [c for c in root if isinstance(c.tag, str) and _local(c)[1] == "file-info"]
    info = next((i for i in infos if (i.get("type") or "file") == "file"), None)
    if info is None:
        raise FileLinkError("FT-HTTP document without a file-info of type file")
    if _child_text(info, "file-key") is not None:
        raise _unsupported("encrypted file transfer (file-key): XMPP cannot decrypt it")
    data_el = next((c for c in info if isinstance(c.tag, str) and _local(c)[1] == "data"), None)
    if data_el is None or not data_el.get("url"):
        raise FileLinkError("FT-HTTP file-info without a data url")
    url = check_url((data_el.get("url") or "").strip())
    size_text = _child_text(info, "file-size")
    size = int(size_text) if size_text and size_text.isdigit() and len(size_text) < 19 else None
    file_name = _child_text(info, "file-name")
    if file_name is not None:
        file_name = _XML_ILLEGAL.sub("", file_name)[:MAX_NAME_CHARS] or None
    content_type = _child_text(info, "content-type")
    if content_type is not None and not _TYPE.fullmatch(content_type):
        content_type = None
    until = None
    if until_text := data_el.get("until"):
        try:
            until = parse_datetime(until_text)
        except ValueError:
            until = None
    return FileLink(url, name=file_name, size=size, content_type=content_type, until=until)
