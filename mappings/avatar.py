"""Avatars of hosted SIP users (XEP-0153 vCard-based avatars), pure: bytes -> values -> elements.

The operator gives a hosted user an image in the registrar's user file (``avatar``,
docs/registrar.md). It is checked once, when the file is read (`parse_avatar`): a PNG,
JPEG, GIF or WebP by its magic bytes (XEP-0153 §4.5 item 4: PNG required, GIF and JPEG
recommended; WebP is what today's clients also show), at most `AVATAR_MAX_BYTES`
(§4.5 item 1 asks for less than 8 KB "enforced by the publishing client"; the operator is
that client here, and 64 KiB keeps a vCard reply well under the server's stanza limit).

What XMPP clients see (docs/xmpp.md, "Avatars"):

* the contact's vCard carries ``<PHOTO><TYPE>image/png</TYPE><BINVAL>...</BINVAL></PHOTO>``
  (`photo_element`, XEP-0054; XEP-0153 §4.4: TYPE and BINVAL, no EXTVAL);
* every presence sent for the contact carries
  ``<x xmlns='vcard-temp:x:update'><photo>SHA-1 hex</photo></x>`` (`update_element`,
  XEP-0153 §3.1: SHA-1 of the image bytes, lower-case hex). A contact without an avatar
  gets no ``<x/>`` at all (issue 22; see docs/xmpp.md for why not an empty ``<photo/>``).
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "AVATAR_MAX_BYTES",
    "NS_VCARD_UPDATE",
    "Avatar",
    "AvatarError",
    "Avatars",
    "image_type",
    "parse_avatar",
    "photo_element",
    "update_element",
]

NS_VCARD_UPDATE: Final = "vcard-temp:x:update"  # XEP-0153 §3.1
_NS_VCARD: Final = "vcard-temp"
AVATAR_MAX_BYTES: Final = 64 * 1024

# Magic bytes -> media type (PNG: ISO 15948 §5.2 signature; JPEG: SOI + a marker;
# GIF87a/89a; WebP: a RIFF container whose form type is "WEBP").
_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class AvatarError(ValueError):
    """An image the gateway refuses as an avatar (the reason is for the operator)."""


@dataclass(frozen=True)
class Avatar:
    """One avatar: its media type, the image bytes and their SHA-1 (hex, lower case)."""

    media_type: str
    data: bytes = field(repr=False)
    sha1: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.sha1:
            object.__setattr__(self, "sha1", hashlib.sha1(self.data).hexdigest())


Avatars = Callable[[str], Avatar | None]
"""A hosted user's AOR (``sip:user@domain``) -> the avatar the operator gave it."""


def image_type(data: bytes) -> str | None:
    """The media type `data`'s magic bytes announce, among png/jpeg/gif/webp; else None."""
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def parse_avatar(data: bytes, max_bytes: int = AVATAR_MAX_BYTES) -> Avatar:
    """`data` as an avatar; AvatarError when it is too large or not a known image type."""
    if not data:
        raise AvatarError("the file is empty")
    if len(data) > max_bytes:
        raise AvatarError(f"{len(data)} bytes, more than the {max_bytes} allowed")
    media_type = image_type(data)
    if media_type is None:
        raise AvatarError("not a PNG, JPEG, GIF or WebP image")
    return Avatar(media_type, data)


def photo_element(avatar: Avatar) -> ET.Element:
    """``<PHOTO><TYPE/><BINVAL/></PHOTO>`` in vcard-temp (XEP-0054, XEP-0153 §4.4)."""
    q = f"{{{_NS_VCARD}}}"
    photo = ET.Element(f"{q}PHOTO")
    ET.SubElement(photo, f"{q}TYPE").text = avatar.media_type
    ET.SubElement(photo, f"{q}BINVAL").text = base64.b64encode(avatar.data).decode("ascii")
    return photo


def update_element(avatar: Avatar) -> ET.Element:
    """``<x xmlns='vcard-temp:x:update'><photo>sha1</photo></x>`` (XEP-0153 §3.1)."""
    x = ET.Element(f"{{{NS_VCARD_UPDATE}}}x")
    ET.SubElement(x, f"{{{NS_VCARD_UPDATE}}}photo").text = avatar.sha1
    return x
