"""What the component says about itself: XEP-0030 identities/features, XEP-0100 prompt.

Tables as data: the identity and feature lists are built from a frozen `Features` value the
application passes in, so a feature is advertised only once the code behind it exists
(DIGEST §19 X30-01 and item 4: chat states and receipts only if implemented).

Disco answers (decision, documented in docs/xmpp.md):

* the component domain (``sip.example.org``): identity ``gateway/simple`` (XSF registry:
  "Gateway to SIP for Instant Messaging and Presence Leveraging Extensions"), features
  disco#info, disco#items, jabber:iq:gateway, urn:xmpp:ping, jabber:iq:version,
  ``jid\\20escaping`` plus the optional message features;
* a user of the domain (``romeo@sip.example.org``), i.e. a bridged SIP contact: identity
  ``client/phone`` (the SIP user agent behind it), plus ``account/registered`` for the bare
  JID (what an XMPP server answers for its own accounts); features disco#info,
  urn:xmpp:ping, vcard-temp plus the optional message features. The gateway cannot know
  whether a SIP user exists, so every well-formed user JID is answered;
* the XEP-0115 node ``CAPS_NODE#ver`` at a user JID: the content `ver` was computed on
  (`CapsTable`: one entry per combination of the optional features, a handful), which
  `contact_caps` hashes into the ``ver`` of every presence sent for a contact;
* any other node: item-not-found; disco#items: always an empty result.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from slixmpp.xmlstream import ElementBase

from gateway.config import Addressing, ComponentConfig
from gateway.xmpp.caps import CAPS_NODE, Caps, caps_ver
from mappings.addresses import (
    AddressError,
    AddressingMode,
    DomainMap,
    SipAddress,
    parse_address,
    sip_uri_to_jid,
)
from mappings.jid import Jid

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_GATEWAY = "jabber:iq:gateway"  # XEP-0100 §6.3
NS_PING = "urn:xmpp:ping"  # XEP-0199
NS_VERSION = "jabber:iq:version"  # XEP-0092
NS_JID_ESCAPING = "jid\\20escaping"  # XEP-0106 §5
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"  # XEP-0085
NS_RECEIPTS = "urn:xmpp:receipts"  # XEP-0184
NS_XHTML_IM = "http://jabber.org/protocol/xhtml-im"  # XEP-0071
NS_CHAT_MARKERS = "urn:xmpp:chat-markers:0"  # XEP-0333 §5
NS_OOB = "jabber:x:oob"  # XEP-0066 §5: links always reach SIP (as FT-HTTP or text)
NS_VCARD = "vcard-temp"  # XEP-0054

GATEWAY_NAME = "SIP/SIMPLE gateway"


@dataclass(frozen=True)
class Features:
    """Message features the bridge implements; off until the pager work turns them on."""

    chat_states: bool = False
    receipts: bool = False
    xhtml_im: bool = False
    chat_markers: bool = False

    def optional(self) -> tuple[str, ...]:
        flags = (
            (self.chat_states, NS_CHATSTATES),
            (self.receipts, NS_RECEIPTS),
            (self.xhtml_im, NS_XHTML_IM),
            (self.chat_markers, NS_CHAT_MARKERS),
        )
        return tuple(ns for on, ns in flags if on)

    def within(self, allowed: Features) -> Features:
        """The features on in both (what a contact shows, of what the gateway implements)."""
        if self == allowed:
            return self
        return Features(*(getattr(self, f.name) and getattr(allowed, f.name) for f in _FLAGS))

    def subsets(self) -> tuple[Features, ...]:
        """Every combination of the features on here (2**n of them, n <= 4)."""
        on = [f.name for f in _FLAGS if getattr(self, f.name)]
        combos = itertools.chain.from_iterable(
            itertools.combinations(on, k) for k in range(len(on) + 1)
        )
        return tuple(Features(**dict.fromkeys(combo, True)) for combo in combos)


_FLAGS = fields(Features)
NO_OPTIONAL_FEATURES = Features()
ContactFeatures = Callable[[Jid], Features]
"""A contact JID (bare or full) -> the optional features that hold for that SIP contact,
as its traffic showed them (the pager's knowledge: `Pager.contact_features`)."""


@dataclass(frozen=True)
class Identity:
    category: str
    type: str
    name: str | None = None


@dataclass(frozen=True)
class DiscoInfoData:
    identities: tuple[Identity, ...]
    features: tuple[str, ...]


DOMAIN_IDENTITY = Identity("gateway", "simple", GATEWAY_NAME)
ACCOUNT_IDENTITY = Identity("account", "registered")
CONTACT_IDENTITY = Identity("client", "phone")  # XSF registry: "a phone or VoIP client"

_DOMAIN_FEATURES = (
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_GATEWAY,
    NS_PING,
    NS_VERSION,
    NS_JID_ESCAPING,
)
_USER_FEATURES = (NS_DISCO_INFO, NS_PING, NS_VCARD, NS_OOB)


def contact_info(features: Features) -> DiscoInfoData:
    """What a bridged SIP contact can do: the content its caps ``ver`` hashes.

    `features` are that contact's (`ContactFeatures`), within the gateway-wide set."""
    return DiscoInfoData((CONTACT_IDENTITY,), _USER_FEATURES + features.optional())


def contact_caps(features: Features) -> Caps:
    """The XEP-0115 ``<c/>`` values of every contact (§5.1 over `contact_info`)."""
    info = contact_info(features)
    ver = caps_ver(((i.category, i.type, "", i.name or "") for i in info.identities), info.features)
    return Caps(CAPS_NODE, ver)


class CapsTable:
    """XEP-0115 for contacts whose features differ: `caps(features)` is the ``<c/>`` of a
    contact with `features`; `info(ver)` the disco#info at ``CAPS_NODE#ver`` (§6.2), for
    every ``ver`` the gateway can send. Built once over all combinations of the gateway's
    optional features (at most 16), so a ``ver`` sent before a restart is still answered."""

    def __init__(self, allowed: Features) -> None:
        self.allowed = allowed
        self._caps = {f: contact_caps(f) for f in allowed.subsets()}
        self._info = {self._caps[f].ver: contact_info(f) for f in self._caps}

    def caps(self, features: Features) -> Caps:
        found = self._caps.get(features)
        return found if found is not None else self._caps[features.within(self.allowed)]

    def info(self, ver: str) -> DiscoInfoData | None:
        return self._info.get(ver)

    def __len__(self) -> int:
        return len(self._info)


def disco_info(features: Features, *, has_local: bool, has_resource: bool) -> DiscoInfoData:
    """disco#info for the domain JID or one of its users (XEP-0030 §3.1)."""
    if not has_local:
        return DiscoInfoData((DOMAIN_IDENTITY,), _DOMAIN_FEATURES + features.optional())
    contact = contact_info(features)
    if has_resource:
        return contact
    return DiscoInfoData((ACCOUNT_IDENTITY, *contact.identities), contact.features)


# -- XEP-0100 §6.3 jabber:iq:gateway -------------------------------------------------------

PROMPT_NAME = "SIP address"
PROMPT_DESC = "Please enter the SIP address (user@domain) of the person you would like to contact."


class GatewayQuery(ElementBase):
    """<query xmlns='jabber:iq:gateway'> with <desc/>, <prompt/> or <jid/>."""

    name = "query"
    namespace = NS_GATEWAY
    plugin_attrib = "gateway"
    interfaces = {"desc", "prompt", "jid"}  # noqa: RUF012  (slixmpp's declarative API)
    sub_interfaces = interfaces


PromptTranslator = Callable[[str], str]
"""jabber:iq:gateway: a legacy (SIP) address typed by a user -> the JID to use for it."""

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"   (RFC 3986 §3.1)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
# global-number-digits = "+" *phonedigit DIGIT *phonedigit (RFC 3966 §3); spaces, which
# people type between groups, are dropped here, the other visual separators by
# mappings.addresses
_GLOBAL_NUMBER = re.compile(r"\+[0-9][0-9(). -]*")
# name-addr as copied from a SIP client: [display-name] "<" addr-spec ">" (RFC 3261 §25.1)
# (the blanks after a quoted name only: `[^<"]*` takes its own, so no input backtracks
# quadratically)
_NAME_ADDR = re.compile(r'(?:"[^"]*"\s*|[^<"]*)<([^<>]+)>')
# What a person types as an address; longer input is refused before any parsing.
PROMPT_MAX_CHARS = 2048
# Schemes naming a SIP user the gateway can put in a roster (sips: never crosses, RFC 7247
# §8; xmpp: is not a SIP user)
_USER_SCHEMES = ("sip", "im", "pres", "tel")


def _refused(reason: str) -> AddressError:
    """An address this gateway cannot reach: XEP-0100 prompt answer not-acceptable."""
    return AddressError(reason, 403, "not-acceptable")


def _not_address(prompt: str, why: str) -> AddressError:
    return AddressError(
        f"{prompt!r} is not a SIP address: {why} (give sip:user@host, user@host or a +number)",
        400,
        "bad-request",
    )


def _domain_map(component: ComponentConfig) -> DomainMap:
    mirrored = component.addressing is Addressing.MIRRORED
    return DomainMap(component.domain, AddressingMode("mirrored" if mirrored else "escaped"))


def prompt_uri(prompt: str, own: DomainMap) -> str:
    """What the user typed -> a URI (bad-request when it is no address at all)."""
    if len(prompt) > PROMPT_MAX_CHARS:
        raise _not_address(prompt[:40] + "...", f"longer than {PROMPT_MAX_CHARS} characters")
    text = prompt.strip()
    m = _NAME_ADDR.fullmatch(text)
    if m:
        text = m.group(1).strip()
    if not text:
        raise _not_address(prompt, "empty")
    if _GLOBAL_NUMBER.fullmatch(text):
        return "tel:" + text.replace(" ", "")
    if any(c.isspace() for c in text):
        raise _not_address(prompt, "it contains spaces")
    if _SCHEME.match(text):
        return text
    if "@" not in text:
        if own.mode is not AddressingMode.MIRRORED:
            raise _not_address(prompt, "no host")
        text = f"{text}@{own.component_domain}"  # a user of the mirrored SIP domain
    return f"sip:{text}"


def pick_domain_map(address: SipAddress, own: DomainMap, maps: Sequence[DomainMap]) -> DomainMap:
    """The component that represents the SIP user `address` (as the bridge does,
    bridge/presence/context.py `map_for_sip_user`): the mirrored component of its host,
    else this component if escaped, else another escaped one. A number (no host) stays on
    this component. not-acceptable when none can."""
    host = address.host
    if host is None:
        return own
    for dm in (own, *maps):
        if dm.mode is AddressingMode.MIRRORED and dm.is_component(host):
            return dm
    for dm in (own, *maps):
        if dm.mode is AddressingMode.ESCAPED:
            return dm
    raise _refused(f"SIP domain {host!r} is not reachable through this gateway")


def prompt_translator(
    component: ComponentConfig, components: Sequence[ComponentConfig] = ()
) -> PromptTranslator:
    """XEP-0100 §6.3 set: what the user typed -> the bare JID to add to the roster.

    Accepted: a SIP/IM/PRES/TEL URI (also inside ``Name <...>``), ``user@host`` (read as
    ``sip:user@host``), a global number ``+1 555 123 4567`` (read as ``tel:``), and in
    mirrored mode a bare user name (the SIP domain is the component domain). The JID is on
    whichever of the gateway's `components` represents that SIP domain (`pick_domain_map`).
    Input that is no address: bad-request; an address no component reaches (sips:, xmpp:,
    a foreign domain with only mirrored components): not-acceptable; both with a text
    (MappingError, answered by the error boundary).
    """
    own = _domain_map(component)
    maps = [_domain_map(c) for c in components if c.domain.lower() != component.domain.lower()]

    def translate(prompt: str) -> str:
        uri = prompt_uri(prompt, own)
        try:
            address = parse_address(uri)
        except AddressError as exc:
            raise _not_address(prompt, exc.reason) from None
        if address.user is None:
            raise _not_address(prompt, "no user part")
        if address.scheme not in _USER_SCHEMES:
            raise _refused(f"{address.scheme}: addresses are not reachable through this gateway")
        dm = pick_domain_map(address, own, maps)
        try:
            return str(sip_uri_to_jid(uri, domain_map=dm).bare)
        except AddressError as exc:
            raise _refused(exc.reason) from None

    return translate
