"""XCAP errors (RFC 4825 §11): an HTTP status and, for 409, a detailed conflict report.

Every failure of the pure core is an :class:`XcapError`; the glue answers with
:meth:`XcapError.body` (``application/xcap-error+xml`` when there is a report) and never
chooses a status itself.
"""

from __future__ import annotations

from typing import Final
from xml.sax.saxutils import quoteattr

__all__ = [
    "ERROR_MEDIA_TYPE",
    "ERROR_NS",
    "XcapError",
    "cannot_delete",
    "cannot_insert",
    "constraint_failure",
    "no_parent",
    "not_found",
    "not_utf8",
    "not_well_formed",
    "not_xml_att_value",
    "not_xml_frag",
    "schema_validation_error",
    "uniqueness_failure",
]

ERROR_MEDIA_TYPE: Final = "application/xcap-error+xml"
ERROR_NS: Final = "urn:ietf:params:xml:ns:xcap-error"


class XcapError(Exception):
    """An XCAP request that fails: ``status`` and, for 409, the RFC 4825 §11 element
    (``tag``, e.g. ``no-parent``) with an optional ``phrase`` attribute and inner XML."""

    def __init__(
        self, status: int, reason: str, *, tag: str | None = None, inner: str = ""
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.tag = tag
        self.inner = inner

    @property
    def content_type(self) -> str:
        return ERROR_MEDIA_TYPE if self.tag is not None else "text/plain; charset=utf-8"

    def body(self) -> bytes:
        """The response body: the conflict report, or the reason as text."""
        if self.tag is None:
            return (self.reason + "\n").encode("utf-8")
        phrase = quoteattr(self.reason)
        element = (
            f"<{self.tag} phrase={phrase}>{self.inner}</{self.tag}>"
            if self.inner
            else f"<{self.tag} phrase={phrase}/>"
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<xcap-error xmlns="{ERROR_NS}">{element}</xcap-error>\n'
        ).encode()


def not_found(reason: str) -> XcapError:
    return XcapError(404, reason)


def _conflict(tag: str, reason: str, inner: str = "") -> XcapError:
    return XcapError(409, reason, tag=tag, inner=inner)


def not_well_formed(reason: str) -> XcapError:
    return _conflict("not-well-formed", reason)


def not_utf8(reason: str) -> XcapError:
    return _conflict("not-utf-8", reason)


def not_xml_frag(reason: str) -> XcapError:
    return _conflict("not-xml-frag", reason)


def not_xml_att_value(reason: str) -> XcapError:
    return _conflict("not-xml-att-value", reason)


def schema_validation_error(reason: str) -> XcapError:
    return _conflict("schema-validation-error", reason)


def no_parent(reason: str, ancestor: str | None = None) -> XcapError:
    """§11: ``<ancestor>`` names the closest existing ancestor (an HTTP URI or path)."""
    inner = "" if ancestor is None else f"<ancestor>{_text(ancestor)}</ancestor>"
    return _conflict("no-parent", reason, inner)


def cannot_insert(reason: str) -> XcapError:
    return _conflict("cannot-insert", reason)


def cannot_delete(reason: str) -> XcapError:
    return _conflict("cannot-delete", reason)


def uniqueness_failure(reason: str, field: str) -> XcapError:
    """§11: ``<exists field=...>`` names the node selector of the duplicated value."""
    inner = f"<exists field={quoteattr(field)}/>"
    return _conflict("uniqueness-failure", reason, inner)


def constraint_failure(reason: str) -> XcapError:
    return _conflict("constraint-failure", reason)


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
