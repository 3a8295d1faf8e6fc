"""SIP / IM / PRES / TEL URIs <-> JIDs (RFC 7247 §6.4-§6.5 with full XEP-0106 escaping).

Three representations of one user:

* `SipAddress` -- a parsed URI (sip, sips, im, pres, tel, xmpp) with the user part *decoded*;
  ``str()`` re-encodes it per RFC 7247 §6.5 step 5.
* `mappings.model.Address` -- the canonical identity (decoded user, domain, instance); both
  protocol adapters meet here, and equality is decided here, never on wire strings.
* `mappings.jid.Jid` -- the XMPP wire form (escaped localpart).

Two kinds of users, and a `DomainMap` that says how SIP users appear on XMPP:

* **SIP users** are represented on XMPP at the component domain. ``MIRRORED``: the SIP domain
  *is* the component domain (``sip:romeo@sip.example.org`` <-> ``romeo@sip.example.org``).
  ``ESCAPED``: any SIP domain, under the gateway domain, XEP-0100 transport style
  (``sip:romeo@example.com`` <-> ``romeo\\40example.com@gw.example.org``).
* **XMPP users** are represented on SIP per RFC 7247 at their own domain
  (``juliet@xmpp.example/balcony`` <-> ``sip:juliet@xmpp.example;gr=balcony``) in both modes.

The four functions, by the direction they serve:

==========================  ==========================================  ======================
function                    use                                         inverse of
==========================  ==========================================  ======================
`sip_uri_to_jid`            S2X source: From of a MESSAGE / SUBSCRIBE,  `jid_to_sip_target`
                            the presentity of a NOTIFY
`jid_to_sip_target`         X2S destination: the ``to`` JID of a stanza `sip_uri_to_jid`
                            -> Request-URI / To
`jid_to_sip_uri`            X2S source: the ``from`` JID of a stanza    `sip_target_to_jid`
                            -> From / Contact (resource -> ``;gr=``)
`sip_target_to_jid`         S2X destination: Request-URI / To naming    `jid_to_sip_uri`
                            an XMPP user -> the ``to`` JID
==========================  ==========================================  ======================

Failures raise `AddressError`, a `MappingError` carrying the SIP status and XMPP condition:

* malformed URI or JID, bad %-escape, non-UTF-8, unescapable space -> 400 / jid-malformed
* scheme not usable in that direction -> 416 / jid-malformed
* sips: (R7247-06: never translated into XMPP) -> 403 / forbidden
* a SIP source outside the mirrored domain, an XMPP source outside the served XMPP domains
  -> 403 / forbidden
* a destination the gateway does not serve -> 404 / item-not-found
* a local (non-global) telephone number -> 484 / item-not-found

Only the user@host part and the ``gr`` / ``user`` parameters are read; other parameters and
headers are not part of the identity and are dropped. Ports are routing, not identity: parsed,
kept on `SipAddress`, never carried into a JID. Passwords in URIs are refused.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal, get_args

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.uri import SipUri, parse_uri
from mappings.errors import MappingError
from mappings.jid import (
    Jid,
    JidError,
    escape_local,
    is_canonical_escape,
    unescape_local,
)
from mappings.model import Address


class AddressError(MappingError):
    """An address that cannot be mapped (see the module docstring for the codes)."""

    def __init__(self, reason: str, sip_status: int = 400, xmpp_condition: str = "jid-malformed"):
        super().__init__(reason, sip_status=sip_status, xmpp_condition=xmpp_condition)


def _malformed(reason: str) -> AddressError:
    return AddressError(reason, 400, "jid-malformed")


def _from_jid_error(error: JidError) -> AddressError:
    return _malformed(error.reason)


class AddressingMode(enum.Enum):
    """How SIP users appear on XMPP (see module docstring)."""

    MIRRORED = "mirrored"
    ESCAPED = "escaped"


@dataclass(frozen=True)
class DomainMap:
    """The component's domain, its addressing mode, and the XMPP domains it serves.

    `xmpp_domains` empty means "any domain except the component's" (R8048-08 recommends
    restricting the gateway to its own domains: list them).
    """

    component_domain: str
    mode: AddressingMode
    xmpp_domains: frozenset[str] = frozenset()
    _xmpp_keys: frozenset[str] = field(init=False, repr=False, default=frozenset())

    def __post_init__(self) -> None:
        try:
            Jid(None, self.component_domain)
            for domain in self.xmpp_domains:
                Jid(None, domain)
        except JidError as exc:
            raise ValueError(f"bad domain in DomainMap: {exc.reason}") from None
        keys = frozenset(d.casefold() for d in self.xmpp_domains)
        if self.component_domain.casefold() in keys:
            raise ValueError("the component domain cannot also be a served XMPP domain")
        object.__setattr__(self, "_xmpp_keys", keys)

    def is_component(self, domain: str) -> bool:
        return domain.rstrip(".").casefold() == self.component_domain.casefold()

    def serves_xmpp(self, domain: str) -> bool:
        """Whether `domain` is an XMPP domain whose users this gateway bridges."""
        key = domain.rstrip(".").casefold()
        if self.is_component(key):
            return False
        return not self._xmpp_keys or key in self._xmpp_keys


# --- grammar (RFC 3261 §25.1, RFC 3966 §3, RFC 3860 App. A, RFC 5122 §2.2) ---------------------

# SIP and SIPS URIs have one grammar, the SIP core's (`gateway.sip.uri.parse_uri`,
# RFC 3261 §19.1 / §25.1); this module reads the identity out of the parsed `SipUri`
# (`sip_address`) and encodes users and ``gr`` values for the URIs it builds.

# escaped = "%" HEXDIG HEXDIG
_ESCAPED = r"%[0-9A-Fa-f]{2}"
# user = 1*( unreserved / escaped / user-unreserved )
# unreserved = alphanum / mark ; mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
_SIP_USER_SAFE = "-_.!~*'()&=+$,;?/"
# paramchar = param-unreserved / unreserved / escaped
# param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
_PARAM_SAFE = "[]/:&+$-_.!~*'()"
# host of an im:/pres: URI (RFC 3860 App. A, mailbox domain; checked further by _check_host)
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+"
# hostname = *( domainlabel "." ) toplabel [ "." ]
# domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum
# toplabel = ALPHA / ALPHA *( alphanum / "-" ) alphanum
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")

# telephone-uri = "tel:" telephone-subscriber (RFC 3966 §3)
# global-number-digits = "+" *phonedigit DIGIT *phonedigit
# phonedigit = DIGIT / [ visual-separator ] ; visual-separator = "-" / "." / "(" / ")"
_TEL_URI = re.compile(r"tel:(?P<number>[^;]+)(?P<params>;.*)?", re.IGNORECASE | re.DOTALL)
# (written with a look-ahead so a long run of separators cannot backtrack quadratically)
_GLOBAL_NUMBER = re.compile(r"\+(?=[0-9\-.()]*[0-9])[0-9\-.()]+")
# local-number-digits = *phonedigit-hex (HEXDIG / "*" / "#") *phonedigit-hex
_LOCAL_NUMBER = re.compile(r"(?=[0-9A-Fa-f*#\-.()]*[0-9A-Fa-f*#])[0-9A-Fa-f*#\-.()]+")
_E164 = re.compile(r"\+[0-9]+")
# Unicode general category Cc: C0, DEL and C1 (a compiled search, not a per-character loop)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

# IM-URI = "im:" [ to ] [ headers ] ; to = mailbox (RFC 3860 App. A, RFC 3859 PRES-URI)
# local part: dot-atom-text (RFC 5322 §3.2.3) with percent-escapes (RFC 7247 §6.2)
_ATEXT = "!#$&'*+-/=^_`{|}~"
_IM_USER = rf"(?:[A-Za-z0-9.{re.escape(_ATEXT)}]|{_ESCAPED})+"
_IM_URI = re.compile(
    rf"(?P<scheme>im|pres):(?P<user>{_IM_USER})@(?P<host>{_HOST})(?:\?(?P<headers>.*))?",
    re.IGNORECASE | re.DOTALL,
)
# xmppuri = "xmpp:" hierxmpp [ "?" querycomp ] [ "#" ifragment ] (RFC 5122 §2.2)
# hierxmpp = authpath / pathxmpp ; pathxmpp = [ nodeid "@" ] hostpart [ "/" resid ]
_XMPP_URI = re.compile(
    r"xmpp:(?://[^/?#]*/)?(?:(?P<user>[^@/?#]+)@)?(?P<host>[^/?#]+)"
    r"(?:/(?P<resource>[^?#]+))?(?:\?[^#]*)?(?:#.*)?",
    re.IGNORECASE | re.DOTALL,
)

Scheme = Literal["sip", "sips", "im", "pres", "tel", "xmpp"]
TargetScheme = Literal["sip", "sips", "im", "pres"]
SCHEMES: dict[str, Scheme] = {name: name for name in get_args(Scheme)}
_GR_SCHEMES = frozenset({"sip", "sips", "xmpp"})


def percent_decode(text: str) -> str:
    """Strict RFC 3986 §2.1 decoding as UTF-8: a bare ``%`` or non-UTF-8 bytes -> 400."""
    if "%" not in text and text.isascii():  # nothing to decode (issue 11 fast path)
        return text
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise _malformed(f"invalid percent-escape in {text!r}")
    raw = bytearray()
    pos = 0
    for m in re.finditer(_ESCAPED, text):
        raw += text[pos : m.start()].encode("utf-8")
        raw.append(int(m.group(0)[1:], 16))
        pos = m.end()
    raw += text[pos:].encode("utf-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(f"percent-decoded {text!r} is not UTF-8") from None


def percent_encode(text: str, safe: str) -> str:
    """Encode every UTF-8 byte of a character not in `safe` (or alphanumeric ASCII) as %HH."""
    if text.isascii() and (text.isalnum() or not text.strip(_ALNUM + safe)):
        return text  # nothing to encode (issue 11 fast path)
    out: list[str] = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch in safe):
            out.append(ch)
        else:
            out.extend(f"%{byte:02X}" for byte in ch.encode("utf-8"))
    return "".join(out)


_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# RFC 7247 §6.5 step 5 (sip/sips): encode ``# % [ \\ ] ^ ` { | }`` and non-ASCII. Everything
# else outside the `user` rule (``@ : " < > SP``, controls) is encoded too or the URI breaks.
def encode_sip_user(user: str) -> str:
    return percent_encode(user, _SIP_USER_SAFE)


# RFC 7247 §6.5 step 5 (im/pres): encode ``( ) , . ; [ \\ ]`` and non-ASCII; also ``% ? #``,
# which are URI delimiters (RFC 3986 §2.2), and anything outside atext. A dot is kept when it
# separates atoms (dot-atom-text) and encoded otherwise.
def encode_im_user(user: str) -> str:
    if user.startswith(".") or user.endswith(".") or ".." in user:
        return percent_encode(user, _ATEXT.replace("#", ""))
    return percent_encode(user, _ATEXT.replace("#", "") + ".")


def encode_gr(value: str) -> str:
    """A ``gr`` parameter value: paramchar only (RFC 3261 §25.1), the rest %-encoded."""
    return percent_encode(value, _PARAM_SAFE)


def _check_host(host: str) -> str:
    """Validate a SIP host; returns it without a trailing dot. Raises AddressError (400)."""
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1] if host.endswith("]") else "!")
        except ValueError:
            raise _malformed(f"bad IPv6 reference: {host!r}") from None
        return host
    if _IPV4.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise _malformed(f"bad IPv4 address: {host!r}") from None
        return host
    if not _HOSTNAME.fullmatch(host):
        raise _malformed(f"not a SIP hostname (IDN mapping is out of scope): {host!r}")
    return host.rstrip(".")


@dataclass(frozen=True)
class SipAddress:
    """A parsed sip/sips/im/pres/tel/xmpp URI, reduced to what identifies a user.

    `user` and `gr` are decoded Unicode; ``str()`` encodes them per scheme (RFC 7247 §6.5).
    For xmpp: URIs `user` is the unescaped localpart and `gr` the resource. `phone` is the
    ``user=phone`` parameter. Equality is on these decoded values (host case-sensitive: use
    `.address` for identity).
    """

    scheme: Scheme
    user: str | None
    host: str | None
    port: int | None = None
    gr: str | None = None
    phone: bool = False

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise _malformed(f"unsupported scheme {self.scheme!r}")
        if self.scheme == "tel":
            if self.host is not None or self.user is None or not _E164.fullmatch(self.user):
                raise _malformed("a tel: address is a global number without host")
        else:
            if self.host is None:
                raise _malformed(f"{self.scheme}: needs a host")
            if self.scheme != "xmpp":
                _check_host(self.host)
        if self.user == "":
            raise _malformed("empty user part")
        if _CONTROL.search(self.user or "") or _CONTROL.search(self.gr or ""):
            raise _malformed("control characters in a user or gr value")
        if self.gr is not None and (self.scheme not in _GR_SCHEMES or not self.gr):
            raise _malformed("gr only on a sip/sips URI (or a resource on xmpp:)")
        if self.port is not None and (self.scheme not in ("sip", "sips") or self.port > 65535):
            raise _malformed("port only on a sip/sips URI, 0..65535")
        if self.phone and self.scheme not in ("sip", "sips"):
            raise _malformed("user=phone only on a sip/sips URI")

    @property
    def address(self) -> Address:
        """The canonical identity: decoded user, domain (no port), instance (gr)."""
        return Address(self.user, self.host.rstrip(".") if self.host else None, self.gr)

    @property
    def aor(self) -> SipAddress:
        """The address of record: the same URI without ``gr``."""
        return SipAddress(self.scheme, self.user, self.host, self.port, None, self.phone)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}"
        if self.scheme == "xmpp":
            text = f"xmpp:{self.host}"
            if self.user is not None:
                text = f"xmpp:{percent_encode(escape_local(self.user), _ATEXT)}@{self.host}"
            return text if self.gr is None else f"{text}/{encode_gr(self.gr)}"
        encode = encode_im_user if self.scheme in ("im", "pres") else encode_sip_user
        text = f"{self.scheme}:"
        if self.user is not None:
            text += f"{encode(self.user)}@"
        text += str(self.host) if self.port is None else f"{self.host}:{self.port}"
        if self.phone:
            text += ";user=phone"
        if self.gr is not None:
            text += f";gr={encode_gr(self.gr)}"
        return text

    def name_addr(self) -> str:
        """``<uri>`` for From/To/Contact: ``gr`` stays inside the brackets (RFC 5627)."""
        return f"<{self}>"


def parse_address(uri: str) -> SipAddress:
    """Parse the identity part of a sip/sips/im/pres/tel/xmpp URI (no angle brackets).

    sip/sips URIs are parsed by the SIP core (`gateway.sip.uri.parse_uri`, one grammar) and
    reduced by `sip_address`; im/pres/tel/xmpp have their own grammars here. A ``gr``
    parameter without a value (temporary GRUU marker, RFC 5627 §3.2) is not an instance
    (R7247-09). For ``user=phone`` with a global number the visual separators are removed
    (RFC 3966 §5.1.1), as for tel: URIs.
    """
    scheme = uri.partition(":")[0].lower()
    if scheme in ("sip", "sips"):
        return _parse_sip(uri)
    if scheme in ("im", "pres"):
        m = _IM_URI.fullmatch(uri)
        if not m:
            raise _malformed(f"malformed {scheme}: URI {uri!r}")
        return SipAddress(SCHEMES[scheme], percent_decode(m["user"]), _check_host(m["host"]))
    if scheme == "tel":
        return _parse_tel(uri)
    if scheme == "xmpp":
        return _parse_xmpp(uri)
    raise AddressError(f"unsupported URI scheme {scheme!r}", 416, "jid-malformed")


def _parse_sip(uri: str) -> SipAddress:
    try:
        parsed = parse_uri(uri)
    except RemoteProtocolError:
        raise _malformed(f"malformed SIP URI {uri!r}") from None
    assert isinstance(parsed, SipUri)  # the scheme was sip or sips
    return sip_address(parsed)


def sip_address(uri: SipUri) -> SipAddress:
    """The identity of a parsed SIP/SIPS URI (RFC 7247 §6.4): decoded user, host, port,
    ``gr`` and ``user=phone``. Raises AddressError (400) for a password, a bad %-escape or
    a host that is not a hostname, IPv4 address or IPv6 reference.

    Parameters are read as written (no %-decoding of names; the last of a repeated name
    wins); ``;gr`` without a value is no instance. Headers are not part of the identity.
    """
    if uri.password is not None:
        raise _malformed("passwords in SIP URIs are not accepted (RFC 3261 §19.1.1)")
    params = {name.lower(): value for name, value in uri.params}
    phone = (params.get("user") or "").lower() == "phone"
    user = None if uri.user is None else percent_decode(uri.user)
    if phone and user is not None and _GLOBAL_NUMBER.fullmatch(user):
        user = re.sub(r"[\-.()]", "", user)
    gr = params.get("gr")
    gr = percent_decode(gr) if gr else None
    scheme = SCHEMES[uri.scheme]
    return SipAddress(scheme, user, _check_host(uri.host), uri.port, gr, phone)


def _parse_tel(uri: str) -> SipAddress:
    m = _TEL_URI.fullmatch(uri)
    if m and _GLOBAL_NUMBER.fullmatch(m["number"]):
        return SipAddress("tel", re.sub(r"[\-.()]", "", m["number"]), None)
    if m and _LOCAL_NUMBER.fullmatch(m["number"]):
        raise AddressError("local telephone numbers are not mapped", 484, "item-not-found")
    raise _malformed(f"malformed tel: URI {uri!r}")


def _parse_xmpp(uri: str) -> SipAddress:
    m = _XMPP_URI.fullmatch(uri)
    if not m:
        raise _malformed(f"malformed xmpp: URI {uri!r}")
    try:
        jid = Jid(
            None if m["user"] is None else percent_decode(m["user"]),
            percent_decode(m["host"]),
            None if m["resource"] is None else percent_decode(m["resource"]),
        )
        user = None if jid.local is None else _canonical_unescape(jid.local)
    except JidError as exc:
        raise _from_jid_error(exc) from None
    return SipAddress("xmpp", user, jid.domain, None, jid.resource)


def _canonical_unescape(local: str) -> str:
    if not is_canonical_escape(local):
        raise _malformed(f"localpart {local!r} is not in canonical XEP-0106 form")
    return unescape_local(local)


# --- Address <-> SIP URI ------------------------------------------------------------------------


def address_to_uri(address: Address, scheme: TargetScheme = "sip") -> SipAddress:
    """RFC 7247 §6.5 steps 5-8: the SIP/IM/PRES URI of a canonical address.

    A domain-less address (global number) becomes a tel: URI whatever `scheme` says; a global
    number at a domain gets ``user=phone`` on sip/sips. The instance becomes ``gr`` on
    sip/sips and is dropped for im/pres (RFC 3922 §3) and tel.
    """
    if scheme not in ("sip", "sips", "im", "pres"):
        raise ValueError(f"cannot build a {scheme!r} URI from an address")
    if address.domain is None:
        return SipAddress("tel", address.user, None)
    host = _check_host(address.domain)
    if scheme in ("im", "pres"):
        return SipAddress(scheme, address.user, host)
    phone = address.user is not None and _E164.fullmatch(address.user) is not None
    return SipAddress(scheme, address.user, host, None, address.instance, phone)


def _with_gruu(address: Address, gruu: str | None) -> Address:
    """Apply a ``gr`` value found outside the URI (header parameter, raw wire form)."""
    if not gruu:
        return address
    instance = percent_decode(gruu)
    if address.instance is not None and address.instance != instance:
        raise _malformed("gr in the URI and outside it disagree")
    return Address(address.user, address.domain, instance)


def _uri_address(uri: str, gruu: str | None, schemes: frozenset[str]) -> Address:
    sip = parse_address(uri)
    if sip.scheme == "sips":  # R7247-06: MUST NOT translate into XMPP
        raise AddressError("sips: is never gatewayed to XMPP (RFC 7247 §8)", 403, "forbidden")
    if sip.scheme not in schemes:
        raise AddressError(f"{sip.scheme}: is not usable here", 416, "jid-malformed")
    return _with_gruu(sip.address, gruu)


# --- SIP users on XMPP (DomainMap modes) --------------------------------------------------------


def sip_user_to_jid(address: Address, domain_map: DomainMap) -> Jid:
    """The JID that represents a SIP user on XMPP (MIRRORED or ESCAPED)."""
    if address.user is None:
        raise AddressError("a SIP URI without user part names no user", 404, "item-not-found")
    if domain_map.mode is AddressingMode.MIRRORED:
        if address.domain is not None and not domain_map.is_component(address.domain):
            raise AddressError(
                f"SIP domain {address.domain!r} is not the mirrored domain", 403, "forbidden"
            )
        foreign = address.user
    else:
        foreign = address.user if address.domain is None else f"{address.user}@{address.domain}"
    try:
        return Jid(escape_local(foreign), domain_map.component_domain, address.instance)
    except JidError as exc:
        raise _from_jid_error(exc) from None


def jid_to_sip_user(jid: Jid, domain_map: DomainMap) -> Address:
    """Inverse of `sip_user_to_jid`: the SIP user a component JID stands for."""
    if not domain_map.is_component(jid.domain) or jid.local is None:
        raise AddressError(f"{jid} is not a SIP user of this gateway", 404, "item-not-found")
    user = _canonical_unescape(jid.local)
    if domain_map.mode is AddressingMode.MIRRORED:
        return Address(user, domain_map.component_domain, jid.resource)
    name, at, host = user.rpartition("@")
    if at and name:
        try:
            host = _check_host(host)
        except AddressError:
            raise AddressError(f"{jid} does not name a SIP host", 404, "item-not-found") from None
        return Address(name, host, jid.resource)
    if _E164.fullmatch(user):
        return Address(user, None)  # a telephone number has no instances
    raise AddressError(f"{jid} does not name a SIP address", 404, "item-not-found")


# --- XMPP users on SIP (RFC 7247 §6.4 / §6.5) --------------------------------------------------


def xmpp_user_to_jid(address: Address) -> Jid:
    """RFC 7247 §6.4 steps 5-8: XEP-0106-escape the user, instance -> resource."""
    if address.user is None or address.domain is None:
        raise AddressError("an XMPP user needs a user and a domain", 404, "item-not-found")
    try:
        return Jid(escape_local(address.user), address.domain, address.instance)
    except JidError as exc:
        raise _from_jid_error(exc) from None


def jid_to_xmpp_user(jid: Jid) -> Address:
    """RFC 7247 §6.5 steps 1-3: unescape (full XEP-0106), resource -> instance."""
    if jid.local is None:
        raise AddressError(f"{jid} is a server, not a user", 404, "item-not-found")
    return Address(_canonical_unescape(jid.local), jid.domain, jid.resource)


# --- XMPP addresses advertised on SIP (RFC 5122, RFC 6993) ---------------------------------------

# nodeid = *( unreserved / pct-encoded / nodeallow ) ; nodeallow = "!" / "$" / "(" / ")" /
# "*" / "+" / "," / ";" / "=" (RFC 5122 §2.2); host: reg-name or IP-literal (RFC 3986 §3.2.2)
_NODE_SAFE = "-._~!$()*+,;="
_HOST_SAFE = "-._~!$&'()*+,;=[]:"


def xmpp_uri(jid: Jid) -> str:
    """The ``xmpp:`` URI of `jid`'s bare JID (RFC 5122 §2.7): the wire-form localpart
    (XEP-0106 escapes kept, so ``\\`` becomes ``%5C``) and the domain, percent-encoded as
    UTF-8 where the URI grammar forbids a character (§2.7.2); the resource is dropped."""
    host = percent_encode(jid.domain, _HOST_SAFE)
    if jid.local is None:
        return f"xmpp:{host}"
    return f"xmpp:{percent_encode(jid.local, _NODE_SAFE)}@{host}"


def impp_call_info(jid: Jid) -> str:
    """The ``Call-Info`` value advertising `jid`'s XMPP address on SIP requests sent on its
    behalf: ``<xmpp:user@domain>;purpose=impp`` (RFC 6993 §1, RFC 7081 §4)."""
    return f"<{xmpp_uri(jid)}>;purpose=impp"


# --- the four directions ------------------------------------------------------------------------

_SIP_USER_SCHEMES = frozenset({"sip", "im", "pres", "tel"})
_XMPP_USER_SCHEMES = frozenset({"sip", "im", "pres", "xmpp"})


def sip_uri_to_jid(uri: str, *, gruu: str | None = None, domain_map: DomainMap) -> Jid:
    """S2X source: a SIP user's URI -> the JID XMPP users see for them.

    `gruu` is a ``gr`` value found outside the URI (e.g. a header parameter), as on the wire.
    """
    return sip_user_to_jid(_uri_address(uri, gruu, _SIP_USER_SCHEMES), domain_map)


def jid_to_sip_target(
    jid: Jid, *, domain_map: DomainMap, scheme: TargetScheme = "sip"
) -> SipAddress:
    """X2S destination: a component JID addressed by an XMPP user -> the SIP user's URI."""
    return address_to_uri(jid_to_sip_user(jid, domain_map), scheme)


def jid_to_sip_uri(jid: Jid, *, domain_map: DomainMap, scheme: TargetScheme = "sip") -> SipAddress:
    """X2S source: an XMPP user's JID -> their SIP URI, resource -> ``;gr=`` (sip/sips)."""
    if not domain_map.serves_xmpp(jid.domain):
        raise AddressError(f"{jid.domain} is not an XMPP domain of this gateway", 403, "forbidden")
    return address_to_uri(jid_to_xmpp_user(jid), scheme)


def sip_target_to_jid(uri: str, *, gruu: str | None = None, domain_map: DomainMap) -> Jid:
    """S2X destination: a Request-URI / To naming an XMPP user -> that user's JID."""
    address = _uri_address(uri, gruu, _XMPP_USER_SCHEMES)
    if address.domain is None or not domain_map.serves_xmpp(address.domain):
        raise AddressError(f"{uri} is not an XMPP user of this gateway", 404, "item-not-found")
    return xmpp_user_to_jid(address)
