"""JIDs (RFC 7622) and XEP-0106 localpart escaping.

A `Jid` holds the wire form: the localpart is *escaped* (XEP-0106) exactly as it travels in
stanzas. Domains keep their case but compare case-insensitively (DNS names, RFC 7622 §3.2);
localparts and resourceparts compare exactly. PRECIS (RFC 7613 UsernameCaseMapped /
OpaqueString) is not applied -- it is OPTIONAL in RFC 7247 §6.4 step 6 -- but the characters
PRECIS always refuses (controls, spaces in the localpart, unassigned code points, ...) are.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field

from mappings.errors import MappingError

MAX_PART_BYTES = 1023  # RFC 7622 §3.2-§3.4: each part is 1..1023 octets of UTF-8

# RFC 7622 §3.3.1: characters a localpart must not contain (beyond PRECIS' own refusals).
LOCALPART_FORBIDDEN = frozenset("\"&'/:<>@")

# Unicode categories PRECIS IdentifierClass / FreeformClass never admit: controls, format
# characters, surrogates, private use, unassigned (RFC 8264 §9.11-§9.14).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_SPACE_CATEGORIES = frozenset({"Zs", "Zl", "Zp"})


class JidError(MappingError, ValueError):
    """An invalid JID or localpart: XMPP `jid-malformed`, SIP 400."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, sip_status=400, xmpp_condition="jid-malformed")


def _check_length(part: str, name: str) -> None:
    if not 1 <= len(part.encode("utf-8")) <= MAX_PART_BYTES:
        raise JidError(f"{name} must be 1..{MAX_PART_BYTES} octets of UTF-8")


def check_localpart(local: str) -> None:
    """Raise JidError unless `local` is a valid (escaped) localpart."""
    _check_length(local, "localpart")
    for ch in local:
        if ch in LOCALPART_FORBIDDEN:
            raise JidError(f"localpart must not contain {ch!r} (RFC 7622 §3.3.1)")
        cat = unicodedata.category(ch)
        if cat in _REFUSED_CATEGORIES or cat in _SPACE_CATEGORIES:
            raise JidError(f"localpart must not contain U+{ord(ch):04X} ({cat})")


def check_resourcepart(resource: str) -> None:
    """Raise JidError unless `resource` is a valid resourcepart (OpaqueString: spaces ok)."""
    _check_length(resource, "resourcepart")
    for ch in resource:
        cat = unicodedata.category(ch)
        if cat in _REFUSED_CATEGORIES or (cat in _SPACE_CATEGORIES and ch != " "):
            raise JidError(f"resourcepart must not contain U+{ord(ch):04X} ({cat})")


# RFC 7622 §3.2: a domainpart is an IP literal or a (possibly internationalized) DNS name.
# label = 1*63 chars that are neither dot, whitespace, control nor one of the JID delimiters.
_LABEL = re.compile(r"[^\s./@:\\\"'<>&\[\]]{1,63}")


def check_domainpart(domain: str) -> None:
    """Raise JidError unless `domain` is a valid domainpart (trailing dot already removed)."""
    _check_length(domain, "domainpart")
    if domain.startswith("[") and domain.endswith("]"):
        try:
            ipaddress.IPv6Address(domain[1:-1])
        except ValueError:
            raise JidError(f"bad IPv6 literal domainpart: {domain!r}") from None
        return
    for label in domain.split("."):
        if not _LABEL.fullmatch(label) or any(
            unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in label
        ):
            raise JidError(f"bad domainpart: {domain!r}")


@dataclass(frozen=True)
class Jid:
    """`local@domain/resource` in wire form (escaped localpart); validated on construction."""

    local: str | None
    domain: str = field(compare=False)  # compared through _domain_key
    resource: str | None = None
    _domain_key: str = field(init=False, repr=False, default="")

    def __post_init__(self) -> None:
        if self.local is not None:
            check_localpart(self.local)
        check_domainpart(self.domain)
        if self.resource is not None:
            check_resourcepart(self.resource)
        object.__setattr__(self, "_domain_key", self.domain.casefold())

    @property
    def bare(self) -> Jid:
        """The JID without its resourcepart."""
        return Jid(self.local, self.domain) if self.resource is not None else self

    @property
    def is_full(self) -> bool:
        return self.resource is not None

    def with_resource(self, resource: str | None) -> Jid:
        return Jid(self.local, self.domain, resource)

    def same_domain(self, domain: str) -> bool:
        """Case-insensitive domain comparison (RFC 7622 §3.2: DNS names)."""
        return self._domain_key == domain.rstrip(".").casefold()

    def __str__(self) -> str:
        text = self.domain if self.local is None else f"{self.local}@{self.domain}"
        return text if self.resource is None else f"{text}/{self.resource}"


def parse_jid(text: str) -> Jid:
    """Parse `[local@]domain[/resource]` (RFC 7622 §3.1: resource after the first '/').

    A trailing dot on the domainpart is removed (RFC 7622 §3.2).
    """
    head, slash, resource = text.partition("/")
    if slash and not resource:
        raise JidError("empty resourcepart")
    local: str | None = None
    if "@" in head:
        local, _, head = head.partition("@")
        if not local:
            raise JidError("empty localpart")
    domain = head[:-1] if head.endswith(".") else head
    return Jid(local, domain, resource if slash else None)


# --- XEP-0106 ---------------------------------------------------------------------------------

# XEP-0106 §3 transformation table. Lowercase hex only: "CASE IS SIGNIFICANT".
ESCAPES: dict[str, str] = {
    " ": r"\20",
    '"': r"\22",
    "&": r"\26",
    "'": r"\27",
    "/": r"\2f",
    ":": r"\3a",
    "<": r"\3c",
    ">": r"\3e",
    "@": r"\40",
    "\\": r"\5c",
}
UNESCAPES: dict[str, str] = {seq: ch for ch, seq in ESCAPES.items()}

# One of the ten defined sequences: "\" ("20" / "22" / "26" / "27" / "2f" / "3a" / "3c" /
# "3e" / "40" / "5c"). Anything else ("\2plus", "\41", "\bar", "\3A") is not an escape.
_ESCAPE_SEQ = re.compile(r"\\(?:2[0267f]|3[ace]|40|5c)")


def escape_local(unescaped: str) -> str:
    """XEP-0106 §4.3 escaping of a (decoded) foreign local part.

    Every disallowed character is escaped; a backslash is escaped to ``\\5c`` only when it
    starts one of the ten escape sequences (so ``c:\\net`` -> ``c\\3a\\net`` but
    ``c:\\5commas`` -> ``c\\3a\\5c5commas``). A leading or trailing space cannot be escaped
    (``\\20`` MUST NOT be first or last): JidError. The result is validated as a localpart.
    """
    if not unescaped:
        raise JidError("empty localpart")
    if unescaped[0] == " " or unescaped[-1] == " ":
        raise JidError("XEP-0106: a leading or trailing space cannot be escaped")
    out: list[str] = []
    for i, ch in enumerate(unescaped):
        if ch == "\\":
            out.append(ESCAPES["\\"] if _ESCAPE_SEQ.match(unescaped, i) else ch)
        else:
            out.append(ESCAPES.get(ch, ch))
    escaped = "".join(out)
    check_localpart(escaped)
    return escaped


def unescape_local(escaped: str) -> str:
    """XEP-0106 §4.2 unescaping: only the ten defined sequences, left to right.

    ``\\5c5c`` -> ``\\5c`` (no re-scan); unknown or partial sequences stay as they are.
    """
    return _ESCAPE_SEQ.sub(lambda m: UNESCAPES[m.group(0)], escaped)


def is_canonical_escape(escaped: str) -> bool:
    """True when `escaped` is what escape_local() produces for its own unescaped form.

    Not every valid localpart is: ``a\\5cb`` unescapes to ``a\\b``, which escapes back to
    ``a\\b``; ``\\20x`` unescapes to a leading space. Only canonical forms survive a round
    trip through a non-XMPP address, so the gateway refuses the others.
    """
    try:
        return escape_local(unescape_local(escaped)) == escaped
    except JidError:
        return False
