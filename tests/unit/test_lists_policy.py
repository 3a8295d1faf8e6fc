"""Which SUBSCRIBEs are list subscriptions and what is refused (gateway/bridge/lists/
policy.py): RFC 4662 §4.1 421, RFC 5367 §3/§5.1, list limits (413/403), hostile XML."""

from __future__ import annotations

import pytest

from gateway.bridge.lists.policy import (
    ListRequestError,
    check_in_dialog,
    is_request_contained,
    read_request_list,
    require_eventlist,
    supports_eventlist,
)
from gateway.bridge.lists.source import RequestLists, SourceChain
from gateway.sip.message import Headers, SipRequest
from gateway.sip.uri import parse_uri
from mappings.resourcelists import NS, Entry, ListLimits
from mappings.xmlsafe import FormatError
from tests.unit.listdocs_support import hostile

OWNER = "alice@sip.localhost"


def subscribe(body: bytes = b"", **extra: str) -> SipRequest:
    headers = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1"),
        ("From", f"<sip:{OWNER}>;tag=1"),
        ("To", "<sip:rls@sip.localhost>"),
        ("Call-ID", "c1"),
        ("CSeq", "1 SUBSCRIBE"),
        ("Event", "presence"),
    ]
    headers += [(k.replace("_", "-"), v) for k, v in extra.items()]
    return SipRequest.from_parts(
        "SUBSCRIBE", parse_uri("sip:rls@sip.localhost"), Headers(headers), body
    )


def doc(entries: str) -> bytes:
    head = f'<?xml version="1.0"?><resource-lists xmlns="{NS}"><list>'
    return f"{head}{entries}</list></resource-lists>".encode()


LIST_HDRS = {
    "Supported": "eventlist",
    "Require": "recipient-list-subscribe",
    "Content_Type": "application/resource-lists+xml",
    "Content_Disposition": "recipient-list",
}


def test_eventlist_and_request_contained_are_read_from_option_tags() -> None:
    req = subscribe(Supported="EventList, path", Require="recipient-list-subscribe")
    assert supports_eventlist(req) and is_request_contained(req)
    plain = subscribe()
    assert not supports_eventlist(plain) and not is_request_contained(plain)
    with pytest.raises(ListRequestError) as err:
        require_eventlist(plain)
    assert err.value.sip_status == 421 and err.value.headers == (("Require", "eventlist"),)


def test_request_contained_list_members_flattened() -> None:
    body = doc(
        '<entry uri="sip:a@x"/><entry uri="xmpp:j@localhost"/><entry uri="sip:a@x"/>'
        '<list name="n"><entry uri="sip:b@y"/></list>'
    )
    entries = read_request_list(subscribe(body, **LIST_HDRS), ListLimits(), OWNER)
    assert [e.uri for e in entries] == ["sip:a@x", "xmpp:j@localhost", "sip:b@y"]


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content_Type": "text/plain"}, b"x", 415),
        ({"Content_Disposition": "render"}, doc('<entry uri="sip:a@x"/>'), 400),
        ({}, b"", 400),
        ({}, b"<resource-lists", 400),  # malformed
        ({}, doc('<entry uri="sip:a@x"/>').replace(b"<list>", b"<list><bogus/>"), 400),
        ({}, doc("".join(f'<entry uri="sip:u{i}@x"/>' for i in range(2000))), 413),
        ({}, doc("<list>" * 12 + '<entry uri="sip:a@x"/>' + "</list>" * 12), 403),
        (
            {},  # a loop through entry-refs inside the same document
            doc(
                '<entry-ref ref="resource-lists/users/alice@sip.localhost/index/~~/'
                'resource-lists/list%5b@name=%22l%22%5d"/>'
            ).replace(b"<list>", b'<list name="l">'),
            403,
        ),
    ],
)
def test_bad_lists_get_their_status(headers: dict[str, str], body: bytes, status: int) -> None:
    req = subscribe(body, **{**LIST_HDRS, **headers})
    if body == b"":
        req = subscribe(b"", Supported="eventlist", Require="recipient-list-subscribe")
    with pytest.raises((ListRequestError, FormatError)) as err:
        read_request_list(req, ListLimits(), OWNER)
    assert err.value.sip_status == status


@pytest.mark.parametrize("name", sorted(hostile(b"resource-lists", NS)))
def test_hostile_xml_is_refused(name: str) -> None:
    body = hostile(b"resource-lists", NS)[name]
    if not body:
        return  # an empty body is the 400 above
    with pytest.raises(FormatError) as err:
        read_request_list(subscribe(body, **LIST_HDRS), ListLimits(), OWNER)
    assert err.value.sip_status in (400, 413)


def test_list_body_in_a_refresh_is_415() -> None:
    with pytest.raises(ListRequestError) as err:
        check_in_dialog(subscribe(doc('<entry uri="sip:a@x"/>'), **LIST_HDRS))
    assert err.value.sip_status == 415
    check_in_dialog(subscribe())


def test_request_lists_bounded_and_chained() -> None:
    lists = RequestLists(limit=1)
    lists.add("sip:l1@gw", [Entry("sip:a@x")])
    with pytest.raises(OverflowError):
        lists.add("sip:l2@gw", [])
    other = RequestLists()
    other.add("sip:l2@gw", [Entry("sip:b@x")])
    chain = SourceChain(lists, other)
    assert [e.uri for e in chain.list_of("sip:l2@gw") or ()] == ["sip:b@x"]
    assert chain.list_of("sip:none@gw") is None
    lists.remove("sip:l1@gw")
    assert len(lists) == 0


def test_linphone_dialect_is_read_from_the_user_agent() -> None:
    from gateway.bridge.lists.policy import linphone_dialect

    assert linphone_dialect(subscribe(User_Agent="Linphonec/5.1.65"))
    assert linphone_dialect(subscribe(User_Agent="LinphoneAndroid/5.2 (belle-sip/5.2)"))
    assert not linphone_dialect(subscribe(User_Agent="baresip v1.0.0"))
    assert not linphone_dialect(subscribe())
