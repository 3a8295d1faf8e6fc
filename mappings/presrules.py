"""Presence authorization rules (RFC 5025 over RFC 4745 common policy,
``application/auth-policy+xml``) and the subscription decision they give.

A ruleset is a list of rules; a rule applies when all its conditions are TRUE (RFC 4745
§10.1) and then grants its actions. The gateway models what decides a subscription:

* conditions (RFC 4745 §7): ``<identity>`` (``<one id>``, ``<many domain>`` with
  ``<except domain|id>``), ``<sphere value>`` and ``<validity>`` intervals. A condition
  from another namespace is not understood and evaluates to FALSE (§7), so its rule
  never applies; an unknown ``<identity>`` child is FALSE within the identity's OR;
* the ``<sub-handling>`` action (RFC 5025 §3.2.1): block (0) < confirm (10) <
  polite-block (20) < allow (30); the decision is the maximum over the rules that
  apply, and ``block`` when none does (§3.2.1: "the default in the absence of any
  action will be block").

Transformations (``provide-*``) are not modelled: ignored on input, never written.
Pure: :func:`decide` takes the time and the presentity's spheres as inputs.
Errors: :class:`PresRulesError` (400), or the xmlsafe errors for hostile XML.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, cast, get_args

from lxml import etree

from mappings.cpim import format_datetime, parse_datetime
from mappings.xmlsafe import FormatError, nsmap, parse_xml, serialize

__all__ = [
    "CP_NS",
    "MEDIA_TYPE",
    "PR_NS",
    "Conditions",
    "Except",
    "Many",
    "One",
    "PresRulesError",
    "Rule",
    "Ruleset",
    "SubHandling",
    "build_pres_rules",
    "decide",
    "identity_key",
    "parse_pres_rules",
]

MEDIA_TYPE: Final = "application/auth-policy+xml"
CP_NS: Final = "urn:ietf:params:xml:ns:common-policy"
PR_NS: Final = "urn:ietf:params:xml:ns:pres-rules"

SubHandling = Literal["block", "confirm", "polite-block", "allow"]
SUB_HANDLING_VALUES: Final = {"block": 0, "confirm": 10, "polite-block": 20, "allow": 30}
"""RFC 5025 §3.2.1: the enumerated integer values combined by maximum."""
_SUB_HANDLINGS: Final = frozenset(get_args(SubHandling))
_NCNAME = re.compile(r"[^\W\d][\w.\-]*")  # xs:ID


class PresRulesError(FormatError):
    """Not a pres-rules document we can use: 400."""


def _cp(local: str) -> str:
    return f"{{{CP_NS}}}{local}"


def _pr(local: str) -> str:
    return f"{{{PR_NS}}}{local}"


# ------------------------------------------------------------------ identities


def _split(uri: str) -> tuple[str, str, str] | None:
    """(scheme, user, host[:port]) of a sip/sips/pres/im/xmpp URI, or None."""
    text = uri.strip().removeprefix("<").removesuffix(">")
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme:
        return None
    rest = re.split(r"[;?/]", rest.removeprefix("//"), maxsplit=1)[0]
    user, at, host = rest.rpartition("@")
    if not at or not user or not host:
        return None
    return scheme.lower(), user, host.lower()


def identity_key(uri: str) -> str:
    """The comparison form of an identity URI: scheme and host lowercased, the user
    part as written, parameters and headers dropped (the AOR an authenticated watcher
    maps to, RFC 5025 §3.1.1.2); other URIs compare as written."""
    parts = _split(uri)
    if parts is None:
        return uri.strip()
    scheme, user, host = parts
    if scheme == "sips":
        scheme = "sip"  # the same AOR (RFC 5630 §3.1.1 identity)
    return f"{scheme}:{user}@{host}"


def _domain(uri: str) -> str | None:
    parts = _split(uri)
    if parts is None:
        return None
    host = parts[2]
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# ------------------------------------------------------------------ model


@dataclass(frozen=True)
class One:
    """``<one id=...>``: exactly this identity (RFC 4745 §7.1.1)."""

    id: str

    def __post_init__(self) -> None:
        if not self.id or self.id != self.id.strip():
            raise PresRulesError("<one> id is empty or padded")


@dataclass(frozen=True)
class Except:
    """``<except domain=... id=...>`` inside ``<many>`` (RFC 4745 §7.1.2)."""

    domain: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class Many:
    """``<many domain=...>``: every authenticated identity (in ``domain``), but the
    exceptions (RFC 4745 §7.1.2)."""

    domain: str | None = None
    excepts: tuple[Except, ...] = ()


@dataclass(frozen=True)
class Conditions:
    """A rule's conditions. ``identity`` None: identities are not considered; an empty
    tuple: present but nothing in it is understood (FALSE). ``validity``: (from, until)
    intervals. ``unsupported``: a condition from another namespace (FALSE, §7)."""

    identity: tuple[One | Many, ...] | None = None
    sphere: str | None = None
    validity: tuple[tuple[datetime, datetime], ...] = ()
    unsupported: bool = False

    def __post_init__(self) -> None:
        for start, end in self.validity:
            if start.utcoffset() is None or end.utcoffset() is None:
                raise PresRulesError("validity times must carry a UTC offset")


@dataclass(frozen=True)
class Rule:
    """``<rule id=...>`` with its conditions and its ``<sub-handling>`` (None: none)."""

    id: str
    conditions: Conditions = Conditions()
    sub_handling: SubHandling | None = None

    def __post_init__(self) -> None:
        if not _NCNAME.fullmatch(self.id):
            raise PresRulesError(f"rule id {self.id!r} is not an xs:ID")
        if self.sub_handling is not None and self.sub_handling not in _SUB_HANDLINGS:
            raise PresRulesError(f"unknown sub-handling {self.sub_handling!r}")


@dataclass(frozen=True)
class Ruleset:
    """``<ruleset>``: the rules in document order."""

    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise PresRulesError("rule ids are not unique (xs:ID)")


# ------------------------------------------------------------------ decision


def _identity_matches(items: tuple[One | Many, ...], watcher: str) -> bool:
    key = identity_key(watcher)
    domain = _domain(watcher)
    for item in items:
        if isinstance(item, One):
            if identity_key(item.id) == key:
                return True
            continue
        if item.domain is not None and (domain is None or item.domain.lower() != domain):
            continue
        excluded = any(
            (e.domain is not None and domain is not None and e.domain.lower() == domain)
            or (e.id is not None and identity_key(e.id) == key)
            for e in item.excepts
        )
        if not excluded:
            return True
    return False


def _applies(c: Conditions, watcher: str, now: datetime | None, spheres: Iterable[str]) -> bool:
    if c.unsupported:
        return False
    if c.identity is not None and not _identity_matches(c.identity, watcher):
        return False
    if c.sphere is not None:
        current = {s.lower() for s in spheres}
        if not any(token.lower() in current for token in c.sphere.split()):
            return False
    if not c.validity:
        return True
    return now is not None and any(start <= now < end for start, end in c.validity)


def decide(
    watcher_uri: str,
    rules: Ruleset,
    *,
    now: datetime | None = None,
    spheres: Iterable[str] = (),
) -> SubHandling:
    """The subscription decision for an authenticated watcher (RFC 5025 §3.2.1).

    ``now`` (aware) is needed for rules with a validity condition (without it they do
    not apply); ``spheres`` are the presentity's current spheres. An empty ruleset, or
    one where no rule applies, gives ``block``: a gateway that wants to ask the user
    when there is no document at all decides that before calling this.
    """
    spheres = tuple(spheres)
    best: SubHandling = "block"
    for rule in rules.rules:
        if rule.sub_handling is None:
            continue
        if SUB_HANDLING_VALUES[rule.sub_handling] <= SUB_HANDLING_VALUES[best]:
            continue
        if _applies(rule.conditions, watcher_uri, now, spheres):
            best = rule.sub_handling
    return best


# ------------------------------------------------------------------ build


def build_pres_rules(doc: Ruleset) -> bytes:
    """UTF-8 XML in the RFC 4745 §13 / RFC 5025 §7 schemas."""
    root = etree.Element(_cp("ruleset"), nsmap=nsmap(cp=CP_NS, pr=PR_NS))
    for rule in doc.rules:
        el = etree.SubElement(root, _cp("rule"), id=rule.id)
        c = rule.conditions
        if c.unsupported:
            raise PresRulesError(f"rule {rule.id!r} has conditions this model cannot write")
        cond = etree.SubElement(el, _cp("conditions"))
        if c.identity is not None:
            if not c.identity:
                raise PresRulesError("<identity> needs at least one <one> or <many>")
            ident = etree.SubElement(cond, _cp("identity"))
            for item in c.identity:
                if isinstance(item, One):
                    etree.SubElement(ident, _cp("one"), id=item.id)
                    continue
                many = etree.SubElement(ident, _cp("many"))
                if item.domain is not None:
                    many.set("domain", item.domain)
                for e in item.excepts:
                    exc = etree.SubElement(many, _cp("except"))
                    if e.domain is not None:
                        exc.set("domain", e.domain)
                    if e.id is not None:
                        exc.set("id", e.id)
        if c.sphere is not None:
            etree.SubElement(cond, _cp("sphere"), value=c.sphere)
        if c.validity:
            validity = etree.SubElement(cond, _cp("validity"))
            for start, end in c.validity:
                etree.SubElement(validity, _cp("from")).text = format_datetime(start)
                etree.SubElement(validity, _cp("until")).text = format_datetime(end)
        actions = etree.SubElement(el, _cp("actions"))
        if rule.sub_handling is not None:
            etree.SubElement(actions, _pr("sub-handling")).text = rule.sub_handling
        etree.SubElement(el, _cp("transformations"))
    return serialize(root)


# ------------------------------------------------------------------ parse


def _required(el: etree._Element, name: str) -> str:
    value = el.get(name)
    if value is None:
        raise PresRulesError(f"<{etree.QName(el).localname}> lacks the {name} attribute")
    return value.strip()


def _time(el: etree._Element) -> datetime:
    try:
        value = parse_datetime(el.text or "")
    except ValueError as exc:
        raise PresRulesError(str(exc)) from None
    return value


def _conditions(el: etree._Element | None) -> Conditions:
    if el is None:
        return Conditions()
    identity: list[One | Many] | None = None
    sphere: str | None = None
    validity: list[tuple[datetime, datetime]] = []
    unsupported = False
    for child in el:
        if child.tag == _cp("identity"):
            identity = identity or []
            for item in child:
                if item.tag == _cp("one"):
                    identity.append(One(_required(item, "id")))
                elif item.tag == _cp("many"):
                    excepts = tuple(
                        Except(e.get("domain"), e.get("id")) for e in item if e.tag == _cp("except")
                    )
                    identity.append(Many(item.get("domain"), excepts))
                # other namespaces: FALSE within the OR (RFC 4745 §7.1.1)
        elif child.tag == _cp("sphere"):
            sphere = _required(child, "value")
        elif child.tag == _cp("validity"):
            times = [c for c in child if c.tag in (_cp("from"), _cp("until"))]
            if len(times) % 2 or any(
                t.tag != _cp("from" if i % 2 == 0 else "until") for i, t in enumerate(times)
            ):
                raise PresRulesError("<validity> needs <from>/<until> pairs")
            validity += [(_time(a), _time(b)) for a, b in zip(times[::2], times[1::2], strict=True)]
        elif isinstance(child.tag, str):
            unsupported = True  # not understood: FALSE (RFC 4745 §7)
    return Conditions(
        None if identity is None else tuple(identity), sphere, tuple(validity), unsupported
    )


def _sub_handling(actions: etree._Element | None) -> SubHandling | None:
    if actions is None:
        return None
    el = next((c for c in actions if c.tag == _pr("sub-handling")), None)
    if el is None:
        return None
    value = (el.text or "").strip()
    if value not in _SUB_HANDLINGS:
        raise PresRulesError(f"unknown sub-handling {value!r}")
    return cast(SubHandling, value)


def parse_pres_rules(data: bytes) -> Ruleset:
    """Parse an untrusted pres-rules document (hardened parser; PresRulesError / XmlRejected)."""
    root = parse_xml(data)
    if root.tag != _cp("ruleset"):
        raise PresRulesError(f"root element is {root.tag}, not a common-policy ruleset")
    rules = []
    for el in root:
        if el.tag != _cp("rule"):
            continue
        conditions = next((c for c in el if c.tag == _cp("conditions")), None)
        actions = next((c for c in el if c.tag == _cp("actions")), None)
        rules.append(Rule(_required(el, "id"), _conditions(conditions), _sub_handling(actions)))
    return Ruleset(tuple(rules))
